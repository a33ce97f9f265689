"""Disk full: a typed error, nothing lost or half-written, recovery once space is back.

The full disk is SQLite's own: ``PRAGMA max_page_count`` on the queue's
connection (``SqliteStorage.set_max_size``), so SQLite fails exactly as on a
full file system (SQLITE_FULL, the transaction rolled back) without filling
the machine's disk. The WAL file is not capped, so writes that fit in pages
already allocated still succeed; every write below is made to need new pages.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import check_invariants, wait_until

from task_queue import DiskFullError, TaskQueue, TaskStatus, Worker
from task_queue.storage.sqlite import SqliteStorage

BIG = "x" * 40_000  # needs overflow pages: cannot fit in pages already allocated


def storage_of(queue: TaskQueue) -> SqliteStorage:
    assert isinstance(queue.storage, SqliteStorage)
    return queue.storage


def snapshot(db_path: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db_path)
    try:
        return (
            conn.execute("SELECT * FROM tasks ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM sqlite_sequence").fetchall(),
        )
    finally:
        conn.close()


@pytest.fixture
def full_queue(db_path: str) -> Iterator[TaskQueue]:
    """A queue with some tasks, then no room to grow."""
    q = TaskQueue(db_path)
    for i in range(10):
        q.enqueue(f"before-{i}", "t", {"i": i})
    storage_of(q).set_max_size(0)
    yield q
    q.close()


def test_enqueue_on_a_full_disk_is_typed_and_writes_nothing(
    full_queue: TaskQueue, db_path: str
) -> None:
    before = snapshot(db_path)
    with pytest.raises(DiskFullError, match="full") as info:
        full_queue.enqueue("big", "t", {"blob": BIG})
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert snapshot(db_path) == before
    assert full_queue.get_queue_stats()["pending"] == 10  # reads still work

    # Space is back: the same TaskQueue carries on.
    storage_of(full_queue).set_max_size(None)
    task_id = full_queue.enqueue("big", "t", {"blob": BIG})
    task = full_queue.get_task(task_id)
    assert task is not None and task.payload == {"blob": BIG}
    check_invariants(db_path, [task_id], statuses=("pending",))


def test_enqueue_many_is_all_or_nothing_when_the_disk_fills_midway(db_path: str) -> None:
    q = TaskQueue(db_path)
    try:
        q.enqueue("seed", "t")
        size = storage_of(q).set_max_size(0)
        # Room for a few of the batch's tasks, not for all of them.
        storage_of(q).set_max_size(size + 6 * 4096)
        batch = [{"name": f"b{i}", "task_type": "t", "payload": "p" * 3000} for i in range(40)]
        before = snapshot(db_path)
        with pytest.raises(DiskFullError):
            q.enqueue_many(batch)
        assert snapshot(db_path) == before  # not even the ones that fitted
        # It really was midway: single tasks still fit.
        fitted = [q.enqueue("one", "t", "p" * 3000) for _ in range(2)]
        storage_of(q).set_max_size(None)
        ids = q.enqueue_many(batch)
        assert len(ids) == 40 and ids == sorted(ids) and ids[0] > max(fitted)
        check_invariants(db_path, ids, statuses=("pending",))
    finally:
        q.close()


def test_complete_and_fail_on_a_full_disk_keep_the_claim(
    full_queue: TaskQueue, db_path: str
) -> None:
    first = full_queue.dequeue()
    second = full_queue.dequeue()
    assert first is not None and second is not None
    before = snapshot(db_path)
    with pytest.raises(DiskFullError):
        full_queue.complete_task(first, {"result": BIG})
    with pytest.raises(DiskFullError):
        full_queue.fail_task(second, "E" * 40_000)
    assert snapshot(db_path) == before
    for task in (first, second):
        row = full_queue.get_task(task.id)
        assert row is not None and row.status == TaskStatus.RUNNING and row.retry_count == 0

    storage_of(full_queue).set_max_size(None)
    # The claims were not forgotten: the same calls succeed now.
    assert full_queue.complete_task(first.id, {"result": BIG})
    assert full_queue.fail_task(second.id, "E" * 40_000)
    done = full_queue.get_task(first.id)
    assert done is not None and done.result == {"result": BIG}
    retried = full_queue.get_task(second.id)
    assert retried is not None and retried.status == TaskStatus.PENDING
    assert retried.retry_count == 1 and retried.error_message == "E" * 40_000


def test_max_size_given_at_construction(db_path: str) -> None:
    TaskQueue(db_path).close()
    storage = SqliteStorage(db_path, max_size_bytes=0)
    q = TaskQueue(db_path, storage=storage)
    try:
        with pytest.raises(DiskFullError):
            q.enqueue("big", "t", BIG)
        assert storage.set_max_size(None) > 1 << 30
        q.enqueue("big", "t", BIG)
    finally:
        q.close()


def _storage_warnings(records: list[logging.LogRecord], since: float, until: float) -> int:
    return sum(
        1
        for r in records
        if r.levelno >= logging.WARNING
        and r.name.startswith("task_queue")
        and since <= r.created <= until
    )


@pytest.mark.slow
def test_worker_backs_off_while_its_own_writes_fail_and_recovers_alone(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The handlers succeed but recording their results fails (disk full):
    the worker keeps the tasks (leases renewed), retries the writes with a
    backoff instead of a hot loop, never marks a task failed for it, and
    finishes everything by itself once space is back."""
    caplog.set_level(logging.WARNING, logger="task_queue")
    q = TaskQueue(db_path, lease_seconds=1.0)
    n = 4
    ids = [q.enqueue(f"t{i}", "big", {"i": i}) for i in range(n)]
    gate = threading.Event()
    entered: list[int] = []

    def handler(payload: dict[str, int]) -> str:
        entered.append(payload["i"])
        assert gate.wait(30)
        return BIG + str(payload["i"])

    worker = Worker(q, {"big": handler}, concurrency=n, prefetch=0, poll_interval=0.02)
    worker.start()
    try:
        wait_until(lambda: len(entered) == n)
        storage_of(q).set_max_size(0)  # the disk fills while the handlers run
        gate.set()

        # Let the worker fail at recording for a while (longer than the
        # lease: heartbeats must keep the tasks ours).
        window_start = time.time()
        wait_until(lambda: _storage_warnings(caplog.records, window_start, time.time()) >= n)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # an observation window, checked throughout
            stats = q.get_queue_stats()
            assert stats["running"] == n and stats["failed"] == 0 and stats["completed"] == 0
            time.sleep(0.05)
        window_end = time.time()
        warnings = _storage_warnings(caplog.records, window_start, window_end)
        # Backoff: a few retries per task over 2.5 s, not thousands.
        assert n <= warnings <= 20 * n, warnings
        assert any("retrying" in r.getMessage() for r in caplog.records)

        storage_of(q).set_max_size(None)  # space is back
        wait_until(lambda: q.get_queue_stats()["completed"] == n, timeout=30)
    finally:
        gate.set()
        worker.stop(10)
        q.close()
    rows = check_invariants(db_path, ids)
    for i, task_id in enumerate(ids):
        row = rows[task_id]
        assert row["retry_count"] == 0 and row["attempts"] == 1
        assert row["error_message"] is None
        assert row["result"] == f'"{BIG}{i}"'


