"""The backends the storage contract suite runs against.

Every test of ``test_contract_*.py`` takes ``storage`` (a fresh, empty
storage object) and, when it needs a second object on the same database
(another process, as far as the storage can tell), ``backend.open()``.
Both are parametrized by ``backend``, so each test runs once per backend.

Adding a backend is one factory function and one entry in ``BACKENDS``.
A factory takes the test's ``tmp_path`` and returns ``new_database()``,
which makes a fresh empty database and returns its opener (each call of
the opener is a new storage object on that database). For PostgreSQL::

    def postgres_databases(tmp_path):
        dsn = os.environ.get("TASK_QUEUE_TEST_PG_DSN")
        if not dsn:
            pytest.skip("TASK_QUEUE_TEST_PG_DSN is not set: no PostgreSQL to test against")
        def new_database():
            schema = f"contract_{uuid.uuid4().hex}"   # fresh and empty, dropped after
            return lambda: PostgresStorage(dsn, schema=schema)
        return new_database

    BACKENDS = {"sqlite": sqlite_databases, "postgres": postgres_databases}
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.contract import Backend, Opener

from task_queue.storage import SqliteStorage, Storage


def sqlite_databases(tmp_path: Path) -> Callable[[], Opener]:
    """Each database is a new file; each storage object its own connection
    (and engine thread), as a second process would have."""
    numbers = itertools.count()

    def new_database() -> Opener:
        path = tmp_path / f"contract-{next(numbers)}.db"
        return lambda: SqliteStorage(path)

    return new_database


BACKENDS: dict[str, Callable[[Path], Callable[[], Opener]]] = {
    "sqlite": sqlite_databases,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    chosen = Backend(request.param, BACKENDS[request.param](tmp_path))
    yield chosen
    chosen.close()


@pytest.fixture
def storage(backend: Backend) -> Storage:
    """A fresh storage object on an empty database of the backend under test."""
    return backend.open()
