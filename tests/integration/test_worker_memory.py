"""Regression: a Worker keeps nothing per processed task in its TaskQueue
(claim tokens were remembered for every task a Worker ever claimed)."""

from __future__ import annotations

from support import wait_until

from task_queue import HandlerRegistry, TaskQueue, Worker


def test_worker_claims_leave_no_tokens_behind(queue: TaskQueue) -> None:
    registry = HandlerRegistry()
    registry["noop"] = lambda payload: None
    queue.enqueue_many([{"name": f"t{i}", "task_type": "noop"} for i in range(300)])
    with Worker(queue, registry, concurrency=2):
        wait_until(lambda: queue.get_queue_stats()["completed"] == 300)
    assert queue.held() == []


def test_manual_claims_are_remembered_until_finished(queue: TaskQueue) -> None:
    queue.enqueue("a", "t")
    task = queue.dequeue()
    assert task is not None
    assert queue.held() == [task]
    assert queue.complete_task(task.id, "ok")  # the seed API's call shape: by id
    assert queue.held() == []