# -- a real full file system (tmpfs), where the machine allows mounting one -----------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, to be filled up: SQLite meets a real ENOSPC, at COMMIT too."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs Linux and root; covered by max_page_count above")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, timeout=30)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system; return the file to delete."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(chunk)
            except OSError:
                break
        while chunk:  # the last few bytes too
            chunk = chunk[: len(chunk) // 2]
            try:
                handle.write(chunk)
            except OSError:
                continue
    return filler


def test_a_really_full_file_system(tiny_fs: Path) -> None:
    db = str(tiny_fs / "queue.db")
    q = TaskQueue(db)
    acked = [q.enqueue(f"before-{i}", "t", "x" * 2000) for i in range(20)]
    filler = fill(tiny_fs)
    worker: Worker | None = None
    try:
        with pytest.raises(DiskFullError):
            for _ in range(2000):  # the WAL may still have room for a few
                acked.append(q.enqueue("while full", "t", "x" * 2000))
        pending = q.get_queue_stats()["pending"]
        assert pending == len(acked)
        with pytest.raises(DiskFullError):
            q.enqueue_many([{"name": "m", "task_type": "t", "payload": "y" * 2000}] * 20)
        assert q.get_queue_stats()["pending"] == pending

        # A worker started on the full disk waits; it does not fail tasks.
        ran: list[int] = []
        worker = Worker(q, {"t": lambda payload: ran.append(len(payload))}, concurrency=2)
        worker.start()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # an observation window
            assert q.get_queue_stats()["failed"] == 0
            time.sleep(0.05)

        filler.unlink()  # space is back; the same TaskQueue and Worker carry on
        acked += q.enqueue_many([{"name": "m", "task_type": "t", "payload": "y" * 2000}] * 20)
        wait_until(lambda: q.get_queue_stats()["completed"] == len(acked), timeout=60)
    finally:
        if worker is not None:
            worker.stop(10)
        q.close()
    rows = check_invariants(db, acked)
    assert all(r["retry_count"] == 0 for r in rows.values())


def test_reads_sharing_a_batch_whose_commit_fails_still_succeed(tiny_fs: Path) -> None:
    """Regression: when COMMIT failed (ENOSPC writing the WAL), the reads that
    shared the batch were failed with DiskFullError too (seen as
    get_queue_stats() raising while a Worker's writes failed)."""
    from task_queue.storage.sqlite.engine import Engine

    db = str(tiny_fs / "queue.db")
    TaskQueue(db).close()
    engine = Engine(db)
    # Read once first, so the -shm file exists: the failure is at COMMIT.
    assert engine.call(lambda conn: conn.execute("SELECT count(*) FROM tasks").fetchone()[0]) == 0
    filler = fill(tiny_fs)
    gate = threading.Event()
    try:
        blocker = engine.submit(lambda conn: gate.wait(10), readonly=True)
        rows = [("n", "t", "x" * 50_000, 2, "pending", 0, 0, 0)] * 20
        write = engine.submit(
            lambda conn: (
                conn.executemany(
                    "INSERT INTO tasks (name, task_type, payload, priority, status, created_at,"
                    " max_retries, run_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                ).rowcount
            )
        )
        read = engine.submit(
            lambda conn: conn.execute("SELECT count(*) FROM tasks").fetchone()[0], readonly=True
        )
        gate.set()
        assert blocker.wait(10) is True
        with pytest.raises(DiskFullError):
            write.wait(10)
        assert read.wait(10) == 0  # not the rolled-back rows, and no error
    finally:
        gate.set()
        filler.unlink()
        engine.close()


def test_opening_a_queue_on_a_full_disk_is_disk_full(tiny_fs: Path) -> None:
    """Regression: the -shm file cannot be created on a full file system;
    SQLite says SQLITE_IOERR_SHMSIZE ("disk I/O error"), which surfaced as a
    plain StorageError instead of DiskFullError."""
    db = str(tiny_fs / "queue.db")
    with TaskQueue(db) as q:
        task_id = q.enqueue("a", "t")
    filler = fill(tiny_fs)
    try:
        with pytest.raises(DiskFullError):
            TaskQueue(db)
    finally:
        filler.unlink()
    with TaskQueue(db) as q:
        assert q.get_task(task_id) is not None
