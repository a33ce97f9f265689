"""The backends the storage contract suite runs against.

Every test of ``test_contract_*.py`` takes ``storage`` (a fresh, empty
storage object) and, when it needs a second object on the same database
(another process, as far as the storage can tell), ``backend.open()``.
Both are parametrized by ``backend``, so each test runs once per backend.

Adding a backend is one factory function and one entry in ``BACKENDS``.
A factory takes the test's ``tmp_path`` and returns ``new_database()``,
which makes a fresh empty database and returns its opener (each call of
the opener is a new storage object on that database).

PostgreSQL runs when ``TASK_QUEUE_TEST_PG_DSN`` names a server (``.ci/run``
starts a throwaway one and sets it; README "Running the PostgreSQL tests");
without it its tests skip, saying so. Each database is a fresh schema,
dropped after the test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.contract import Backend, Opener
from support.postgres import fresh_schema, pg_dsn

from task_queue.storage import SqliteStorage, Storage


def sqlite_databases(tmp_path: Path) -> Callable[[], Opener]:
    """Each database is a new file; each storage object its own connection
    (and engine thread), as a second process would have."""
    numbers = itertools.count()

    def new_database() -> Opener:
        path = tmp_path / f"contract-{next(numbers)}.db"
        return lambda: SqliteStorage(path)

    return new_database


_DROP_AFTER: list[Callable[[], None]] = []


def postgres_databases(tmp_path: Path) -> Callable[[], Opener]:
    """Each database is a new schema on the server of TASK_QUEUE_TEST_PG_DSN
    (dropped after the test); each storage object has its own pool and
    connections, as a second process would."""
    from task_queue.storage.postgres import PostgresStorage

    dsn = pg_dsn()

    def new_database() -> Opener:
        schema, drop = fresh_schema(dsn, "contract")
        _DROP_AFTER.append(drop)
        return lambda: PostgresStorage(dsn, schema=schema, pool_size=4)

    return new_database


BACKENDS: dict[str, Callable[[Path], Callable[[], Opener]]] = {
    "postgres": postgres_databases,
    "sqlite": sqlite_databases,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    chosen = Backend(request.param, BACKENDS[request.param](tmp_path))
    yield chosen
    chosen.close()
    while _DROP_AFTER:
        _DROP_AFTER.pop()()


@pytest.fixture
def storage(backend: Backend) -> Storage:
    """A fresh storage object on an empty database of the backend under test."""
    return backend.open()
