"""Named queues, pause and resume (issue 8, sections 1 and 2)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support import wait_until

from task_queue import Task, TaskPriority, TaskQueue, TaskStatus, Worker, current_task


def _status(queue: TaskQueue, task_id: int) -> str:
    task = queue.get_task(task_id)
    assert task is not None
    return task.status.value


def test_tasks_go_to_the_default_queue_unless_named(queue: TaskQueue) -> None:
    plain = queue.enqueue("a", "t")
    named = queue.enqueue("b", "t", queue_name="emails")
    many = queue.enqueue_many(
        [
            {"name": "c", "task_type": "t", "queue_name": "reports.daily"},
            {"name": "d", "task_type": "t"},
        ]
    )
    names = [queue.get_task(i).queue_name for i in [plain, named, *many]]  # type: ignore[union-attr]
    assert names == ["default", "emails", "reports.daily", "default"]


@pytest.mark.parametrize(
    "bad",
    ["", "x" * 101, "has space", "naïve", "slash/y", "tab\t", None, 7, ["a"]],
    ids=repr,
)
def test_a_bad_queue_name_is_refused_before_anything_is_written(
    queue: TaskQueue, bad: object
) -> None:
    with pytest.raises(ValueError, match="queue name"):
        queue.enqueue("a", "t", queue_name=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"task #1: .*queue name"):
        queue.enqueue_many(
            [{"name": "ok", "task_type": "t"}, {"name": "b", "task_type": "t", "queue_name": bad}]
        )
    assert queue.get_queue_stats()["pending"] == 0


def test_the_longest_and_oddest_good_names_work(queue: TaskQueue) -> None:
    name = "A-z_0.9:" + "q" * 92
    assert len(name) == 100
    task_id = queue.enqueue("a", "t", queue_name=name)
    assert queue.get_task(task_id).queue_name == name  # type: ignore[union-attr]
    assert queue.get_queue_stats(name)["pending"] == 1


def test_stats_per_queue_and_in_all(queue: TaskQueue) -> None:
    queue.enqueue_many(
        [{"name": f"e{i}", "task_type": "t", "queue_name": "emails"} for i in range(3)]
    )
    queue.enqueue("r", "t", queue_name="reports")
    queue.enqueue("d", "t")
    assert queue.get_queue_stats()["pending"] == 5
    assert queue.get_queue_stats("emails") == {
        "pending": 3, "running": 0, "completed": 0, "failed": 0, "cancelled": 0, "waiting": 0,
    }  # fmt: skip
    assert queue.get_queue_stats("nobody-uses-this")["pending"] == 0
    queue.pause("later")  # a queue nobody used yet
    stats = queue.queue_stats()
    assert list(stats) == ["default", "emails", "later", "reports"]
    assert stats["emails"]["pending"] == 3 and stats["later"]["pending"] == 0
    assert sum(s["pending"] for s in stats.values()) == queue.get_queue_stats()["pending"]


def test_a_worker_claims_only_from_the_queues_it_serves(queue: TaskQueue) -> None:
    ran: list[str] = []

    def work(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None
        ran.append(ctx.task.queue_name)

    ids = {name: queue.enqueue(name, "work", queue_name=name) for name in ("fast", "slow", "other")}
    with Worker(queue, {"work": work}, concurrency=2, queues=["fast", "slow"]):
        wait_until(lambda: sorted(ran) == ["fast", "slow"])
    assert _status(queue, ids["other"]) == "pending"


def test_two_workers_give_slow_work_its_own_pool(queue: TaskQueue) -> None:
    """One process, two Workers: a queue of slow tasks does not hold up the fast one."""
    gate = threading.Event()
    by_worker: dict[str, list[int]] = {"fast": [], "slow": []}

    def slow(payload: Any) -> None:
        gate.wait(30)

    def fast(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None
        by_worker[ctx.task.queue_name].append(ctx.task.id)

    handlers = {"slow": slow, "fast": fast}
    queue.enqueue_many(
        [{"name": f"s{i}", "task_type": "slow", "queue_name": "slow"} for i in range(4)]
    )
    fast_ids = queue.enqueue_many(
        [{"name": f"f{i}", "task_type": "fast", "queue_name": "fast"} for i in range(20)]
    )
    with (
        Worker(queue, handlers, concurrency=2, queues=["slow"]),
        Worker(queue, handlers, concurrency=2, queues=["fast"]),
    ):
        try:
            wait_until(lambda: sorted(by_worker["fast"]) == fast_ids)
            assert queue.get_queue_stats("slow")["running"] == 2  # still busy
        finally:
            gate.set()


def test_priorities_order_claims_across_the_queues_served(queue: TaskQueue) -> None:
    low = queue.enqueue("low", "t", priority=TaskPriority.LOW, queue_name="a")
    high = queue.enqueue("high", "t", priority=TaskPriority.HIGH, queue_name="b")
    normal = queue.enqueue("normal", "t", queue_name="a")
    critical = queue.enqueue("critical", "t", priority="critical", queue_name="c")  # not served
    order = [queue.dequeue(queues=["a", "b"]) for _ in range(3)]
    assert [t.id for t in order if t] == [high, normal, low]
    assert queue.dequeue(queues=["a", "b"]) is None
    assert queue.dequeue().id == critical  # type: ignore[union-attr]


def test_bad_queues_for_a_worker_or_a_claim_are_refused(queue: TaskQueue) -> None:
    with pytest.raises(TypeError, match="not a string"):
        Worker(queue, {}, queues="emails")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one queue"):
        Worker(queue, {}, queues=[])
    with pytest.raises(ValueError, match="queue name"):
        queue.dequeue(queues=["ok", "not ok"])


# -- pause and resume -------------------------------------------------------------


def test_a_paused_queue_takes_enqueues_but_nothing_is_claimed(queue: TaskQueue) -> None:
    queue.pause("emails")
    queue.pause("emails")  # pausing twice is harmless
    assert queue.paused() == frozenset({"emails"})
    held = queue.enqueue("mail", "t", queue_name="emails")
    free = queue.enqueue("other", "t")
    first = queue.dequeue()
    assert first is not None and first.id == free
    assert queue.dequeue() is None
    assert queue.dequeue(queues=["emails"]) is None
    assert queue.resume("emails") is True
    assert queue.resume("emails") is False  # not paused any more
    assert queue.paused() == frozenset()
    again = queue.dequeue()
    assert again is not None and again.id == held


def test_pausing_lets_running_tasks_finish_and_gives_back_prefetched_ones(
    queue: TaskQueue,
) -> None:
    gate = threading.Event()
    started: list[int] = []

    def work(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        started.append(ctx.task.id)
        gate.wait(30)
        return "done"

    ids = queue.enqueue_many(
        [{"name": f"t{i}", "task_type": "w", "queue_name": "q"} for i in range(6)]
    )
    with Worker(queue, {"w": work}, concurrency=1, prefetch=3) as worker:
        wait_until(lambda: len(started) == 1 and worker.in_flight == 4)
        queue.pause("q")
        # The prefetched three are given back; the running one finishes.
        wait_until(lambda: worker.in_flight == 1)
        assert queue.get_queue_stats("q")["pending"] == 5
        gate.set()
        wait_until(lambda: _status(queue, started[0]) == "completed")
        assert queue.get_queue_stats("q")["pending"] == 5 and started == [ids[0]]
        queue.resume("q")
        wait_until(lambda: queue.get_queue_stats("q")["completed"] == 6)


def test_a_draining_worker_does_not_read_the_paused_queues_after_each_completion(
    queue: TaskQueue,
) -> None:
    """Completions wake the Worker (they may release dependents), but only a
    pause here or another process's commit can pause a queue: reading the
    paused queues after every completion batch cost the drain a read
    transaction per batch (a regression once completions woke the Worker)."""
    reads: list[int] = []
    real_paused = queue.paused

    def paused() -> frozenset[str]:
        reads.append(1)
        return real_paused()

    queue.paused = paused  # type: ignore[method-assign]
    queue.enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(3000)])
    with Worker(queue, {"t": lambda payload: None}, concurrency=2, prefetch=20):
        wait_until(lambda: queue.get_queue_stats()["completed"] == 3000, timeout=60)
    # At most the first look at the change feed (it starts "changed").
    assert len(reads) <= 2, f"{len(reads)} reads of the paused queues"


def test_task_queue_name_is_part_of_the_task_record(queue: TaskQueue) -> None:
    task_id = queue.enqueue("a", "t", queue_name="x")
    task = queue.get_task(task_id)
    assert (
        isinstance(task, Task) and task["queue_name"] == "x" and task.to_dict()["queue_name"] == "x"
    )
    assert task.status == TaskStatus.PENDING
