"""SQLITE_TOOBIG: a value or statement beyond SQLite's limits is a typed, permanent error.

The limits are lowered with ``Connection.setlimit`` (Python 3.11+) on the
engine's own connection, so real statements really exceed them; nothing is
mocked. Retrying cannot make such a write fit, so :func:`is_permanent` says
so, and the busy or full database errors stay transient.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from task_queue import (
    DatabaseBusyError,
    DatabaseReplacedError,
    DiskFullError,
    PayloadError,
    StatementTooLargeError,
    StorageError,
    TaskQueue,
)
from task_queue.storage.sqlite.engine import Engine
from task_queue.storage.sqlite.errors import is_permanent, translate

pytestmark = pytest.mark.skipif(
    not hasattr(sqlite3.Connection, "setlimit"), reason="Connection.setlimit needs Python 3.11"
)


# Python 3.11+ only (skipped below that); looked up by name for the type
# checker, which checks for 3.10.
LIMIT_LENGTH: int = getattr(sqlite3, "SQLITE_LIMIT_LENGTH", 0)
LIMIT_SQL_LENGTH: int = getattr(sqlite3, "SQLITE_LIMIT_SQL_LENGTH", 1)


def _limit(conn: sqlite3.Connection, category: int, value: int) -> None:
    conn.setlimit(category, value)  # type: ignore[attr-defined]


def test_an_oversized_value_is_statement_too_large_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    engine = Engine(str(tmp_path / "e.db"), execute_init=["CREATE TABLE t (v)"])
    try:
        engine.call(_limit, LIMIT_LENGTH, 1000, readonly=True)
        with pytest.raises(StatementTooLargeError, match="larger than SQLite allows") as info:
            engine.fetch_results(engine.execute("INSERT INTO t VALUES (?)", ("x" * 2000,)))
        assert isinstance(info.value, StorageError)
        assert is_permanent(info.value)
        # A value built inside SQLite, past the limit, is the same error.
        with pytest.raises(StatementTooLargeError):
            engine.fetch_results(engine.execute("INSERT INTO t VALUES (randomblob(5000))"))
        assert engine.fetch_results(engine.execute("SELECT count(*) FROM t")) == [(0,)]
        # The engine carries on with what fits.
        engine.fetch_results(engine.execute("INSERT INTO t VALUES (?)", ("x" * 10,)))
        assert engine.fetch_results(engine.execute("SELECT count(*) FROM t")) == [(1,)]
    finally:
        engine.close()


def test_an_overlong_statement_is_statement_too_large(tmp_path: Path) -> None:
    engine = Engine(str(tmp_path / "e.db"), execute_init=["CREATE TABLE t (v)"])
    try:
        engine.call(_limit, LIMIT_SQL_LENGTH, 100, readonly=True)
        long_sql = "INSERT INTO t VALUES (1)" + " " * 200
        with pytest.raises(StatementTooLargeError) as info:
            engine.fetch_results(engine.execute(long_sql))
        assert is_permanent(info.value)
        assert engine.fetch_results(engine.execute("SELECT count(*) FROM t")) == [(0,)]
    finally:
        engine.close()


def test_an_enqueue_past_the_limit_raises_it_to_the_caller(tmp_path: Path) -> None:
    with TaskQueue(str(tmp_path / "q.db")) as q:
        q.storage._engine.call(  # type: ignore[attr-defined]
            _limit, LIMIT_LENGTH, 4096, readonly=True
        )
        with pytest.raises(StatementTooLargeError):
            q.enqueue("big", "t", {"blob": "x" * 8000})
        assert q.get_queue_stats()["pending"] == 0
        assert q.enqueue("small", "t", {"blob": "x"}) > 0


def test_what_is_permanent() -> None:
    assert is_permanent(PayloadError("not JSON"))
    assert is_permanent(DatabaseReplacedError("the file was deleted"))
    assert is_permanent(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert is_permanent(translate(sqlite3.DataError("string or blob too big")))
    assert not is_permanent(DatabaseBusyError("locked"))
    assert not is_permanent(DiskFullError("full"))
    assert not is_permanent(translate(sqlite3.OperationalError("database is locked")))
    assert not is_permanent(translate(sqlite3.OperationalError("disk I/O error")))
    assert not is_permanent(StorageError("something we cannot classify"))
    assert not is_permanent(RuntimeError("unknown"))
