"""Raw SQL on a test's queue, whichever backend holds it (``db_path`` is a
SQLite file or, under TASK_QUEUE_TEST_BACKEND=postgres, a PostgreSQL URI):
for tests that look at or change rows behind the library's back.

Statements use ``?`` placeholders (turned into ``%s`` for psycopg); each
connection commits what it executes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any


def is_postgres(db_path: str) -> bool:
    return db_path.startswith(("postgresql://", "postgres://"))


class RawDB:
    """A connection that commits each statement (autocommit)."""

    def __init__(self, db_path: str) -> None:
        self.postgres = is_postgres(db_path)
        if self.postgres:
            import psycopg

            self._conn: Any = psycopg.connect(db_path, autocommit=True)
        else:
            self._conn = sqlite3.connect(db_path, isolation_level=None)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.postgres:
            return self._conn.execute(sql.replace("?", "%s"), tuple(params))
        return self._conn.execute(sql, tuple(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def announce(self) -> None:
        """Tell other processes' change feeds, as the library's writes do:
        SQLite's feed sees any commit; PostgreSQL's hears only NOTIFY."""
        if self.postgres:
            self._conn.execute("SELECT pg_notify('task_queue_' || current_schema(), '')")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RawDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(db_path: str) -> RawDB:
    return RawDB(db_path)


def integrity_errors() -> tuple[type[BaseException], ...]:
    """What a constraint violation raises, on either backend."""
    found: list[type[BaseException]] = [sqlite3.IntegrityError]
    try:
        import psycopg

        found.append(psycopg.IntegrityError)
    except ImportError:  # pragma: no cover - the test extra installs it
        pass
    return tuple(found)
