"""A Worker whose dispatcher stalls: found by the soak (benchmarks/soak.py).

* While another process held the database's write lock (it was frozen by
  SIGSTOP mid-transaction), a worker's dispatcher waited in a storage call
  and so enforced no timeouts: a handler looping in Python ran 3 s past its
  0.3 s timeout. Timeouts must not depend on the database answering.
* After a frozen worker process was continued, its executors started the
  tasks it had prefetched before the freeze although their leases had run
  out and other workers had already run them: the work was done twice (the
  stale completion was fenced out, the side effects were not). A worker must
  not start a task whose lease it knows has expired.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest
from support import wait_until

from task_queue import TaskQueue, TaskStatus, TaskTimeout, Worker, current_task


@pytest.mark.sqlite_only("holds the SQLite write lock")
def test_timeout_fires_while_the_database_is_locked_by_another_process(db_path: str) -> None:
    queue = TaskQueue(db_path, busy_timeout=30)
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def spin(payload: Any) -> None:
        started.set()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 8.0:  # Python code: interruptible
                time.sleep(0.01)
        except TaskTimeout:
            outcome["interrupted_after"] = time.monotonic() - t0
            raise
        outcome["interrupted_after"] = None

    task_id = queue.enqueue("spin", "spin", timeout=1.0, max_retries=0)
    # Frequent heartbeats: the dispatcher is soon waiting for the lock.
    worker = Worker(queue, {"spin": spin}, concurrency=1, heartbeat_interval=0.05).start()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert started.wait(10)
        blocker.execute("BEGIN IMMEDIATE")  # another process's write transaction
        try:
            wait_until(lambda: "interrupted_after" in outcome, timeout=7.0)
        finally:
            blocker.execute("ROLLBACK")
        assert outcome["interrupted_after"] is not None, "the timeout never fired"
        assert outcome["interrupted_after"] < 4.0
        wait_until(lambda: queue.get_task(task_id).status != TaskStatus.RUNNING)  # type: ignore[union-attr]
    finally:
        blocker.close()
        worker.stop(5)
        queue.close()


def test_a_prefetched_task_whose_lease_ran_out_is_not_started(db_path: str) -> None:
    queue = TaskQueue(db_path, lease_seconds=0.5)
    other = TaskQueue(db_path, lease_seconds=30)
    gate = threading.Event()
    ran: list[int] = []

    def block(payload: Any) -> None:
        gate.wait(30)

    def quick(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None
        ran.append(ctx.task.id)

    first = queue.enqueue("block", "block", priority="HIGH")
    quick_ids = [queue.enqueue(f"quick {i}", "quick") for i in range(3)]
    # No heartbeat within the test: the worker renews no lease, as when the
    # whole process is frozen (SIGSTOP).
    worker = Worker(
        queue, {"block": block, "quick": quick}, concurrency=1, prefetch=3,
        heartbeat_interval=3600,
    ).start()  # fmt: skip
    try:
        # The executor is busy with "block"; the three quick tasks wait in
        # the worker's buffer, claimed.
        wait_until(lambda: all(queue.get_task(i).status == "running" for i in quick_ids))  # type: ignore[union-attr]
        # Their leases run out; another worker rescues and runs them.
        wait_until(lambda: other.rescue_expired() > 0 or _all_pending(other, quick_ids))
        wait_until(lambda: _all_pending(other, quick_ids))
        for task in other.claim(3, task_types=["quick"]):
            assert other.complete_task(task, "done elsewhere")
        # The frozen worker continues: it must not run them again.
        gate.set()
        wait_until(lambda: queue.get_task(first).status != "running", timeout=10)  # type: ignore[union-attr]
        wait_until(lambda: worker.in_flight == 0, timeout=10)
        assert ran == []
        for task_id in quick_ids:
            task = queue.get_task(task_id)
            assert task is not None and task.result == "done elsewhere"
    finally:
        gate.set()
        worker.stop(5)
        other.close()
        queue.close()


def _all_pending(queue: TaskQueue, ids: list[int]) -> bool:
    return all(queue.get_task(i).status == "pending" for i in ids)  # type: ignore[union-attr]
