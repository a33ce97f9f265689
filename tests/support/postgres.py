"""The PostgreSQL server the tests use, if any.

``TASK_QUEUE_TEST_PG_DSN`` names it (``.ci/run`` starts a throwaway server
and sets it). Without it every PostgreSQL test skips with the reason; with
``CI`` set, a missing DSN fails instead (CI never skips them).
``TASK_QUEUE_TEST_PG_CTL`` and ``TASK_QUEUE_TEST_PG_DATA`` (also set by
``.ci/lib/postgres.sh``) let the fault tests restart that server.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
import uuid
from collections.abc import Callable

import pytest

NO_SERVER = (
    "TASK_QUEUE_TEST_PG_DSN is not set: no PostgreSQL server to test against "
    "(README: 'Running the PostgreSQL tests')"
)


def pg_dsn() -> str:
    """The test server's DSN; skips the test when there is none (fails in CI)."""
    dsn = os.environ.get("TASK_QUEUE_TEST_PG_DSN")
    if not dsn:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {NO_SERVER}")
        pytest.skip(NO_SERVER)
    return dsn


def fresh_schema(dsn: str, prefix: str = "t") -> tuple[str, Callable[[], None]]:
    """A new schema name (created empty by the storage) and a function that
    drops it with everything in it."""
    name = f"{prefix}_{uuid.uuid4().hex[:20]}"

    def drop() -> None:
        import psycopg

        with contextlib.suppress(Exception), psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    return name, drop


def search_path_uri(dsn: str, schema: str) -> str:
    """``dsn`` (a URI) with ``options`` putting ``schema`` first on the search
    path: a TaskQueue opened on it keeps its tables there."""
    options = urllib.parse.quote(f"-csearch_path={schema}")
    return f"{dsn}{'&' if '?' in dsn else '?'}options={options}"


def fresh_queue_uri(dsn: str, prefix: str = "t") -> tuple[str, Callable[[], None]]:
    """A URI of a new, empty schema on the server of ``dsn`` (see
    :func:`search_path_uri`) and a function that drops the schema."""
    import psycopg

    schema, drop = fresh_schema(dsn, prefix)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return search_path_uri(dsn, schema), drop
