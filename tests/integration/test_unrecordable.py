"""Outcomes the storage refuses for good are not retried forever.

* A result SQLite cannot store (SQLITE_TOOBIG, here with the engine's
  length limit lowered so a real value exceeds it): the completion was
  retried with backoff forever, and the other completions written in the
  same statement waited behind it. Now the batch is split, the others
  commit, and the refused one counts as a failed attempt (its handler's
  retry policy decides what follows).
* A worker whose database file was deleted under it: every claim and
  heartbeat failed with DatabaseReplacedError and the worker retried every
  5 s forever, looking alive. Now it stops, as it does on a closed queue.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest
from support.wait import wait_until

from task_queue import HandlerRegistry, TaskQueue, TaskStatus, Worker

LIMIT_LENGTH: int = getattr(sqlite3, "SQLITE_LIMIT_LENGTH", 0)


def _limit(conn: sqlite3.Connection, category: int, value: int) -> None:
    conn.setlimit(category, value)  # type: ignore[attr-defined]


@pytest.mark.skipif(
    not hasattr(sqlite3.Connection, "setlimit"), reason="Connection.setlimit needs Python 3.11"
)
def test_a_result_too_large_to_store_fails_its_attempt_and_the_rest_complete(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    registry = HandlerRegistry()

    @registry.handler("make", max_retries=0)
    def make(payload: dict[str, int]) -> str:
        release.wait(10)  # hold them all, so their outcomes share one batch
        return "x" * payload["size"]

    with TaskQueue(str(tmp_path / "q.db")) as q:
        q.storage._engine.call(_limit, LIMIT_LENGTH, 4096, readonly=True)  # type: ignore[attr-defined]
        big = q.enqueue("big", "make", {"size": 8000})
        small = [q.enqueue(f"small-{i}", "make", {"size": 10}) for i in range(5)]
        with Worker(q, registry, concurrency=6, poll_interval=0.01):
            wait_until(lambda: q.get_queue_stats()["running"] == 6)
            release.set()
            wait_until(
                lambda: q.get_queue_stats()["completed"] == 5 and q.get_queue_stats()["failed"] == 1
            )
        task = q.get_task(big)
        assert task is not None and task.status is TaskStatus.FAILED
        assert task.error_message is not None
        assert "larger than SQLite allows" in task.error_message
        (attempt,) = q.attempts(big)
        assert attempt.error_class == "task_queue.errors.StatementTooLargeError"
        assert all(q.result(i) == "x" * 10 for i in small)


def test_a_worker_whose_file_was_deleted_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()
    registry.register("t", lambda payload: None)
    with TaskQueue(str(tmp_path / "queue.db")) as q:
        first = q.enqueue("before", "t")
        worker = Worker(q, registry, concurrency=1, poll_interval=0.01).start()
        try:
            wait_until(lambda: q.get_task(first).status is TaskStatus.COMPLETED)  # type: ignore[union-attr]
            with caplog.at_level(logging.ERROR, logger="task_queue"):
                for name in ("queue.db", "queue.db-wal", "queue.db-shm"):
                    (tmp_path / name).unlink(missing_ok=True)
                assert worker.join(timeout=15), "the worker kept retrying on a deleted file"
            assert any("was deleted" in r.getMessage() for r in caplog.records)
        finally:
            worker.stop(0)
