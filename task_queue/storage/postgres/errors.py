"""psycopg exceptions -> the library's typed errors, in one place.

Only SQLSTATE codes are looked at (never message texts): they are stable
across PostgreSQL versions and locales.
"""

from __future__ import annotations

from typing import Any

from ...errors import (
    DatabaseBusyError,
    DiskFullError,
    NotAQueueDatabaseError,
    ReadOnlyDatabaseError,
    StatementTooLargeError,
    StorageError,
)

#: Conflicts between transactions, retried by the storage before they
#: surface (as DatabaseBusyError): a deadlock, a serialization failure, a
#: lock not had within lock_timeout.
RETRIED = frozenset({"40P01", "40001", "55P03"})


def is_retried(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in RETRIED


def typed(exc: BaseException, what: str) -> StorageError:
    """The StorageError for a psycopg error raised while doing ``what``."""
    code: Any = getattr(exc, "sqlstate", None) or ""
    text = f"PostgreSQL: {what} failed: {exc}".rstrip()
    if code in RETRIED:
        return DatabaseBusyError(f"{text} (retried; conflicts with other transactions persist)")
    if code == "53100":  # disk_full
        return DiskFullError(text)
    if code == "25006":  # read_only_sql_transaction (a hot standby, default_transaction_read_only)
        return ReadOnlyDatabaseError(text)
    if code in ("42P01", "3F000"):  # undefined_table, invalid_schema_name
        return NotAQueueDatabaseError(f"{text} (the queue's tables are gone: dropped?)")
    if code in ("54000", "54001"):  # program_limit_exceeded, statement_too_complex
        return StatementTooLargeError(text)
    return StorageError(text)
