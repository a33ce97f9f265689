"""task_queue: a durable, embeddable task queue on SQLite with thread workers.

    from task_queue import TaskQueue, TaskPriority, TaskStatus, Worker, TASK_HANDLERS

Delivery is at least once: make handlers idempotent.
"""

from __future__ import annotations

import sqlite3 as _sqlite3

from .clock import Clock, ManualClock, SystemClock
from .context import TaskCancelled, TaskContext, current_task
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
    TaskNotClaimedError,
    TaskNotFoundError,
    TaskQueueError,
    TaskTimeout,
    UnsafeDatabaseFileError,
)
from .queue import TaskQueue
from .registry import TASK_HANDLERS, HandlerRegistry, handler
from .retry import RetryPolicy
from .task import Task, TaskPriority, TaskStatus
from .worker import Worker

# UPDATE ... RETURNING arrived in SQLite 3.35 (2021); the claim needs it.
if _sqlite3.sqlite_version_info < (3, 35, 0):  # pragma: no cover
    raise ImportError(
        f"task_queue needs SQLite >= 3.35 (UPDATE ... RETURNING); "
        f"this Python links SQLite {_sqlite3.sqlite_version}"
    )

__version__ = "0.1.0"

__all__ = [
    "TASK_HANDLERS",
    "Clock",
    "DatabaseBusyError",
    "DatabaseOpenError",
    "DatabaseReplacedError",
    "DiskFullError",
    "DuplicateTaskError",
    "HandlerRegistry",
    "ManualClock",
    "NotAQueueDatabaseError",
    "PayloadError",
    "QueueClosedError",
    "ReadOnlyDatabaseError",
    "RetryPolicy",
    "StatementTooLargeError",
    "StorageError",
    "SystemClock",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskNotClaimedError",
    "TaskNotFoundError",
    "TaskPriority",
    "TaskQueue",
    "TaskQueueError",
    "TaskStatus",
    "TaskTimeout",
    "UnsafeDatabaseFileError",
    "Worker",
    "current_task",
    "handler",
]
