"""Periodic schedules run by Workers: no leader, each slot once (issue 9)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from support import wait_until

from task_queue import HandlerRegistry, ManualClock, TaskQueue, Worker, current_task
from task_queue.periodic import Schedule


def test_a_worker_fires_its_schedule_and_the_file_knows_it(db_path: str) -> None:
    reg = HandlerRegistry()
    fired: list[float] = []
    lock = threading.Lock()

    @reg.periodic(every=1, payload={"n": 1})
    @reg.handler("tick")
    def tick(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None and payload == {"n": 1}
        with lock:
            fired.append(ctx.task.scheduled_at or 0.0)

    with TaskQueue(db_path) as queue:
        with Worker(queue, reg, concurrency=2):
            # Known to the file as soon as the worker starts, before it fires.
            wait_until(lambda: [s.name for s in queue.schedules()] == ["tick"])
            wait_until(lambda: len(fired) >= 3, timeout=15)
        info = queue.schedules()[0]
    assert info.task_type == "tick" and info.expression == "every 1s"
    assert info.last_slot is not None and info.last_task_id is not None
    assert info.next_fire is not None and info.next_fire > info.last_slot
    slots = sorted(fired)
    assert all(b - a == 1.0 for a, b in itertools.pairwise(slots))  # no gap, no double
    assert all(s == int(s) for s in slots)  # the slot time: a multiple of the interval


def test_two_queues_racing_for_the_same_slots_fire_each_once(db_path: str) -> None:
    clock = ManualClock(1_800_000_000.0)
    schedule = Schedule("t", every=10)
    with TaskQueue(db_path, clock=clock) as a, TaskQueue(db_path, clock=clock) as b:
        a.declare_schedules([schedule])
        b.declare_schedules([schedule])
        made = []
        for _ in range(30):
            clock.advance(1)
            made += a.fire_schedule(schedule) + b.fire_schedule(schedule)
        slots = [slot for slot, _ in made]
        # The first: the slot that had just passed when it became known.
        assert slots == [1_800_000_000.0, 1_800_000_010.0, 1_800_000_020.0, 1_800_000_030.0]
        assert a.get_queue_stats()["pending"] == 4
        task = a.get_task(made[0][1])
        assert task is not None and task.scheduled_at == slots[0] and task.task_type == "t"


def test_misfire_policies_after_a_downtime(db_path: str) -> None:
    """No Worker ran for an hour: "latest" fires the last missed slot,
    "skip" none, "all" each."""
    clock = ManualClock(1_800_000_000.0)
    schedules = {
        "latest": Schedule("t", every=60, name="latest"),
        "skip": Schedule("t", every=60, name="skip", misfire="skip"),
        "all": Schedule("t", every=60, name="all", misfire="all"),
    }
    with TaskQueue(db_path, clock=clock) as queue:
        queue.declare_schedules(list(schedules.values()))
        clock.advance(60)
        for s in schedules.values():
            assert len(queue.fire_schedule(s)) == 1  # on time, each once
        clock.advance(3600 + 30)  # the workers were down
        fired = {name: queue.fire_schedule(s) for name, s in schedules.items()}
    assert [slot for slot, _ in fired["latest"]] == [1_800_003_660.0]
    assert fired["skip"] == []
    assert len(fired["all"]) == 60


def test_a_removed_schedule_stops_firing(db_path: str) -> None:
    clock = ManualClock(1_800_000_000.0)
    with TaskQueue(db_path, clock=clock) as queue:
        queue.declare_schedules([Schedule("old", every=60)])
        # The code no longer declares it: a Worker without it fires nothing.
        clock.advance(600)
        with Worker(queue, {"other": lambda p: None}, concurrency=1):
            wait_until(lambda: True)
        assert queue.get_queue_stats()["pending"] == 0
        [info] = queue.schedules()
        assert info.name == "old" and info.last_slot is None  # known, never fired
