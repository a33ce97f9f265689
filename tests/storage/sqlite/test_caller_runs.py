"""Caller runs: an uncontended single-task enqueue() runs its own INSERT.

A round trip through the engine thread costs several times the statement
(measured ~84 µs against ~8 µs), so a caller that finds the engine thread
idle and its queue empty runs its one autocommit INSERT on the connection
itself (Engine.call_insert). Pinned here, on real files, threads and
processes: it commits before returning; under contention callers still
share the engine thread's group commits; another process holding the write
lock sends the call through the engine (busy retry) instead of failing it;
threads that may receive asynchronous exceptions hand off. The interrupt and
signal-handler storms are in tests/processes/test_signal_reentry.py, fork()
in tests/processes/test_fork_writes.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import wait_until

from task_queue import TaskQueue
from task_queue.interrupted import expect_async_exceptions
from task_queue.storage.sqlite.engine import Engine


def engine_of(q: TaskQueue) -> Engine:
    engine = q.storage._engine  # type: ignore[attr-defined]
    assert isinstance(engine, Engine)
    return engine


def stored_ids(db: Path) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM tasks ORDER BY id")]
    finally:
        conn.close()


def test_an_uncontended_enqueue_commits_in_the_callers_thread(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    with TaskQueue(str(db)) as q:
        engine = engine_of(q)
        before = (engine.inline_statements, engine.transactions)
        other = sqlite3.connect(db)
        try:
            for i in range(50):
                task_id = q.enqueue(f"task {i}", "t", {"i": i}, priority=3, queue_name="qq")
                # Committed when enqueue() returned: another connection sees it.
                row = other.execute(
                    "SELECT name, status, payload, priority, queue_name FROM tasks WHERE id = ?",
                    (task_id,),
                ).fetchone()
                assert row == (f"task {i}", "pending", f'{{"i":{i}}}', 3, "qq"), row
        finally:
            other.close()
        inline = engine.inline_statements - before[0]
        # The first write wakes the engine thread once (to schedule the idle
        # WAL checkpoint), so one call may go through it.
        assert inline >= 48, (inline, engine.transactions - before[1])
        task = q.get_task(task_id)
        assert task is not None and task.payload == {"i": 49} and task.created_at is not None
        assert q.get_queue_stats()["pending"] == 50


def test_other_units_still_go_through_the_engine_thread(tmp_path: Path) -> None:
    with TaskQueue(str(tmp_path / "q.db")) as q:
        engine = engine_of(q)
        wait_until(lambda: engine._sql_queue.empty() and not engine._serving)
        before = engine.inline_statements
        q.enqueue_many([{"name": "a", "task_type": "t"}, {"name": "b", "task_type": "t"}])
        first = q.enqueue("u", "t", unique_key="k")
        assert q.enqueue("u again", "t", unique_key="k") == first
        q.enqueue("child", "t", depends_on=[first])
        assert engine.inline_statements == before


def test_contended_enqueues_share_group_commits(tmp_path: Path) -> None:
    """8 threads enqueueing one task per call: far fewer commits than calls
    (the engine thread's batches), every acknowledged task stored."""
    db = tmp_path / "q.db"
    threads, per_thread = 8, 150
    acked: list[list[int]] = [[] for _ in range(threads)]
    with TaskQueue(str(db)) as q:
        engine = engine_of(q)
        before = (engine.inline_statements, engine.transactions)
        gate = threading.Barrier(threads)

        def loop(k: int) -> None:
            gate.wait()
            for i in range(per_thread):
                acked[k].append(q.enqueue(f"{k}/{i}", "t"))

        workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(120)
        assert not any(t.is_alive() for t in workers)
        inline = engine.inline_statements - before[0]
        transactions = engine.transactions - before[1]
    calls = threads * per_thread
    ids = [i for ids in acked for i in ids]
    assert len(set(ids)) == calls
    assert stored_ids(db) == sorted(ids)
    commits = inline + transactions
    # Each inline statement is its own commit; the engine's carry many.
    assert transactions > 0
    assert commits < calls / 2, (inline, transactions, calls)


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""


def test_a_write_lock_held_by_another_process_sends_the_call_through_the_engine(
    tmp_path: Path,
) -> None:
    """SQLITE_BUSY on the caller's own statement wrote nothing: the call
    goes to the engine thread, which waits the lock out (busy_timeout) and
    commits; the caller never sees "database is locked"."""
    db = tmp_path / "q.db"
    with TaskQueue(str(db), busy_timeout=20) as q:
        engine = engine_of(q)
        q.enqueue("first", "t")
        wait_until(lambda: engine._sql_queue.empty() and not engine._serving)
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert locker.stdout is not None and locker.stdin is not None
            assert locker.stdout.readline().strip() == "locked"
            result: list[object] = []
            done = threading.Event()

            def enqueue() -> None:
                result.append(q.enqueue("while locked", "t"))
                done.set()

            caller = threading.Thread(target=enqueue)
            inline, transactions = engine.inline_statements, engine.transactions
            caller.start()
            # The caller's own attempt failed (busy) and was queued: the
            # engine thread holds the unit, retrying the lock.
            wait_until(lambda: engine._serving, timeout=10)
            # The lock stays held: the call is still waiting, not failed.
            assert not done.wait(0.3) and result == []
            locker.stdin.write("\n")
            locker.stdin.flush()
            assert locker.stdout.readline().strip() == "released"
            caller.join(30)
            assert not caller.is_alive()
        finally:
            locker.kill()
            locker.wait(10)
        assert len(result) == 1 and isinstance(result[0], int), result
        assert engine.inline_statements == inline
        assert engine.transactions == transactions + 1
        task = q.get_task(result[0])
        assert task is not None and task.name == "while locked"
        assert q.get_queue_stats()["pending"] == 2


def test_threads_that_expect_asynchronous_exceptions_hand_off(tmp_path: Path) -> None:
    with TaskQueue(str(tmp_path / "q.db")) as q:
        engine = engine_of(q)
        wait_until(lambda: engine._sql_queue.empty() and not engine._serving)
        counts: list[tuple[int, int]] = []

        def executor_like() -> None:
            expect_async_exceptions()
            before = (engine.inline_statements, engine.transactions)
            for i in range(20):
                q.enqueue(f"from an executor {i}", "t")
            counts.append((engine.inline_statements - before[0], engine.transactions - before[1]))

        thread = threading.Thread(target=executor_like)
        thread.start()
        thread.join(30)
        assert counts == [(0, 20)]
        assert q.get_queue_stats()["pending"] == 20


def test_a_closed_queue_refuses_the_call(tmp_path: Path) -> None:
    from task_queue import QueueClosedError

    q = TaskQueue(str(tmp_path / "q.db"))
    engine = engine_of(q)
    q.close()
    with pytest.raises(QueueClosedError):
        q.enqueue("late", "t")
    with pytest.raises(QueueClosedError):
        engine.call_insert("SELECT 1", {}, int, lambda conn: None)
    assert not engine.alive
