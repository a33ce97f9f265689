"""The SQLite backend's SQL, loaded once at import (see
:mod:`task_queue.storage.sqlfiles`): the named blocks of queries.sql, and
the numbered migrations in migrations/."""

from __future__ import annotations

import sqlite3

from ..sqlfiles import load_migrations, load_queries


def split_statements(script: str) -> list[str]:
    """Split a block into statements; trigger bodies contain ';' too."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending!r}")
    return statements


QUERIES: dict[str, str] = load_queries("task_queue.storage.sqlite")

#: The schema migrations by the version they produce.
MIGRATIONS: dict[int, str] = load_migrations("task_queue.storage.sqlite")
