"""TaskContext's cancellation flag and its wait(): the Event behind wait()
is made only when a handler waits, so a cancel() before, during and after
that must all be seen."""

from __future__ import annotations

import threading
import time

from task_queue import ManualClock
from task_queue.context import TaskContext
from task_queue.task import Task, TaskPriority, TaskStatus


def context() -> TaskContext:
    task = Task(
        id=1, name="t", task_type="job", payload=None,
        priority=TaskPriority.NORMAL, status=TaskStatus.RUNNING, worker_id="w",
        created_at=0.0, scheduled_at=None, started_at=0.0, completed_at=None, max_retries=3,
        retry_count=0, error_message=None, result=None, attempts=1, claim_token=1,
    )  # fmt: skip
    return TaskContext(task, None, ManualClock().monotonic)


def test_a_cancel_before_the_first_wait_ends_it_at_once() -> None:
    ctx = context()
    ctx.cancel("cancelled")
    started = time.monotonic()
    assert ctx.wait(30) is True
    assert time.monotonic() - started < 5
    assert ctx.cancelled and ctx.reason == "cancelled"


def test_a_cancel_from_another_thread_wakes_a_waiting_handler() -> None:
    ctx = context()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(ctx.wait(30)))
    waiter.start()
    deadline = time.monotonic() + 10
    while ctx._event is None and time.monotonic() < deadline:  # the waiter made its Event
        time.sleep(0.001)
    ctx.cancel("timeout")
    waiter.join(10)
    assert woke == [True]


def test_wait_without_a_cancel_times_out_false_and_first_reason_wins() -> None:
    ctx = context()
    assert ctx.wait(0.01) is False and not ctx.cancelled
    ctx.cancel("lost")
    ctx.cancel("shutdown")
    assert ctx.reason == "lost" and ctx.wait(0) is True
