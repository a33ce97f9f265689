"""fork() while the parent is in the middle of a write.

SQLite keeps per-process lock bookkeeping (which connection of this process
holds which lock on which file, and its own mutexes). A fork() landing while
the engine thread was inside a transaction copied that state into the child:
even a brand-new TaskQueue there then got DatabaseBusyError forever, and
some children hung in ``sqlite3.connect``. Measured before the fix: 11 of 20
children hung. Now every Engine is quiesced around fork(): the fork waits
for the current batch's COMMIT.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from support.scenarios import run_scenario

from task_queue.storage.sqlite.engine import Engine

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.mark.slow
def test_children_forked_during_heavy_writes_can_use_the_file(tmp_path: Path) -> None:
    report = run_scenario(
        "fork_storm",
        timeout=240,
        db=str(tmp_path / "q.db"),
        forks=60,
        writers=4,
        child_deadline=10.0,
    )
    assert report["errors"] == []
    assert report["written"] > 0
    # Every child opened its own queue, enqueued, claimed and completed.
    assert report["statuses"] == {"0": 60}, report["statuses"]
    conn = sqlite3.connect(tmp_path / "q.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done = conn.execute(
            "SELECT count(*) FROM tasks WHERE task_type = 'child' AND status = 'completed'"
        ).fetchone()[0]
    finally:
        conn.close()
    assert done == 60


@pytest.mark.slow
def test_children_forked_while_a_thread_runs_its_own_statements_can_use_the_file(
    tmp_path: Path,
) -> None:
    """One writer thread enqueueing single tasks: uncontended, it runs each
    INSERT on the connection itself (caller runs), holding the lock that
    fork() waits for exactly as for an engine thread's batch."""
    report = run_scenario(
        "fork_storm",
        timeout=240,
        db=str(tmp_path / "q.db"),
        forks=40,
        writers=1,
        child_deadline=10.0,
        singles=True,
    )
    assert report["errors"] == []
    assert report["inline"] > 100, "the writer hardly ran its own statements: not a test"
    assert report["statuses"] == {"0": 40}, report["statuses"]
    conn = sqlite3.connect(tmp_path / "q.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        written = conn.execute("SELECT count(*) FROM tasks WHERE task_type = 'w'").fetchone()[0]
    finally:
        conn.close()
    assert written == report["written"]


def test_fork_waits_for_the_batch_in_flight(tmp_path: Path) -> None:
    """The fork happens only once the transaction under way has ended."""
    engine = Engine(str(tmp_path / "e.db"), execute_init=["CREATE TABLE t (k)"])
    try:
        inside, release = threading.Event(), threading.Event()
        order: list[str] = []

        def unit(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (1)")
            inside.set()
            release.wait(10)
            order.append("unit done")

        request = engine.submit(unit)
        assert inside.wait(10)
        forked = threading.Event()

        def fork() -> None:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            order.append("forked")
            os.waitpid(pid, 0)
            forked.set()

        forker = threading.Thread(target=fork)
        forker.start()
        # The fork cannot happen while the unit holds its transaction open.
        assert not forked.wait(0.3)
        release.set()
        request.wait(10)
        assert forked.wait(10)
        forker.join(10)
        assert order == ["unit done", "forked"]
    finally:
        engine.close()


def test_a_unit_that_forks_does_not_deadlock(tmp_path: Path) -> None:
    """The engine thread itself forking cannot wait for its own batch: it
    goes ahead (with a warning in the log) instead of deadlocking."""
    engine = Engine(str(tmp_path / "e.db"), execute_init=["CREATE TABLE t (k)"])
    try:

        def unit(conn: sqlite3.Connection) -> int:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(engine.call(unit)), daemon=True)
        thread.start()
        thread.join(20)
        assert not thread.is_alive(), "the engine thread deadlocked in its own fork"
        assert result == [0]
    finally:
        engine.close()
