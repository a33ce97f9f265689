"""Enqueue through the application's own connection: the outbox pattern.

``TaskQueue.enqueue(..., connection=conn)`` inserts tasks with the
application's ``sqlite3.Connection``, inside the transaction it has open:
workers see them only if and when that transaction commits, and a rollback
leaves nothing (River's InsertTx, goqite's SendTx). The rows go in through
the same unit and the same named statements as every other enqueue; only
the connection differs, so the per-queue counts kept by triggers commit or
roll back with the caller's transaction too.

Nobody can wake a worker at that commit, which happens in the caller's
hands: workers notice it through the change feed (``PRAGMA data_version``
changes after any other connection's commit, in this process or another)
within their poll interval.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ...errors import NotAQueueDatabaseError, UnsafeDatabaseFileError, UnusableConnectionError
from ..base import NewTask
from .errors import translate
from .schema import SCHEMA_VERSION, schema_version

T = TypeVar("T")
#: The savepoint around the insert: a batch that fails part-way takes back
#: only its own rows, and leaves the caller's transaction as it was.
_SAVEPOINT = "task_queue_enqueue"


def check_connection(conn: object, identity: tuple[int, int] | None, path: str) -> None:
    """Refuse a connection that cannot take the queue's tasks: not a
    ``sqlite3.Connection``, no transaction open, another database file, or
    a file whose queue schema is not the current one (as this caller's
    transaction sees it)."""
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError(f"connection must be a sqlite3.Connection, got {type(conn).__name__}")
    if not conn.in_transaction:
        raise UnusableConnectionError(
            "the connection has no transaction open: begin one (BEGIN IMMEDIATE, or Django's "
            "transaction.atomic()) and commit it to release the task; without one the task "
            "would commit at once, which enqueue() without connection= already does"
        )
    with _plain_rows(conn):
        _check_file(conn, identity, path)


def _check_file(conn: sqlite3.Connection, identity: tuple[int, int] | None, path: str) -> None:
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    opened = str(row[2]) if row is not None and row[2] else ""
    if identity is None or not opened:
        raise UnusableConnectionError(
            "enqueue(connection=...) needs the queue and the connection on one database file; "
            f"the queue is {path!r}, the connection {opened or 'an in-memory database'!r}"
        )
    try:
        info = os.stat(opened)
    except OSError as exc:
        raise UnusableConnectionError(
            f"cannot look at the connection's file {opened!r}: {exc}"
        ) from exc
    if (info.st_dev, info.st_ino) != identity:
        raise UnusableConnectionError(
            f"the connection is to {opened!r}, another file than the queue's {path!r}: its "
            "transaction cannot hold the queue's tasks"
        )
    if info.st_nlink > 1:
        # As at open (engine.py): two names of one file get two WALs.
        raise UnsafeDatabaseFileError(
            f"{opened!r} has {info.st_nlink} names (hard links); refusing it, nothing was written"
        )
    try:
        version = schema_version(conn)
    except NotAQueueDatabaseError:
        raise
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    if version != SCHEMA_VERSION:
        raise UnusableConnectionError(
            f"this connection's transaction sees queue schema version {version}, not "
            f"{SCHEMA_VERSION}: it began before the queue was created or migrated in the file. "
            "Open the TaskQueue first, then begin the transaction"
        )


def run_in_transaction(
    conn: sqlite3.Connection,
    unit: Callable[[sqlite3.Connection, Sequence[NewTask], float], T],
    tasks: Sequence[NewTask],
    now: float,
) -> T:
    """``unit(conn, tasks, now)`` inside a savepoint of the caller's transaction."""
    with _plain_rows(conn):
        try:
            conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        try:
            result = unit(conn, tasks, now)
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
            if isinstance(exc, sqlite3.Error):
                raise translate(exc) from exc
            raise
        try:
            conn.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return result


@contextlib.contextmanager
def _plain_rows(conn: sqlite3.Connection) -> Iterator[None]:
    """The units read rows as tuples of str: undo the caller's row and
    text factories (sqlite3.Row, bytes...) for the length of our statements."""
    row_factory: Any = conn.row_factory
    text_factory: Any = conn.text_factory
    conn.row_factory = None
    conn.text_factory = str
    try:
        yield
    finally:
        conn.row_factory = row_factory
        conn.text_factory = text_factory
