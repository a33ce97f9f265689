"""task_queue: a durable, embeddable task queue on SQLite with thread workers.

    from task_queue import TaskQueue, TaskPriority, TaskStatus, Worker, TASK_HANDLERS

Delivery is at least once: make handlers idempotent.

The layout shows the architecture: ``queue.py`` (the TaskQueue facade)
over ``storage/`` (the contract in ``base.py``, the SQLite backend in
``sqlite/``); ``worker/`` (the Worker and its roles) uses only the queue's
public methods; ``spec.py``, ``retry.py``, ``events.py``, ``claims.py``,
``maintenance.py`` and ``notify.py`` each hold one concept; ``contrib/``
holds the optional integrations (Prometheus metrics, OpenTelemetry
tracing), built on the events and middleware, never imported by the core.
"""

from __future__ import annotations

import logging as _logging
import sqlite3 as _sqlite3

from .clock import Clock, ManualClock, SystemClock
from .context import TaskContext, current_task
from .errors import (
    DatabaseBusyError,
    DatabaseOpenError,
    DatabaseReplacedError,
    DiskFullError,
    DuplicateTaskError,
    NotAQueueDatabaseError,
    PayloadError,
    QueueClosedError,
    ReadOnlyDatabaseError,
    StatementTooLargeError,
    StorageError,
    TaskCancelled,
    TaskFailedError,
    TaskNotClaimedError,
    TaskNotFoundError,
    TaskQueueError,
    TaskTimeout,
    UnsafeDatabaseFileError,
    UnusableConnectionError,
)
from .events import Event, EventKind, Hook, Middleware
from .limits import RateLimit
from .periodic import Schedule
from .queue import TaskQueue
from .registry import TASK_HANDLERS, HandlerRegistry, handler, periodic
from .retry import RetryPolicy
from .spec import BatchRef, TaskSpec
from .task import (
    AttemptRecord,
    Claim,
    ScheduleInfo,
    SearchedTasks,
    Task,
    TaskPage,
    TaskPriority,
    TaskStatus,
    WorkerInfo,
)
from .worker import Worker, WorkerOptions

# UPDATE ... RETURNING arrived in SQLite 3.35 (2021); the claim needs it.
if _sqlite3.sqlite_version_info < (3, 35, 0):  # pragma: no cover
    raise ImportError(
        f"task_queue needs SQLite >= 3.35 (UPDATE ... RETURNING); "
        f"this Python links SQLite {_sqlite3.sqlite_version}"
    )

__version__ = "0.1.0"

# The library logs to "task_queue" and configures nothing: the application
# (or the task-queue command) decides where its lines go. Without a handler
# of its own, Python would print warnings to stderr through its last resort.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "TASK_HANDLERS",
    "AttemptRecord",
    "BatchRef",
    "Claim",
    "Clock",
    "DatabaseBusyError",
    "DatabaseOpenError",
    "DatabaseReplacedError",
    "DiskFullError",
    "DuplicateTaskError",
    "Event",
    "EventKind",
    "HandlerRegistry",
    "Hook",
    "ManualClock",
    "Middleware",
    "NotAQueueDatabaseError",
    "PayloadError",
    "QueueClosedError",
    "RateLimit",
    "ReadOnlyDatabaseError",
    "RetryPolicy",
    "Schedule",
    "ScheduleInfo",
    "SearchedTasks",
    "StatementTooLargeError",
    "StorageError",
    "SystemClock",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskFailedError",
    "TaskNotClaimedError",
    "TaskNotFoundError",
    "TaskPage",
    "TaskPriority",
    "TaskQueue",
    "TaskQueueError",
    "TaskSpec",
    "TaskStatus",
    "TaskTimeout",
    "UnsafeDatabaseFileError",
    "UnusableConnectionError",
    "Worker",
    "WorkerInfo",
    "WorkerOptions",
    "current_task",
    "handler",
    "periodic",
]
