"""Retries: exponential backoff with full jitter, the dead-letter set, rescue of crashes."""

from __future__ import annotations

import random

import pytest

from task_queue import ManualClock, RetryPolicy, TaskQueue, TaskStatus

# -- RetryPolicy ------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0, random=lambda: 1.0)
    assert [policy.delay(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.delay(10_000) == 30.0  # no overflow for huge retry counts


def test_backoff_is_full_jitter() -> None:
    rng = random.Random(3)
    policy = RetryPolicy(base=2.0, cap=100.0, random=rng.random)
    for retry in range(6):
        ceiling = min(100.0, 2.0 * 2**retry)
        delays = [policy.delay(retry) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Spread over the whole range, not clustered at the ceiling.
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9
    assert RetryPolicy(random=lambda: 0.0).delay(5) == 0.0


def test_retry_policy_rejects_negative_values() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(base=-1)
    with pytest.raises(ValueError):
        RetryPolicy(cap=-1)


# -- fail_task through the queue ----------------------------------------------------------------


def test_each_retry_waits_its_backoff(clock: ManualClock, db_path: str) -> None:
    policy = RetryPolicy(base=1.0, cap=5.0, random=lambda: 1.0)
    with TaskQueue(db_path, clock=clock, retry_policy=policy) as q:
        task_id = q.enqueue("flaky", "t", max_retries=4)
        waits = []
        while True:
            task = q.dequeue()
            if task is None:
                pending = q.get_task(task_id)
                assert pending is not None and pending.status is TaskStatus.PENDING
                waits.append(pending.run_at - clock.time())
                clock.advance(pending.run_at - clock.time())
                continue
            assert q.fail_task(task, f"attempt {task.attempts}")
            if task.attempts == 5:
                break
        final = q.get_task(task_id)
        assert final is not None
        assert final.status is TaskStatus.FAILED
        assert (final.attempts, final.retry_count) == (5, 4)
        assert final.error_message == "attempt 5"
        assert waits == [1.0, 2.0, 4.0, 5.0]


def test_retry_task_gives_a_fresh_budget(clock: ManualClock, db_path: str) -> None:
    with TaskQueue(db_path, clock=clock, retry_policy=RetryPolicy(base=0)) as q:
        task_id = q.enqueue("a", "t", max_retries=1)
        for _ in range(2):
            task = q.dequeue()
            assert task is not None
            q.fail_task(task, "x")
        assert q.get_task(task_id).status is TaskStatus.FAILED  # type: ignore[union-attr]
        assert q.retry_task(task_id)
        for expected in (TaskStatus.PENDING, TaskStatus.FAILED):
            task = q.dequeue()
            assert task is not None
            q.fail_task(task, "x")
            assert q.get_task(task_id).status is expected  # type: ignore[union-attr]


def test_a_task_that_kills_its_worker_every_time_ends_failed(
    clock: ManualClock, db_path: str
) -> None:
    # The worker dies mid-task (it never completes, fails or renews): each
    # lost attempt counts, so the task cannot loop forever.
    with TaskQueue(db_path, clock=clock, lease_seconds=10) as q:
        task_id = q.enqueue("poison", "t", max_retries=2)
        claims = 0
        for _ in range(10):
            task = q.dequeue(worker_id=f"victim-{claims}")
            if task is None:
                break
            claims += 1
            clock.advance(11)  # the lease runs out; the next dequeue() rescues
        assert claims == 3
        final = q.get_task(task_id)
        assert final is not None
        assert final.status is TaskStatus.FAILED
        assert (final.attempts, final.retry_count) == (3, 2)
        assert final.error_message is not None and "victim-2" in final.error_message
        assert final.completed_at == clock.time()
        assert q.get_queue_stats()["running"] == 0


def test_rescue_leaves_live_leases_alone(clock: ManualClock, db_path: str) -> None:
    with TaskQueue(db_path, clock=clock, lease_seconds=10) as q:
        q.enqueue("a", "t")
        q.enqueue("b", "t")
        first = q.dequeue()
        clock.advance(6)
        second = q.dequeue()
        assert first is not None and second is not None
        clock.advance(5)  # first's lease expired, second's has 5 s left
        assert q.rescue_expired() == 1
        assert q.get_task(first.id).status is TaskStatus.PENDING  # type: ignore[union-attr]
        assert q.get_task(second.id).status is TaskStatus.RUNNING  # type: ignore[union-attr]
        assert q.complete_task(second, "ok") is True
