"""sqlite3 exceptions -> the library's typed errors, in one place."""

from __future__ import annotations

import sqlite3

from ...errors import (
    UNSTORABLE,
    UNUSABLE_STORAGE,
    DatabaseBusyError,
    DatabaseOpenError,
    DiskFullError,
    NotAQueueDatabaseError,
    ReadOnlyDatabaseError,
    StatementTooLargeError,
    StorageError,
    TaskQueueError,
)

# Primary result codes (sqlite3.h). Python 3.11 exposes them on the
# exception; 3.10 does not, so the messages are the fallback.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_NOMEM = 7
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_TOOBIG = 18
SQLITE_NOTADB = 26
# Extended: the -shm file could not be grown (mmap on a full file system).
SQLITE_IOERR_SHMSIZE = SQLITE_IOERR | (19 << 8)

_MESSAGES = (
    ("database is locked", SQLITE_BUSY),
    ("database table is locked", SQLITE_LOCKED),
    ("database or disk is full", SQLITE_FULL),
    ("attempt to write a readonly database", SQLITE_READONLY),
    ("file is not a database", SQLITE_NOTADB),
    ("database disk image is malformed", SQLITE_CORRUPT),
    ("unable to open database file", SQLITE_CANTOPEN),
    ("disk i/o error", SQLITE_IOERR),
    ("out of memory", SQLITE_NOMEM),
    ("string or blob too big", SQLITE_TOOBIG),
    ("statement too long", SQLITE_TOOBIG),
    # Python's own check against SQLITE_LIMIT_SQL_LENGTH, before SQLite sees it.
    ("query string is too large", SQLITE_TOOBIG),
)


def primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()
    for fragment, value in _MESSAGES:
        if fragment in text:
            return value
    return None


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and primary_code(exc) in (SQLITE_BUSY, SQLITE_LOCKED)


def is_transaction_fatal(exc: BaseException) -> bool:
    """Errors after which SQLite may have rolled back the whole transaction."""
    return isinstance(exc, sqlite3.Error) and primary_code(exc) in (
        SQLITE_FULL,
        SQLITE_IOERR,
        SQLITE_NOMEM,
        SQLITE_BUSY,
        SQLITE_CORRUPT,
    )


def translate(exc: BaseException, *, opening: bool = False) -> BaseException:
    """Map a sqlite3 error to our tree; anything else passes through unchanged."""
    if isinstance(exc, TaskQueueError) or not isinstance(exc, sqlite3.Error):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        return exc  # the caller of the unit decides what a constraint means
    code = primary_code(exc)
    error: StorageError
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        error = DatabaseBusyError(
            f"the database stayed locked by another connection beyond the retry budget: {exc}"
        )
    elif code == SQLITE_FULL or getattr(exc, "sqlite_errorcode", None) == SQLITE_IOERR_SHMSIZE:
        error = DiskFullError(f"the database or disk is full: {exc}")
    elif code == SQLITE_READONLY:
        error = ReadOnlyDatabaseError(f"the database cannot be written: {exc}")
    elif code in (SQLITE_NOTADB, SQLITE_CORRUPT):
        error = NotAQueueDatabaseError(f"not a usable task_queue database: {exc}")
    elif code == SQLITE_TOOBIG:
        error = StatementTooLargeError(
            f"a value or statement is larger than SQLite allows; nothing was written: {exc}"
        )
    elif code == SQLITE_CANTOPEN:
        error = DatabaseOpenError(f"cannot open the database file: {exc}")
    elif opening:
        error = DatabaseOpenError(f"cannot open the database: {exc}")
    else:
        error = StorageError(f"database error: {exc}")
    error.__cause__ = exc
    return error


#: Errors that retrying the same operation cannot cure.
_PERMANENT: tuple[type[BaseException], ...] = (*UNSTORABLE, *UNUSABLE_STORAGE)
_PERMANENT_CODES = (SQLITE_TOOBIG,)


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same write cannot succeed, so it must not be retried forever.

    False for what may clear by itself (busy, disk full, read-only, an I/O
    error) and for what we cannot tell. A raw ``sqlite3.IntegrityError``
    (a constraint: the same row violates it again) counts as permanent.
    """
    if isinstance(exc, _PERMANENT):
        return True
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    if isinstance(exc, sqlite3.Error):
        return primary_code(exc) in _PERMANENT_CODES
    return False
