"""enqueue(connection=conn): tasks inserted in the application's own SQLite
transaction (the outbox pattern): visible once it commits, gone if it rolls
back; and the queue sharing the application's database file (shared_file)."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Procs, wait_until

from task_queue import (
    NotAQueueDatabaseError,
    TaskNotFoundError,
    TaskQueue,
    UnusableConnectionError,
    Worker,
)
from task_queue.storage.sqlite.schema import SCHEMA_VERSION


@pytest.fixture
def app_db(tmp_path: Path) -> str:
    """The application's own database: a file with a table of its own."""
    path = str(tmp_path / "app.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def shared(app_db: str) -> Iterator[TaskQueue]:
    q = TaskQueue(app_db, shared_file=True)
    yield q
    q.close()


@pytest.fixture
def app(app_db: str, shared: TaskQueue) -> Iterator[sqlite3.Connection]:
    """The application's connection, opened after the queue (as an app does)."""
    conn = sqlite3.connect(app_db)
    yield conn
    conn.close()


def counts(q: TaskQueue) -> dict[str, int]:
    return {k: v for k, v in q.get_queue_stats().items() if v}


# -- commit and rollback ---------------------------------------------------------------


def test_a_task_exists_once_the_callers_transaction_commits(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    # Python's sqlite3 begins a transaction before the application's INSERT.
    app.execute("INSERT INTO orders (item) VALUES ('book')")
    task_id = shared.enqueue("ship", "ship_order", {"order": 1}, connection=app)
    assert shared.get_task(task_id) is None  # the queue's connection: not committed yet
    assert counts(shared) == {}
    app.commit()
    task = shared.get_task(task_id)
    assert task is not None and task.status == "pending" and task.payload == {"order": 1}
    assert counts(shared) == {"pending": 1}


def test_a_rollback_leaves_no_task_and_the_counts_as_they_were(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    kept = shared.enqueue("before", "t")
    app.execute("INSERT INTO orders (item) VALUES ('book')")
    gone = shared.enqueue("ship", "t", connection=app)
    more = shared.enqueue_many(
        [{"name": f"m{i}", "task_type": "t"} for i in range(3)], connection=app
    )
    app.rollback()
    assert shared.get_tasks([gone, *more]) == []
    assert counts(shared) == {"pending": 1}
    assert shared.get_queue_stats("default")["pending"] == 1
    assert [t.id for t in shared.list_tasks().tasks] == [kept]
    assert app.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_enqueue_many_and_unique_keys_within_the_transaction(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    app.execute("BEGIN IMMEDIATE")
    ids = shared.enqueue_many(
        [
            {"name": "a", "task_type": "t", "unique_key": "k"},
            {"name": "b", "task_type": "t", "unique_key": "k"},  # the first holds the key
            {"name": "c", "task_type": "t", "priority": -50},
        ],
        connection=app,
    )
    assert ids[0] == ids[1] and len(set(ids)) == 2
    again = shared.enqueue("d", "t", unique_key="k", connection=app)
    assert again == ids[0]
    app.execute("COMMIT")
    assert counts(shared) == {"pending": 2}


def test_a_batch_that_fails_takes_back_only_its_own_rows(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    app.execute("INSERT INTO orders (item) VALUES ('book')")
    first = shared.enqueue("first", "t", connection=app)
    with pytest.raises(TaskNotFoundError):
        shared.enqueue_many(
            [
                {"name": "ok", "task_type": "t"},
                {"name": "bad", "task_type": "t", "depends_on": [999]},
            ],
            connection=app,
        )
    assert app.in_transaction  # the caller's transaction goes on
    app.commit()
    assert [t.id for t in shared.list_tasks().tasks] == [first]
    assert app.execute("SELECT count(*) FROM orders").fetchone()[0] == 1


def test_the_callers_row_and_text_factories_are_left_as_they_were(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    app.row_factory = sqlite3.Row
    app.text_factory = bytes
    app.execute("BEGIN")
    task_id = shared.enqueue("x", "t", unique_key="u", connection=app)
    assert shared.enqueue("y", "t", unique_key="u", connection=app) == task_id
    assert app.row_factory is sqlite3.Row and app.text_factory is bytes
    app.execute("COMMIT")
    assert shared.get_task(task_id) is not None


# -- connections it refuses ------------------------------------------------------------------


def test_a_connection_without_a_transaction_is_refused(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    assert not app.in_transaction
    with pytest.raises(UnusableConnectionError, match="no transaction open"):
        shared.enqueue("x", "t", connection=app)
    assert counts(shared) == {}


def test_a_connection_to_another_file_is_refused(shared: TaskQueue, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(UnusableConnectionError, match="another file"):
        shared.enqueue("x", "t", connection=other)
    other.rollback()
    memory = sqlite3.connect(":memory:")
    memory.execute("CREATE TABLE t (x)")
    memory.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(UnusableConnectionError, match="in-memory"):
        shared.enqueue("x", "t", connection=memory)
    assert counts(shared) == {}
    assert other.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]
    other.close()
    memory.close()


def test_a_transaction_that_sees_another_schema_version_is_refused(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    # As if the transaction had begun before the queue migrated the file.
    app.execute("UPDATE task_queue_meta SET value = '1' WHERE key = 'schema_version'")
    with pytest.raises(UnusableConnectionError, match=f"version 1, not {SCHEMA_VERSION}"):
        shared.enqueue("x", "t", connection=app)
    app.rollback()


def test_not_a_connection_is_a_type_error(shared: TaskQueue) -> None:
    with pytest.raises(TypeError, match=r"sqlite3\.Connection"):
        shared.enqueue("x", "t", connection="app.db")  # type: ignore[arg-type]


def test_refused_arguments_write_nothing_in_the_callers_transaction(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    app.execute("BEGIN")
    with pytest.raises(ValueError, match="priority"):
        shared.enqueue("x", "t", priority=101, connection=app)
    app.execute("COMMIT")
    assert counts(shared) == {}


# -- workers pick it up --------------------------------------------------------------------


def test_a_worker_in_this_process_runs_it_after_the_commit(
    shared: TaskQueue, app: sqlite3.Connection
) -> None:
    ran = threading.Event()
    with Worker(shared, {"t": lambda payload: ran.set()}, concurrency=1, poll_interval=0.02):
        app.execute("BEGIN IMMEDIATE")
        task_id = shared.enqueue("x", "t", connection=app)
        # Uncommitted: the Worker, on the queue's own connection, cannot see it.
        assert not ran.wait(0.3)
        app.execute("COMMIT")
        # No wake-up is possible at the caller's commit: the change feed
        # (PRAGMA data_version) tells the Worker within its poll interval.
        assert shared.wait(task_id, timeout=10).status == "completed"


@pytest.mark.slow
def test_a_worker_in_another_process_picks_it_up(
    shared: TaskQueue, app: sqlite3.Connection, app_db: str, procs: Procs, exec_dir: Path
) -> None:
    worker = procs.start("worker", db=app_db, log_dir=str(exec_dir), concurrency=2)
    wait_until(lambda: shared.workers(), timeout=30)
    app.execute("INSERT INTO orders (item) VALUES ('rolled back')")
    rolled_back = shared.enqueue("gone", "work", connection=app)
    app.rollback()
    app.execute("INSERT INTO orders (item) VALUES ('book')")
    committed = shared.enqueue("ship", "work", connection=app)
    started = time.monotonic()
    app.commit()
    done = shared.wait(committed, timeout=30)
    assert done.status == "completed" and done.result == {"pid": worker.pid}
    assert time.monotonic() - started < 10
    log = "".join(p.read_text() for p in exec_dir.glob("exec-*.log"))
    # The rolled-back id may be handed out again (AUTOINCREMENT's counter
    # rolled back too), but only the committed task ever ran.
    assert [line.split()[1] for line in log.splitlines() if line.startswith("S")] == [
        str(committed)
    ]
    assert rolled_back <= committed
    procs.signal(worker, 15)
    worker.wait(timeout=30)


# -- the queue in the application's database file ---------------------------------------------


def test_a_file_with_the_applications_tables_needs_shared_file(app_db: str) -> None:
    before = Path(app_db).read_bytes()
    with pytest.raises(NotAQueueDatabaseError, match="shared_file=True"):
        TaskQueue(app_db)
    assert Path(app_db).read_bytes() == before


def test_shared_file_keeps_the_applications_tables_and_file_mode(app_db: str) -> None:
    os.chmod(app_db, 0o640)
    with TaskQueue(app_db, shared_file=True) as q:
        q.enqueue("x", "t")
    assert stat.S_IMODE(os.stat(app_db).st_mode) == 0o640
    conn = sqlite3.connect(app_db)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    conn.close()
    with TaskQueue(app_db) as q:  # a queue file now: no flag needed to open it again
        assert q.get_queue_stats()["pending"] == 1


def test_shared_file_refuses_tables_named_like_the_queues(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)")
    conn.execute("INSERT INTO tasks (title) VALUES ('water the plants')")
    conn.commit()
    conn.close()
    before = Path(path).read_bytes()
    with pytest.raises(NotAQueueDatabaseError, match=r"named like the queue's.*tasks"):
        TaskQueue(path, shared_file=True)
    assert Path(path).read_bytes() == before
