"""Dependencies between tasks: chains, fan-out, fan-in, failure and
cancellation propagation (issue 10, section 3)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from task_queue import (
    BatchRef,
    RetryPolicy,
    TaskNotFoundError,
    TaskQueue,
    TaskStatus,
    Worker,
    current_task,
)


def _status(queue: TaskQueue, task_id: int) -> TaskStatus:
    task = queue.get_task(task_id)
    assert task is not None
    return task.status


def test_a_dependent_waits_until_its_parent_completes(queue: TaskQueue) -> None:
    parent = queue.enqueue("extract", "t")
    child = queue.enqueue("load", "t", depends_on=[parent])
    task = queue.get_task(child)
    assert task is not None
    assert task.status == TaskStatus.WAITING and task.depends_on == (parent,)
    assert task.waiting_on == 1
    stats = queue.get_queue_stats()
    assert stats["waiting"] == 1 and stats["pending"] == 1
    claimed = queue.dequeue()
    assert claimed is not None and claimed.id == parent
    assert queue.dequeue() is None  # the child is not due while its parent runs
    assert queue.complete_task(claimed, "rows")
    assert _status(queue, child) == TaskStatus.PENDING
    assert queue.dequeue().id == child  # type: ignore[union-attr]


def test_a_chain_runs_in_order_and_reads_its_parents_results(queue: TaskQueue) -> None:
    order: list[str] = []

    def step(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        order.append(payload)
        parents = ctx.parents()
        return [payload, *[p.result for p in parents]]

    ids = queue.enqueue_many(
        [
            {"name": "a", "task_type": "step", "payload": "a"},
            {"name": "b", "task_type": "step", "payload": "b", "depends_on": [BatchRef(0)]},
            {"name": "c", "task_type": "step", "payload": "c", "depends_on": [BatchRef(1)]},
        ]
    )
    with Worker(queue, {"step": step}, concurrency=3):
        assert queue.result(ids[2], timeout=10) == ["c", ["b", ["a"]]]
    assert order == ["a", "b", "c"]


def test_the_next_step_of_a_chain_starts_without_waiting_for_a_poll(queue: TaskQueue) -> None:
    # A completion that released a dependent did not wake the Worker: each
    # step of a chain waited for the dispatcher's next look (about 1 s a
    # hop, 0.3 s with this poll interval): 40 steps took 12 s or more. They
    # take milliseconds each.
    ids = queue.enqueue_many(
        [{"name": "s0", "task_type": "step"}]
        + [
            {"name": f"s{i}", "task_type": "step", "depends_on": [BatchRef(i - 1)]}
            for i in range(1, 40)
        ]
    )
    with Worker(queue, {"step": lambda payload: None}, concurrency=2, poll_interval=30):
        queue.wait(ids[-1], timeout=6)
    assert all(t.status == "completed" for t in queue.get_tasks(ids))


def test_fan_out_and_fan_in(queue: TaskQueue) -> None:
    ran: list[int] = []
    lock = threading.Lock()

    def work(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        with lock:
            ran.append(ctx.task.id)
        if payload == "join":
            return sorted(p.result for p in ctx.parents())
        return payload

    source = queue.enqueue("source", "work", 0)
    middle = queue.enqueue_many(
        [
            {"name": f"m{i}", "task_type": "work", "payload": i, "depends_on": [source]}
            for i in range(1, 21)
        ]
    )
    join = queue.enqueue("join", "work", "join", depends_on=middle)
    with Worker(queue, {"work": work}, concurrency=4):
        assert queue.result(join, timeout=30) == list(range(1, 21))
    assert ran[0] == source and ran[-1] == join
    assert sorted(ran[1:-1]) == middle


def test_a_parent_that_fails_for_good_cancels_its_dependents_transitively(db_path: str) -> None:
    def boom(payload: Any) -> None:
        raise RuntimeError("broken")

    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0)) as queue:
        parent = queue.enqueue("p", "boom", max_retries=1)
        child = queue.enqueue("c", "ok", depends_on=[parent])
        grandchild = queue.enqueue("g", "ok", depends_on=[child])
        other_parent = queue.enqueue("other", "never")
        both = queue.enqueue("both", "ok", depends_on=[other_parent, child])
        with Worker(queue, {"boom": boom, "ok": lambda p: None}, concurrency=1):
            queue.wait(grandchild, timeout=10)
        assert _status(queue, parent) == TaskStatus.FAILED
        for task_id in (child, grandchild, both):
            task = queue.get_task(task_id)
            assert task is not None and task.status == TaskStatus.CANCELLED
            assert task.completed_at is not None
        assert queue.get_task(child).error_message == (  # type: ignore[union-attr]
            f"cancelled: task {parent}, which it depends on, was failed"
        )
        assert queue.get_task(grandchild).error_message == (  # type: ignore[union-attr]
            f"cancelled: task {child}, which it depends on, was cancelled"
        )
        assert _status(queue, other_parent) == TaskStatus.PENDING


def test_cancelling_a_parent_cancels_what_waits_for_it(queue: TaskQueue) -> None:
    parent = queue.enqueue("p", "t")
    child = queue.enqueue("c", "t", depends_on=[parent])
    assert queue.cancel_task(parent)
    assert _status(queue, child) == TaskStatus.CANCELLED
    # Depending on a task that already failed or was cancelled: cancelled at once.
    late = queue.enqueue("late", "t", depends_on=[parent])
    task = queue.get_task(late)
    assert task is not None and task.status == TaskStatus.CANCELLED
    assert "was cancelled" in (task.error_message or "")


def test_depending_on_a_completed_task_is_due_at_once(queue: TaskQueue) -> None:
    parent = queue.enqueue("p", "t")
    claimed = queue.dequeue()
    assert claimed is not None and queue.complete_task(claimed, 1)
    child = queue.enqueue("c", "t", depends_on=[parent])
    assert _status(queue, child) == TaskStatus.PENDING


def test_depending_on_an_unknown_task_writes_nothing(queue: TaskQueue) -> None:
    parent = queue.enqueue("p", "t")
    with pytest.raises(TaskNotFoundError, match="999"):
        queue.enqueue("c", "t", depends_on=[parent, 999])
    with pytest.raises(TaskNotFoundError):
        queue.enqueue_many(
            [{"name": "x", "task_type": "t"}, {"name": "y", "task_type": "t", "depends_on": [999]}]
        )
    assert sum(queue.get_queue_stats().values()) == 1


@pytest.mark.parametrize(
    ("depends_on", "match"),
    [
        ([0], "ids"),
        (["1"], "ids"),
        ([True], "ids"),
        ("12", "list of task ids"),
        ([BatchRef(0)], "BatchRef"),
    ],
)
def test_bad_dependencies_are_refused(queue: TaskQueue, depends_on: Any, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        queue.enqueue("c", "t", depends_on=depends_on)
    assert sum(queue.get_queue_stats().values()) == 0


def test_a_batch_may_refer_only_to_earlier_tasks(queue: TaskQueue) -> None:
    with pytest.raises(ValueError, match="task #0: depends_on may refer only to earlier"):
        queue.enqueue_many([{"name": "a", "task_type": "t", "depends_on": [BatchRef(0)]}])
    with pytest.raises(ValueError, match=r"task #1: .*earlier"):
        queue.enqueue_many(
            [
                {"name": "a", "task_type": "t"},
                {"name": "b", "task_type": "t", "depends_on": [BatchRef(2)]},
            ]
        )


def test_a_parent_rescued_after_a_crash_keeps_its_dependent_waiting(
    clocked_queue: TaskQueue,
) -> None:
    q = clocked_queue
    parent = q.enqueue("p", "t", max_retries=2)
    child = q.enqueue("c", "t", depends_on=[parent])
    lost = q.claim(1, remember=False)  # its worker "dies": nobody renews it
    assert lost and lost[0].id == parent
    q.clock.advance(q.lease_seconds + 1)  # type: ignore[attr-defined]
    assert q.rescue_expired() == 1
    assert _status(q, parent) == TaskStatus.PENDING
    assert _status(q, child) == TaskStatus.WAITING
    again = q.dequeue()
    assert again is not None and again.id == parent
    assert q.complete_task(again, "ok")
    assert _status(q, child) == TaskStatus.PENDING


def test_dependencies_work_across_processes(db_path: str, queue: TaskQueue, tmp_path) -> None:
    from support import procs

    parent = queue.enqueue("p", "count")
    child = queue.enqueue("c", "count", depends_on=[parent])
    out = str(tmp_path / "pool.log")
    proc = procs.start("pool", db=db_path, out=out, expect=2, concurrency=2)
    try:
        done = queue.wait(child, timeout=60)
        assert done.status == TaskStatus.COMPLETED
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first, second = queue.get_task(parent), queue.get_task(child)
    assert first is not None and second is not None
    assert first.completed_at is not None and second.started_at is not None
    assert second.started_at >= first.completed_at
