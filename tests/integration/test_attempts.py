"""The history of a task's attempts (failed, lost, cancelled, then the last)."""

from __future__ import annotations

from typing import Any

from support import rawdb

from task_queue import RetryPolicy, TaskQueue, Worker, current_task


def test_every_attempt_is_in_the_history(db_path: str) -> None:
    def flaky(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        if ctx.task.attempts < 3:
            raise KeyError(f"attempt {ctx.task.attempts}")
        return "ok"

    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0)) as queue:
        task_id = queue.enqueue("flaky", "flaky", max_retries=5)
        with Worker(queue, {"flaky": flaky}, concurrency=1, name="hist"):
            assert queue.result(task_id, timeout=10) == "ok"
        history = queue.attempts(task_id)
    assert [a.attempt for a in history] == [1, 2, 3]
    assert [a.outcome for a in history] == ["retried", "retried", "completed"]
    assert history[0].error_class == "builtins.KeyError"
    assert history[0].error == "KeyError: 'attempt 1'"
    assert "Traceback" in (history[0].traceback or "")
    assert all(a.worker_id and a.worker_id.endswith(":hist") for a in history)
    assert all(a.started_at is not None and a.finished_at is not None for a in history)
    with TaskQueue(db_path) as queue:
        queue_task = queue.get_task(task_id)
    assert queue_task is not None
    assert queue_task.first_started_at == history[0].started_at
    assert queue_task.started_at == history[-1].started_at


def test_lost_and_cancelled_attempts_are_recorded(clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    task_id = q.enqueue("a", "t", max_retries=3)
    q.claim(1, remember=False)  # lost: nobody renews it
    q.clock.advance(q.lease_seconds + 1)  # type: ignore[attr-defined]
    assert q.rescue_expired() == 1
    running = q.claim(1, remember=False)[0]
    assert running.id == task_id
    assert [a.outcome for a in q.attempts(task_id)] == ["lost", "running"]
    assert q.cancel_task(task_id)
    history = q.attempts(task_id)
    assert [(a.attempt, a.outcome) for a in history] == [(1, "lost"), (2, "cancelled")]
    assert "claim lost" in (history[0].error or "")
    assert q.attempts(task_id)[-1].finished_at == q.clock.time()


def test_a_purge_takes_the_history_along(clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    task_id = q.enqueue("a", "t", max_retries=0)
    task = q.dequeue()
    assert task is not None and q.fail_task(task, "boom")
    assert len(q.attempts(task_id)) == 1
    q.clock.advance(1)  # type: ignore[attr-defined]
    assert q.purge(0, statuses=["failed"]) == 1
    with rawdb.connect(q.path) as conn:
        assert conn.rows("SELECT count(*) FROM task_attempts") == [(0,)]
