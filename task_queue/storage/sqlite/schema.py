"""Opening a database file safely, creating and migrating the schema.

A file that is not ours is refused *before* anything could write to it:
``sqlite3.connect()`` on a non-database succeeds and only the first query
fails, and ``PRAGMA journal_mode=WAL`` on someone else's database would
change its header. So: read the 16-byte header first, then look at the
schema read-only, and only then set pragmas or create tables.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time

from ...errors import DatabaseOpenError, NotAQueueDatabaseError
from ..rows import TASK_COLUMNS
from .errors import (
    SQLITE_BUSY,
    SQLITE_CANTOPEN,
    SQLITE_FULL,
    SQLITE_IOERR,
    SQLITE_LOCKED,
    SQLITE_NOMEM,
    SQLITE_READONLY,
    primary_code,
)
from .files import PRIVATE_MODE, Owner, check_sidecars, claim_new_database
from .sql import MIGRATIONS, split_statements

SQLITE_HEADER = b"SQLite format 3\x00"
#: PRAGMA application_id of our files: b"TQue" read as a big-endian int.
APPLICATION_ID = 0x54517565
#: The schema this library writes: the last migration's number.
SCHEMA_VERSION = max(MIGRATIONS)


# Errors reading the schema that say nothing about whose file it is.
_NOT_ABOUT_THE_FILE = (
    SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_FULL,
    SQLITE_NOMEM,
)  # fmt: skip


def prepare_file(path: str) -> None:
    """Check the file before SQLite touches it; create a new one owner-only.

    Also refuses ``-wal``/``-shm`` files someone else planted beside it, and
    an empty database file someone else created (see files.py).
    """
    if path == ":memory:" or path.startswith("file:"):
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise DatabaseOpenError(f"cannot create {path!r}: directory {directory!r} does not exist")
    if not os.path.lexists(path):
        # Before creating anything: a planted -wal would be adopted by the
        # new queue.
        check_sidecars(path, Owner.new())
        try:
            # O_EXCL: create it ourselves if it does not exist yet; 0600
            # whatever the umask. SQLite gives the -wal and -shm files the
            # same mode.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
            try:
                os.fchmod(fd, PRIVATE_MODE)
            finally:
                os.close(fd)
            return
        except FileExistsError:
            pass  # another opener was quicker: look at what it made
        except OSError as exc:
            raise DatabaseOpenError(f"cannot create {path!r}: {exc}") from exc
    if os.path.isdir(path):
        raise DatabaseOpenError(f"{path!r} is a directory, not a database file")
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise DatabaseOpenError(f"cannot read {path!r}: {exc}") from exc
    if header and header != SQLITE_HEADER:
        raise NotAQueueDatabaseError(f"{path!r} is not a SQLite database; left untouched")
    check_sidecars(path, Owner.of(info))
    if not header:
        claim_new_database(path)


def _main_file(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row is not None and row[2] else ""


#: Every table, index and trigger the migrations create. A file shared with
#: the application must hold none of these names before the queue moves in:
#: 0001's ``CREATE TABLE IF NOT EXISTS tasks`` would adopt an application's
#: own ``tasks`` table, and migration 2 would copy its rows.
QUEUE_OBJECTS = frozenset(
    name
    for script in MIGRATIONS.values()
    for name in re.findall(
        r"CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|TRIGGER|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)",
        script,
        flags=re.IGNORECASE,
    )
)


def open_database(conn: sqlite3.Connection, *, synchronous: str, shared_file: bool = False) -> None:
    """Runs in the engine thread when the connection opens. ``shared_file``:
    the file may be the application's own database (its tables stay; the
    queue's go beside them)."""
    app_id, tables = _inspect(conn)
    foreign = app_id == 0 and bool(tables - {"sqlite_sequence"})
    if app_id not in (0, APPLICATION_ID):
        raise NotAQueueDatabaseError(
            f"this SQLite file belongs to another application (application_id={app_id:#x}); "
            "left untouched"
        )
    if foreign and not shared_file:
        raise NotAQueueDatabaseError(
            "this SQLite file holds tables of another application "
            f"({', '.join(sorted(tables))}); left untouched (to keep the queue in the "
            "application's own database, open it with shared_file=True)"
        )
    if foreign:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        clash = names & QUEUE_OBJECTS
        if clash:
            raise NotAQueueDatabaseError(
                f"this SQLite file has tables or indexes named like the queue's "
                f"({', '.join(sorted(clash))}) that are not the queue's; left untouched"
            )
    if app_id == APPLICATION_ID and "task_queue_meta" not in tables:
        raise NotAQueueDatabaseError(
            "this file carries task_queue's application_id but not its tables: damaged, "
            "or another program's; left untouched"
        )
    # The file is ours or empty: now it is safe to change it.
    creating = app_id == 0
    path = _main_file(conn) if creating else ""
    if path:
        # A queue is about to be created in this file: it must be ours, and
        # nothing planted beside it (again: moments may have passed). The
        # application's own database keeps the mode the application gave it.
        claim_new_database(path, tighten=not foreign)
        check_sidecars(path, Owner.of(os.stat(path)))
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise DatabaseOpenError(f"could not switch the database to WAL mode (got {mode!r})")
    if path:
        # SQLite has just opened or created the -wal and -shm: ours, unless
        # someone slipped them in since the check above.
        check_sidecars(path, Owner.of(os.stat(path)))
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # When the WAL is reset after a checkpoint, cut it back to 4 MiB (about
    # what 1,000 pages of auto-checkpoint fill): a WAL that a long reader
    # let grow does not stay large for the life of every connection. The
    # engine truncates it entirely once idle (engine.py).
    conn.execute("PRAGMA journal_size_limit = 4194304")
    conn.execute("PRAGMA foreign_keys = ON")
    _migrate(conn)
    _check_columns(conn)


