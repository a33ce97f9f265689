"""Fixtures for every test directory.

Layout, by risk: ``unit/`` pure modules (no database), ``storage/`` the
storage contract suite run against every backend (plus each backend's own
internals), ``integration/`` a real queue file with real threads in one
process, ``processes/`` several real processes: faults, kills, signals, fork.
Shared helpers live in ``support/``.

``TASK_QUEUE_TEST_BACKEND=postgres`` runs the integration and process tests
against PostgreSQL (``TASK_QUEUE_TEST_PG_DSN``): ``db_path`` is then a
PostgreSQL URI whose ``options`` put a fresh schema first on the search
path, so every ``TaskQueue(db_path)`` of a test (and of the processes it
starts) opens a PostgresStorage on a queue of its own. Tests of what only
SQLite has (files, pragmas, the engine) are marked ``sqlite_only`` and
skipped there; ``.ci/run`` runs a selection of directories a second time
this way.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import Procs
from support.postgres import fresh_queue_uri, pg_dsn

from task_queue import HandlerRegistry, ManualClock, TaskQueue

#: The backend the integration and process tests run on.
BACKEND = os.environ.get("TASK_QUEUE_TEST_BACKEND", "sqlite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND != "postgres":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "tests what only the SQLite backend has"
            item.add_marker(pytest.mark.skip(reason=f"sqlite_only: {why}"))


def pytest_configure(config: pytest.Config) -> None:
    # A shell without job control starts background commands (`pytest &`,
    # `bash .ci/run &`, nohup) with SIGINT and SIGQUIT ignored, and every
    # process a test starts inherits that: a scenario then never sees the
    # Ctrl-C it sends itself (the interrupted-enqueue test failed only when
    # the suite ran in the background). Python's own default (the handler
    # that raises KeyboardInterrupt, reset to SIG_DFL across exec) is what
    # the signal tests are about, so start from it whatever the shell did.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[str]:
    """Where the test's queue lives: a SQLite file, or (with
    TASK_QUEUE_TEST_BACKEND=postgres) a PostgreSQL URI of a fresh schema."""
    if BACKEND != "postgres":
        yield str(tmp_path / "queue.db")
        return
    uri, drop = fresh_queue_uri(pg_dsn(), "it")
    yield uri
    drop()


@pytest.fixture
def queue(db_path: str) -> Iterator[TaskQueue]:
    q = TaskQueue(db_path)
    yield q
    q.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_queue(db_path: str, clock: ManualClock) -> Iterator[TaskQueue]:
    q = TaskQueue(db_path, clock=clock)
    yield q
    q.close()


@pytest.fixture
def registry() -> HandlerRegistry:
    return HandlerRegistry()


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Procs]:
    """Role processes for a fault scenario; killed and reaped after the test,
    their output printed when it failed."""
    manager = Procs(tmp_path / "procs")
    yield manager
    manager.cleanup()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(manager.dump())


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def exec_dir(tmp_path: Path) -> Path:
    """Where worker processes write their execution logs."""
    path = tmp_path / "exec"
    path.mkdir()
    return path
