"""Creating and migrating the PostgreSQL backend's schema: the numbered
scripts in migrations/ (``0001_initial.sql`` produces version 1), each
recorded in ``task_queue_migrations``, applied under an advisory lock so
that several processes opening a new schema at once migrate it once.
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import DatabaseOpenError, NotAQueueDatabaseError
from ..rows import TASK_COLUMNS
from ..sqlfiles import load_migrations

#: The schema migrations by the version they produce.
MIGRATIONS = load_migrations("task_queue.storage.postgres")
#: The schema this library writes: the last migration's number.
SCHEMA_VERSION = max(MIGRATIONS)


def migrate(conn: Any, schema_name: str | None) -> None:
    """Create or upgrade the schema, once however many processes open it at
    once: under an advisory lock (per schema), in one transaction."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('task_queue.migrate'),"
            " hashtext(coalesce(%s, current_schema(), '')))",
            (schema_name,),
        )
        if schema_name is not None:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema_name}"')
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        if schema is None:
            raise DatabaseOpenError("no schema to create the queue in (check search_path)")
        has_log, has_tasks = conn.execute(
            "SELECT to_regclass(quote_ident(current_schema()) || '.task_queue_migrations')"
            " IS NOT NULL, to_regclass(quote_ident(current_schema()) || '.tasks') IS NOT NULL"
        ).fetchone()
        if not has_log:
            if has_tasks:
                raise NotAQueueDatabaseError(
                    f"schema {schema!r} holds a tasks table that is not task_queue's; left "
                    "untouched (give another schema)"
                )
            conn.execute(
                "CREATE TABLE task_queue_migrations ("
                " version integer PRIMARY KEY,"
                " applied_at double precision NOT NULL,"
                " pid integer NOT NULL)"
            )
        applied = {int(v) for (v,) in conn.execute("SELECT version FROM task_queue_migrations")}
        newest = max(applied, default=0)
        if newest > SCHEMA_VERSION:
            raise NotAQueueDatabaseError(
                f"the database has schema version {newest}, newer than this library "
                f"understands ({SCHEMA_VERSION}); upgrade task_queue"
            )
        for version in sorted(set(MIGRATIONS) - applied):
            conn.execute(MIGRATIONS[version])
            conn.execute(
                "INSERT INTO task_queue_migrations (version, applied_at, pid)"
                " VALUES (%s, extract(epoch FROM clock_timestamp()), %s)",
                (version, os.getpid()),
            )
        columns = tuple(
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'tasks'::regclass"
                " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
        )
    if columns != TASK_COLUMNS:
        raise NotAQueueDatabaseError(
            f"the tasks table has unexpected columns {columns}; refusing to use it"
        )
