"""One TaskQueue per process and file, shared by every backend instance.

Django makes a backend instance per thread (``task_backends`` is
thread-local), and ``validate_task`` runs when a tasks module is imported:
the queue is opened only when a task is first enqueued or read, once per
process and file, and shared by every thread and every TASKS alias on that
file. A child after ``fork()`` gets its own connection from the TaskQueue
itself (it never uses the parent's).

When the file is also Django's default database, the queue is opened with
``shared_file=True``: its tables go beside the application's, and enqueues
inside ``transaction.atomic()`` join the transaction (:mod:`.transactions`).
"""

from __future__ import annotations

import os
import threading

from ...queue import TaskQueue
from . import registry
from .options import BackendOptions
from .signals import FinishedSignal
from .transactions import django_db_file, same_file

_lock = threading.Lock()
_queues: dict[tuple[str, float], TaskQueue] = {}


def queue_for(options: BackendOptions) -> TaskQueue:
    """The process's TaskQueue on ``options.path``, opened on first use."""
    key = (os.path.realpath(options.path), options.lease_seconds)
    queue = _queues.get(key)
    if queue is not None:
        return queue
    with _lock:
        queue = _queues.get(key)
        if queue is None:
            database = django_db_file()
            queue = TaskQueue(
                options.path,
                lease_seconds=options.lease_seconds,
                shared_file=database is not None and same_file(database, options.path),
            )
            queue.add_hook(FinishedSignal(queue, registry.lookup))
            _queues[key] = queue
        return queue


def close_all() -> None:
    """Close every shared queue (tests; a later use opens them again)."""
    with _lock:
        queues = list(_queues.values())
        _queues.clear()
    for queue in queues:
        queue.close()