def _inspect(conn: sqlite3.Connection) -> tuple[int, set[str]]:
    # Both reads in one transaction: read apart, another process creating
    # the queue could commit in between, and its tables would look foreign
    # (application_id still 0, tables already there).
    own_txn = not conn.in_transaction
    try:
        if own_txn:
            conn.execute("BEGIN")
        try:
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            if own_txn and conn.in_transaction:
                conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        if primary_code(exc) in _NOT_ABOUT_THE_FILE:
            # Busy (retried by the engine), read-only, I/O: typed by the
            # caller; none of them means the file is not ours.
            raise
        raise NotAQueueDatabaseError(
            f"not a usable SQLite database: {exc}; left untouched"
        ) from exc
    return app_id, {row[0] for row in rows}


def _schema_version(conn: sqlite3.Connection, app_id: int, tables: set[str]) -> int:
    version = 0
    if "task_queue_meta" in tables:
        row = conn.execute(
            "SELECT value FROM task_queue_meta WHERE key = 'schema_version'"
        ).fetchone()
        version = int(row[0]) if row else 0
    elif app_id == APPLICATION_ID:
        raise NotAQueueDatabaseError("task_queue file without its meta table: damaged")
    if version > SCHEMA_VERSION:
        raise NotAQueueDatabaseError(
            f"the database has schema version {version}, newer than this library "
            f"understands ({SCHEMA_VERSION}); upgrade task_queue"
        )
    return version


def schema_version(conn: sqlite3.Connection) -> int:
    """The queue schema version of the file as ``conn`` sees it now (in its
    transaction, if one is open): 0 for none; NotAQueueDatabaseError for a
    newer one, or another application's file."""
    app_id, tables = _inspect(conn)
    if app_id not in (0, APPLICATION_ID):
        raise NotAQueueDatabaseError(
            f"this SQLite file belongs to another application (application_id={app_id:#x})"
        )
    return _schema_version(conn, app_id, tables)


def _migrate(conn: sqlite3.Connection) -> None:
    # Opening a current file takes no write lock: a busy writer elsewhere
    # must not make TaskQueue() wait or fail.
    app_id, tables = _inspect(conn)
    if app_id == APPLICATION_ID and _schema_version(conn, app_id, tables) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have just
        # created the schema.
        app_id, tables = _inspect(conn)
        version = _schema_version(conn, app_id, tables)
        applied = list(range(version + 1, SCHEMA_VERSION + 1))
        for target in applied:
            for statement in split_statements(MIGRATIONS[target]):
                conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO task_queue_meta (key, value) VALUES ('schema_version', ?)",
                (str(target),),
            )
        # Under the same write lock as the migrations: each is recorded
        # exactly once, however many processes opened the file at once.
        conn.executemany(
            "INSERT INTO task_queue_migrations (version, applied_at, pid) VALUES (?, ?, ?)",
            [(target, time.time(), os.getpid()) for target in applied],
        )
        if app_id != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_columns(conn: sqlite3.Connection) -> None:
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(tasks)"))
    if columns != TASK_COLUMNS:
        raise NotAQueueDatabaseError(
            f"the tasks table has unexpected columns {columns}; refusing to use it"
        )
