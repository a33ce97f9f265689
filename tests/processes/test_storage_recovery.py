"""Workers under storage faults: back off, never blame the task, recover alone.

The fault here is the one every SQLite user meets: another connection
holding the write lock past our retry budget (DatabaseBusyError), made by a
plain ``sqlite3`` connection in ``BEGIN IMMEDIATE``, as another process would.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import check_invariants, wait_until

from task_queue import (
    DatabaseBusyError,
    NotAQueueDatabaseError,
    StorageError,
    TaskQueue,
    Worker,
)
from task_queue.storage.sqlite.engine import Engine


class Locker:
    """Holds the database's write lock from a plain connection."""

    def __init__(self, db_path: str) -> None:
        self.conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.conn.execute("ROLLBACK")
            self.conn.close()


def _warnings(caplog: pytest.LogCaptureFixture, since: float, until: float, text: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.levelno >= logging.WARNING and since <= r.created <= until and text in r.getMessage()
    )


@pytest.mark.slow
def test_worker_started_on_a_locked_database_backs_off_then_recovers(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: Worker.start() raised DatabaseBusyError when the first
    rescue met a busy database; a passing fault must not stop a worker from
    starting (only a read-only or foreign database does)."""
    caplog.set_level(logging.WARNING, logger="task_queue")
    q = TaskQueue(db_path, busy_timeout=0.05)
    ids = [q.enqueue(f"t{i}", "t", {"i": i}) for i in range(20)]
    ran: list[int] = []
    locker = Locker(db_path)
    worker = Worker(q, {"t": lambda p: ran.append(p["i"])}, concurrency=2, poll_interval=0.01)
    try:
        window_start = time.time()
        worker.start()  # does not raise
        wait_until(lambda: _warnings(caplog, window_start, time.time(), "storage error") >= 3)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # an observation window
            assert not ran
            time.sleep(0.05)
        window_end = time.time()
        errors = _warnings(caplog, window_start, window_end, "storage error")
        # Exponential backoff (50 ms doubling, 5 s cap): about 6 in 2.5 s;
        # a hot loop at the 50 ms busy budget would be 50 or more.
        assert 3 <= errors <= 15, errors
        assert q.get_queue_stats()["pending"] == 20
        locker.release()
        wait_until(lambda: q.get_queue_stats()["completed"] == 20, timeout=30)
    finally:
        locker.release()
        worker.stop(10)
        q.close()
    assert sorted(ran) == list(range(20))
    rows = check_invariants(db_path, ids)
    assert all(r["retry_count"] == 0 and r["attempts"] == 1 for r in rows.values())


def test_worker_outcomes_wait_out_a_busy_database_without_failing_tasks(db_path: str) -> None:
    q = TaskQueue(db_path, busy_timeout=0.05)
    ids = [q.enqueue(f"t{i}", "t", {"i": i}) for i in range(3)]
    gate = threading.Event()
    entered: list[int] = []

    def handler(payload: dict[str, int]) -> int:
        entered.append(payload["i"])
        assert gate.wait(30)
        return payload["i"] * 10

    worker = Worker(q, {"t": handler}, concurrency=3, prefetch=0)
    worker.start()
    locker: Locker | None = None
    try:
        wait_until(lambda: len(entered) == 3)
        locker = Locker(db_path)
        gate.set()  # the handlers finish while the lock is held
        # Their outcomes cannot be written; the tasks stay running.
        wait_until(lambda: worker.processed == 3)
        assert q.get_queue_stats()["running"] == 3
        locker.release()
        wait_until(lambda: q.get_queue_stats()["completed"] == 3, timeout=30)
    finally:
        gate.set()
        if locker is not None:
            locker.release()
        worker.stop(10)
        q.close()
    rows = check_invariants(db_path, ids)
    assert {r["result"] for r in rows.values()} == {"0", "10", "20"}
    assert all(r["retry_count"] == 0 for r in rows.values())


def test_taskqueue_works_again_after_each_fault_clears(db_path: str) -> None:
    q = TaskQueue(db_path, busy_timeout=0.05)
    try:
        acked = [q.enqueue("a", "t")]
        for _ in range(3):
            locker = Locker(db_path)
            with pytest.raises(DatabaseBusyError):
                q.enqueue("b", "t")
            locker.release()
            acked.append(q.enqueue("c", "t"))
        assert q.get_queue_stats()["pending"] == len(acked)
    finally:
        q.close()
    check_invariants(db_path, acked, statuses=("pending",))


def _corrupt_the_tasks_table(db_path: str) -> None:
    conn = sqlite3.connect(db_path)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tasks'").fetchone()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    with open(db_path, "r+b") as handle:
        handle.seek((int(root[0]) - 1) * int(page_size))
        handle.write(bytes(range(256)) * (int(page_size) // 256))


def test_a_corrupt_queue_database_gives_typed_errors_not_sqlite3_ones(db_path: str) -> None:
    q = TaskQueue(db_path)
    for i in range(300):
        q.enqueue(f"t{i}", "t", {"pad": "x" * 200})
    q.close()  # checkpointed: the pages are in the main file
    _corrupt_the_tasks_table(db_path)
    try:
        q = TaskQueue(db_path)
    except NotAQueueDatabaseError:
        return  # refused at open: as good
    try:
        for call in (
            lambda: q.get_task(1),
            lambda: q.enqueue("x", "t"),
            lambda: q.dequeue(),
            lambda: q.get_tasks_by_status("pending"),
        ):
            with pytest.raises(StorageError) as info:
                call()
            assert isinstance(info.value, NotAQueueDatabaseError), info.value
            assert "malformed" in str(info.value) or "not a database" in str(info.value)
    finally:
        q.close()


def test_reads_sharing_a_batch_with_a_blocked_write_still_succeed(db_path: str) -> None:
    """Regression: the engine runs queued units in one transaction; when its
    BEGIN IMMEDIATE met a lock held elsewhere past the budget, the *reads* in
    that batch failed with DatabaseBusyError too, although WAL readers need
    no lock (seen as get_queue_stats() failing while a Worker retried)."""
    TaskQueue(db_path).close()
    engine = Engine(db_path, busy_timeout=0.1)
    gate = threading.Event()
    try:
        # Occupy the engine thread so the next two units form one batch.
        blocker = engine.submit(lambda conn: gate.wait(10), readonly=True)
        locker = Locker(db_path)
        try:
            write = engine.submit(lambda conn: conn.execute("DELETE FROM tasks").rowcount)
            read = engine.submit(
                lambda conn: conn.execute("SELECT count(*) FROM tasks").fetchone()[0],
                readonly=True,
            )
            gate.set()
            assert blocker.wait(10) is True
            with pytest.raises(DatabaseBusyError):
                write.wait(10)
            assert read.wait(10) == 0
        finally:
            locker.release()
    finally:
        gate.set()
        engine.close()


_OPENER = """
import os, sys, time
from task_queue import TaskQueue
db, go = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 30
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.001)
with TaskQueue(db) as q:
    print(q.enqueue("opened by " + str(os.getpid()), "t"))
"""


@pytest.mark.parametrize("round_", range(3))
def test_processes_creating_the_same_new_queue_at_once_all_succeed(
    tmp_path: Path, round_: int
) -> None:
    """Creating a queue switches the file to WAL under an exclusive lock;
    a process opening it at that moment must wait, not call it foreign."""
    db = str(tmp_path / f"new-{round_}.db")
    go = tmp_path / f"go-{round_}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, db, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    ids = [int(out) for out, _ in outputs]
    check_invariants(db, ids, statuses=("pending",), procs=procs)
    assert len(set(ids)) == 4
