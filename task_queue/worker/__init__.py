"""The Worker and its roles (see :mod:`task_queue.worker.worker` for the
threads and the shutdown order)."""

from .options import WorkerOptions
from .worker import Worker

__all__ = ["Worker", "WorkerOptions"]
