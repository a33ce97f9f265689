"""What every command shares: the queue file it works on, its errors, JSON
output and progress lines."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..queue import TaskQueue, is_postgres_dsn
from ..task import Task
from .format import clean, priority_name

#: Where the queue is when neither ``--db`` nor the environment says (the
#: same default as ``TaskQueue()``).
DEFAULT_DB = "taskqueue.db"
#: The environment variable naming the queue file.
DB_ENV = "TASK_QUEUE_DB"
#: Seconds the inspecting commands wait for a lock another process holds
#: before they give up (a locked file must not hang ``stats`` for 30 s).
INSPECT_BUSY_TIMEOUT = 5.0


class CliError(Exception):
    """A failure to report as one line on stderr, exiting with ``code``
    (1: the command could not do it; 2: it was asked wrongly)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def db_path(args: argparse.Namespace) -> str:
    """The queue file: ``--db``, else ``$TASK_QUEUE_DB``, else taskqueue.db
    (or a PostgreSQL URI, ``postgresql://...``, in either)."""
    given: str | None = getattr(args, "db", None)
    return given or os.environ.get(DB_ENV) or DEFAULT_DB


def shown(path: str) -> str:
    """The queue's path as printed and logged: a PostgreSQL URI without its password."""
    if is_postgres_dsn(path):
        from ..storage.postgres.storage import redact_dsn

        return redact_dsn(path)
    return path


def busy_timeout(args: argparse.Namespace, default: float | None) -> float | None:
    """``--busy-timeout``, else ``default`` (None: the library's own). None
    for a PostgreSQL URI: SQLite's busy timeout means nothing there (its
    storage waits ``lock_timeout`` for a row lock and retries conflicts)."""
    if is_postgres_dsn(db_path(args)):
        return None
    given: float | None = getattr(args, "busy_timeout", None)
    return default if given is None else given


def is_queue_file(path: str) -> bool:
    """True if ``path`` may hold a queue: an existing regular file, not
    empty (opening an empty file would create a queue in it). Whether it
    really is one is for TaskQueue to say (NotAQueueDatabaseError). A
    PostgreSQL URI always may (its tables are created on first use)."""
    if is_postgres_dsn(path):
        return True
    if not os.path.isfile(path):
        return False
    if os.path.getsize(path) > 0:
        return True
    wal = path + "-wal"
    return os.path.isfile(wal) and os.path.getsize(wal) > 0


def open_existing(args: argparse.Namespace) -> TaskQueue:
    """The queue at the command's path, for commands that only read or
    change an existing queue: CliError, creating nothing, if there is none."""
    path = db_path(args)
    if not is_queue_file(path):
        raise CliError(f"no task queue at {path}")
    return TaskQueue(path, busy_timeout=busy_timeout(args, INSPECT_BUSY_TIMEOUT))


def open_or_create(args: argparse.Namespace) -> TaskQueue:
    """The queue at the command's path, created if missing (worker, enqueue)."""
    return TaskQueue(db_path(args), busy_timeout=busy_timeout(args, None))


def task_json(task: Task) -> dict[str, Any]:
    """Every field of ``task`` as JSON values: times stay UTC epoch seconds,
    the priority is its name (as ``--priority`` takes it)."""
    doc = task.to_dict()
    doc["priority"] = priority_name(task.priority)
    doc["status"] = str(task.status)
    return doc


def print_json(doc: Any, out: TextIO | None = None) -> None:
    """``doc`` as one JSON document on stdout, and nothing else."""
    stream = out or sys.stdout
    # ensure_ascii: control characters and everything else non-ASCII are
    # escaped, so no name can drive the terminal of whoever reads it raw.
    json.dump(doc, stream, indent=2, ensure_ascii=True, allow_nan=False)
    stream.write("\n")


def progress(
    what: str, stream: TextIO | None = None
) -> tuple[Callable[[int], None], Callable[[], None]]:
    """(report, done) for a long operation: ``report(n)`` rewrites one
    status line ("purged 3000...") on a terminal; ``done()`` erases it.
    Both do nothing when stderr is not a terminal (piped, redirected)."""
    out = stream or sys.stderr
    shown = [0]

    def report(count: int) -> None:
        line = f"{what} {count}..."
        out.write("\r" + line)
        out.flush()
        shown[0] = len(line)

    def done() -> None:
        if shown[0]:
            out.write("\r" + " " * shown[0] + "\r")
            out.flush()

    if not _isatty(out):
        return (lambda count: None), (lambda: None)
    return report, done


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def one_line(message: str) -> str:
    """An error message as one safe line (newlines and controls escaped)."""
    return clean(message.strip()) or "unknown error"
