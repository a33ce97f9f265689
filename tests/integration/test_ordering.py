"""Claim order (priority, then FIFO), scheduled tasks, and Task's mapping access."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from task_queue import ManualClock, RetryPolicy, Task, TaskPriority, TaskQueue, TaskStatus


def drain(q: TaskQueue) -> list[int]:
    """Claim and complete every due task; their ids in claim order."""
    ids = []
    while (task := q.dequeue()) is not None:
        ids.append(task.id)
        assert q.complete_task(task, None)
    return ids


# -- priority and FIFO -----------------------------------------------------------------------


def test_priority_values_match_seed_md() -> None:
    assert [(p.name, p.value) for p in TaskPriority] == [
        ("LOW", 1),
        ("NORMAL", 2),
        ("HIGH", 3),
        ("CRITICAL", 4),
    ]
    assert TaskPriority.CRITICAL > TaskPriority.HIGH > TaskPriority.NORMAL > TaskPriority.LOW
    assert [s.value for s in TaskStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "waiting",  # added by issue 10: waits for the tasks it depends on
    ]


def test_highest_priority_first_fifo_within_a_priority(queue: TaskQueue) -> None:
    rng = random.Random(7)
    priorities = [rng.choice(list(TaskPriority)) for _ in range(200)]
    ids = [queue.enqueue(f"t{i}", "t", priority=p) for i, p in enumerate(priorities)]
    expected = [
        i for _, i in sorted(zip(priorities, ids, strict=True), key=lambda x: (-x[0], x[1]))
    ]
    assert drain(queue) == expected


def test_the_whole_range_of_int_priorities_orders_claims(queue: TaskQueue) -> None:
    # Named levels (1..4) and plain ints from -100 to 100 in one order,
    # through both insert paths (one by one, and the bulk statement).
    rng = random.Random(11)
    priorities = [rng.randint(-100, 100) for _ in range(150)] + [-100, 100, 0, *TaskPriority]
    ids = [queue.enqueue(f"t{i}", "t", priority=p) for i, p in enumerate(priorities[:80])]
    ids += queue.enqueue_many(
        [{"name": f"m{i}", "task_type": "t", "priority": p} for i, p in enumerate(priorities[80:])]
    )
    expected = [
        i for _, i in sorted(zip(priorities, ids, strict=True), key=lambda x: (-x[0], x[1]))
    ]
    assert drain(queue) == expected
    stored = queue.get_tasks(ids)
    assert [t.priority for t in stored] == priorities
    assert stored[-1].priority is TaskPriority.CRITICAL  # named levels read back as such


def test_fifo_within_priority_holds_across_enqueue_many_and_enqueue(queue: TaskQueue) -> None:
    a = queue.enqueue_many([{"name": f"a{i}", "task_type": "t"} for i in range(5)])
    b = queue.enqueue("b", "t")
    c = queue.enqueue_many([{"name": f"c{i}", "task_type": "t"} for i in range(5)])
    assert drain(queue) == [*a, b, *c]


def test_a_later_higher_priority_task_overtakes(queue: TaskQueue) -> None:
    first = queue.enqueue("normal", "t")
    urgent = queue.enqueue("critical", "t", priority=TaskPriority.CRITICAL)
    assert drain(queue) == [urgent, first]


def test_a_retried_task_queues_by_its_new_due_time(clock: ManualClock, db_path: str) -> None:
    # A failed attempt is due again after its backoff; within its priority it
    # then runs after tasks that were due before it.
    policy = RetryPolicy(base=10, random=lambda: 1.0)
    with TaskQueue(db_path, clock=clock, retry_policy=policy) as q:
        flaky = q.enqueue("flaky", "t")
        task = q.dequeue()
        assert task is not None
        q.fail_task(task, "try later")
        clock.advance(5)
        waiting = q.enqueue("enqueued during the backoff", "t")
        clock.advance(10)
        assert drain(q) == [waiting, flaky]  # due at +5 vs the retry at +10


# -- scheduled tasks -------------------------------------------------------------------------


def test_naive_scheduled_at_is_local_time(clock: ManualClock, clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    now = clock.time()
    # The seed API: datetime.now() + timedelta(hours=1) -- naive local time.
    when = dt.datetime.fromtimestamp(now) + dt.timedelta(hours=1)
    task_id = q.enqueue(name="Daily cleanup", task_type="cleanup", scheduled_at=when)
    task = q.get_task(task_id)
    assert task is not None
    assert task.scheduled_at == pytest.approx(now + 3600)
    assert task.run_at == pytest.approx(now + 3600)
    clock.advance(3599)
    assert q.dequeue() is None
    clock.advance(1)
    assert q.dequeue().id == task_id  # type: ignore[union-attr]


@pytest.mark.parametrize("offset_hours", [0, 5, -8])
def test_aware_scheduled_at_in_any_zone(
    clock: ManualClock, clocked_queue: TaskQueue, offset_hours: int
) -> None:
    q = clocked_queue
    now = clock.time()
    zone = dt.timezone(dt.timedelta(hours=offset_hours))
    when = dt.datetime.fromtimestamp(now + 90, tz=zone)
    task_id = q.enqueue("aware", "t", scheduled_at=when)
    assert q.get_task(task_id).scheduled_at == pytest.approx(now + 90)  # type: ignore[union-attr]
    clock.advance(89.5)
    assert q.dequeue() is None
    clock.advance(0.5)
    assert q.dequeue().id == task_id  # type: ignore[union-attr]


def test_scheduled_at_as_epoch_seconds(clock: ManualClock, clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    task_id = q.enqueue("epoch", "t", scheduled_at=clock.time() + 10)
    assert q.dequeue() is None
    clock.advance(10)
    assert q.dequeue().id == task_id  # type: ignore[union-attr]


@pytest.mark.parametrize("delay", [30, 30.0, dt.timedelta(seconds=30)])
def test_delay(clock: ManualClock, clocked_queue: TaskQueue, delay: float | dt.timedelta) -> None:
    q = clocked_queue
    task_id = q.enqueue("later", "t", delay=delay)
    assert q.get_task(task_id).scheduled_at == clock.time() + 30  # type: ignore[union-attr]
    assert q.next_due() == clock.time() + 30
    clock.advance(29.99)
    assert q.dequeue() is None
    clock.advance(0.01)
    assert q.dequeue().id == task_id  # type: ignore[union-attr]


def test_past_schedule_is_due_at_once(clock: ManualClock, clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    task_id = q.enqueue("late", "t", scheduled_at=clock.time() - 3600)
    assert q.dequeue().id == task_id  # type: ignore[union-attr]


def test_a_due_task_is_not_held_up_by_a_higher_priority_future_one(
    clock: ManualClock, clocked_queue: TaskQueue
) -> None:
    q = clocked_queue
    q.enqueue("future", "t", priority=TaskPriority.CRITICAL, delay=60)
    due = q.enqueue("due now", "t", priority=TaskPriority.LOW)
    assert drain(q) == [due]
    clock.advance(60)
    assert len(drain(q)) == 1


def test_due_scheduled_tasks_order_by_priority_then_due_time(
    clock: ManualClock, clocked_queue: TaskQueue
) -> None:
    q = clocked_queue
    late = q.enqueue("due in 20", "t", delay=20)
    early = q.enqueue("due in 10", "t", delay=10)
    high = q.enqueue("high, due in 30", "t", priority=TaskPriority.HIGH, delay=30)
    clock.advance(30)
    assert drain(q) == [high, early, late]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"scheduled_at": 1.0, "delay": 1.0}, ValueError),
        ({"delay": -1}, ValueError),
        ({"delay": float("nan")}, ValueError),
        ({"delay": "soon"}, TypeError),
        ({"scheduled_at": "tomorrow"}, TypeError),
        ({"scheduled_at": float("inf")}, ValueError),
    ],
)
def test_bad_schedules_are_refused(
    queue: TaskQueue, kwargs: dict[str, object], error: type
) -> None:
    with pytest.raises(error):
        queue.enqueue("x", "t", **kwargs)  # type: ignore[arg-type]
    assert queue.get_queue_stats()["pending"] == 0


# -- Task: dataclass and mapping -----------------------------------------------------------------


FIELDS = (
    "id",
    "name",
    "task_type",
    "payload",
    "priority",
    "status",
    "worker_id",
    "created_at",
    "scheduled_at",
    "started_at",
    "completed_at",
    "max_retries",
    "retry_count",
    "error_message",
    "result",
)


def test_task_mapping_access(queue: TaskQueue) -> None:
    task_id = queue.enqueue("Send", "send_email", {"to": "user@example.com"})
    task = queue.dequeue()
    assert task is not None
    assert task["id"] == task.id == task_id
    assert task["payload"] == {"to": "user@example.com"}
    assert task["status"] == "running" and task["status"] is TaskStatus.RUNNING
    assert task["priority"] == 2
    for name in FIELDS:
        assert name in task
        assert task[name] == getattr(task, name)
    assert tuple(task.keys())[: len(FIELDS)] == FIELDS
    as_dict = dict(task)
    assert as_dict == task.to_dict()
    assert list(as_dict) == list(task.keys())
    assert as_dict["name"] == "Send"
    assert task.get("nope", 5) == 5 and task.get("name") == "Send"
    assert "nope" not in task
    with pytest.raises(KeyError):
        task["nope"]


def test_task_is_frozen(queue: TaskQueue) -> None:
    queue.enqueue("a", "t")
    task = queue.get_task(1)
    assert isinstance(task, Task)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.status = TaskStatus.COMPLETED  # type: ignore[misc]
    with pytest.raises(TypeError):
        task["status"] = "completed"  # type: ignore[index]
