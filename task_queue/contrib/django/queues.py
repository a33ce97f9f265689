"""One TaskQueue per process and queue, shared by every backend instance.

Django makes a backend instance per thread (``task_backends`` is
thread-local), and ``validate_task`` runs when a tasks module is imported:
the queue is opened only when a task is first enqueued or read, once per
process and queue, and shared by every thread and every TASKS alias on that
queue (and lease). A queue is its file (its real path: two spellings of one
file share a TaskQueue) or, on PostgreSQL, its URI as written (two URIs of
one database open two TaskQueues, each with its own connection pool: they
work, but spell the URI the same way to share one). A child after
``fork()`` gets its own connection from the TaskQueue itself (it never uses
the parent's).

When a SQLite file is also Django's default database, the queue is opened
with ``shared_file=True``: its tables go beside the application's, and
enqueues inside ``transaction.atomic()`` join the transaction
(:mod:`.transactions`). A PostgreSQL queue never does: TaskQueue refuses
SQLite options for it, and its enqueues commit at once.
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
    """The process's TaskQueue on ``options.path`` (a file or a PostgreSQL
    URI), opened on first use."""
    where = options.path if options.postgres else os.path.realpath(options.path)
    key = (where, options.lease_seconds)
    queue = _queues.get(key)
    if queue is not None:
        return queue
    with _lock:
        queue = _queues.get(key)
        if queue is None:
            if options.postgres:
                queue = TaskQueue(options.path, lease_seconds=options.lease_seconds)
            else:
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
