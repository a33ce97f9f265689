"""What a new user hit, each pinned by a regression test (issue 7)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from support import wait_until

from task_queue import RetryPolicy, TaskQueue, TaskStatus, Worker


def test_a_hand_driven_claim_outlasting_its_lease_is_not_run_twice(db_path: str) -> None:
    """The seed's own loop: dequeue(), work longer than lease_seconds,
    complete_task(task['id']). Nothing renewed such a claim outside a Worker:
    another process's dequeue() rescued it, the task ran twice and ended
    failed (lease 0.5 s, a 1.2 s task). The TaskQueue now renews what it
    holds."""
    runs: list[int] = []
    with (
        TaskQueue(db_path, lease_seconds=0.5) as mine,
        TaskQueue(db_path, lease_seconds=0.5, rescue_interval=0.01) as other,
    ):
        task_id = mine.enqueue("slow", "slow", max_retries=0)
        task = mine.dequeue()
        assert task is not None
        stop = threading.Event()

        def other_worker() -> None:
            # Another hand-driven worker, polling and rescuing all the while.
            while not stop.is_set():
                stolen = other.dequeue()
                if stolen is not None:
                    runs.append(stolen.id)
                    other.complete_task(stolen["id"], "stolen")
                time.sleep(0.01)

        thief = threading.Thread(target=other_worker)
        thief.start()
        try:
            runs.append(task.id)
            deadline = time.monotonic() + 1.2  # the work: longer than the lease
            while time.monotonic() < deadline:
                time.sleep(0.02)
            assert mine.complete_task(task["id"], {"done": True}) is True
        finally:
            stop.set()
            thief.join()
        done = mine.get_task(task_id)
        assert done is not None
        assert done.status == TaskStatus.COMPLETED and done.result == {"done": True}
        assert runs == [task_id]
        assert mine.held() == []


def test_renew_extends_a_claim_the_caller_holds(clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    q.enqueue("a", "t")
    task = q.claim(1, remember=False)[0]
    assert task.lease_expires_at == q.clock.time() + q.lease_seconds
    q.clock.advance(10)  # type: ignore[attr-defined]
    assert q.renew(task) == {task.claim}
    renewed = q.get_task(task.id)
    assert renewed is not None and renewed.lease_expires_at == q.clock.time() + q.lease_seconds
    # A claim no longer held is not renewed.
    assert q.cancel_task(task.id)
    assert q.renew([task]) == set()


def test_worker_with_a_list_of_handlers_is_a_clear_type_error(queue: TaskQueue) -> None:
    def fn(payload: Any) -> None: ...

    with pytest.raises(TypeError, match="HandlerRegistry or a mapping of task type to function"):
        Worker(queue, [fn])  # type: ignore[arg-type]


def test_failure_log_says_whether_it_will_be_retried(
    queue: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """The failure line was the same for a retried and a final failure."""

    def boom(payload: Any) -> None:
        raise ValueError("boom")

    policy_queue = TaskQueue(queue.path, retry_policy=RetryPolicy(base=0.0))
    try:
        task_id = policy_queue.enqueue("flaky", "boom", max_retries=1)
        with (
            caplog.at_level(logging.WARNING, logger="task_queue"),
            Worker(policy_queue, {"boom": boom}, concurrency=1),
        ):
            wait_until(lambda: policy_queue.get_task(task_id).status == TaskStatus.FAILED)  # type: ignore[union-attr]
        lines = [r.getMessage() for r in caplog.records if "failed after" in r.getMessage()]
        assert len(lines) == 2, lines
        assert "retrying in 0.0s (attempt 2 of 2)" in lines[0]
        assert "failed for good after 2 attempt(s)" in lines[1]
    finally:
        policy_queue.close()
