"""What the command's worker log is built on: outcome events carry how long
the handler ran (both ways a Worker commits completions: with its next
claim, or by the recorder), and ``Worker.run(until=...)`` stops by itself."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from support import wait_until

from task_queue import Event, EventKind, RetryPolicy, TaskQueue, Worker, current_task


def test_outcome_events_of_a_worker_carry_the_handler_duration(queue: TaskQueue) -> None:
    events: list[Event] = []
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            events.append(event)

    def nap(payload: Any) -> str:
        time.sleep(payload)
        return "done"

    def fails(payload: Any) -> None:
        raise ValueError("no")

    queue.add_hook(record)
    # Many short tasks: some completions ride with a claim, others go alone.
    short = queue.enqueue_many([{"name": "s", "task_type": "nap", "payload": 0} for _ in range(50)])
    slow = queue.enqueue("slow", "nap", 0.05)
    retried = queue.enqueue("retried", "fails", max_retries=1)
    handlers = {"nap": nap, "fails": fails}
    with Worker(queue, handlers, concurrency=2):
        wait_until(lambda: queue.get_queue_stats()["completed"] == 51, timeout=30)
        wait_until(lambda: queue.get_task(retried).status == "failed", timeout=30)
    queue.remove_hook(record)
    with lock:
        completed = {e.task_id: e for e in events if e.kind is EventKind.COMPLETED}
        retry = [e for e in events if e.kind is EventKind.RETRY_SCHEDULED]
        dead = [e for e in events if e.kind is EventKind.DEAD_LETTERED]
    assert set(completed) == {*short, slow}
    assert all(e.duration is not None and e.duration >= 0 for e in completed.values())
    assert completed[slow].duration is not None and completed[slow].duration >= 0.05
    assert [e.task_id for e in retry] == [retried] and retry[0].duration is not None
    assert [e.task_id for e in dead] == [retried] and dead[0].duration is not None


def test_completions_outside_a_worker_have_no_duration(queue: TaskQueue) -> None:
    events: list[Event] = []
    queue.add_hook(events.append)
    queue.enqueue("t", "t")
    task = queue.dequeue()
    assert task is not None and queue.complete_task(task, 1)
    [done] = [e for e in events if e.kind is EventKind.COMPLETED]
    assert done.duration is None


def test_run_until_stops_the_worker_once_it_is_true(queue: TaskQueue) -> None:
    calls = []

    def flaky(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        if ctx.task.attempts == 1:
            raise ConnectionError("once")
        return "ok"

    queue.retry_policy = RetryPolicy(base=0.01, cap=0.01)  # the retry is due at once
    task_id = queue.enqueue("t", "flaky")
    worker = Worker(queue, {"flaky": flaky}, poll_interval=0.01, drain_timeout=5)

    def finished() -> bool:
        calls.append(time.monotonic())
        task = queue.get_task(task_id)
        return task is not None and task.status == "completed"

    worker.run(until=finished)  # in the main thread: returns instead of waiting for a signal
    assert worker.join(0), "stopped"
    assert queue.get_task(task_id).status == "completed"
    assert calls, "until() was asked"
    assert queue.get_queue_stats()["running"] == 0


def test_run_until_that_raises_leaves_nothing_running(queue: TaskQueue) -> None:
    started = threading.Event()

    def wait(payload: Any) -> None:
        started.set()
        ctx = current_task()
        assert ctx is not None
        ctx.wait(30)

    queue.enqueue("t", "wait")
    worker = Worker(queue, {"wait": wait}, poll_interval=0.01, drain_timeout=0.1)

    def broken() -> bool:
        if started.is_set():
            raise RuntimeError("until() has a bug")
        return False

    with pytest.raises(RuntimeError, match=r"until\(\) has a bug"):
        worker.run(until=broken)
    assert worker.join(0)
    assert queue.get_queue_stats()["running"] == 0
