"""Progress reported from inside a task (issue 10, section 2)."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from support import wait_until

from task_queue import TaskQueue, TaskStatus, Worker, current_task


def test_progress_is_visible_while_it_runs_and_after(queue: TaskQueue) -> None:
    step = threading.Event()
    go_on = threading.Event()

    def work(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        ctx.progress(1, 3, "first third")
        step.set()
        go_on.wait(30)
        ctx.progress(3, 3, "done")
        return "ok"

    task_id = queue.enqueue("w", "work")
    with Worker(queue, {"work": work}, concurrency=1):
        step.wait(30)
        wait_until(lambda: (queue.get_task(task_id).progress or {}).get("current") == 1)  # type: ignore[union-attr]
        running = queue.get_task(task_id)
        assert running is not None and running.status == TaskStatus.RUNNING
        assert running.progress is not None
        assert running.progress["total"] == 3 and running.progress["message"] == "first third"
        go_on.set()
        assert queue.result(task_id, timeout=10) == "ok"
    done = queue.get_task(task_id)
    assert done is not None and done.progress is not None
    assert (done.progress["current"], done.progress["message"]) == (3, "done")


def test_a_tight_loop_of_reports_is_cheap_and_keeps_the_last(queue: TaskQueue) -> None:
    def work(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None
        for i in range(200_000):
            ctx.progress(i + 1, 200_000)

    task_id = queue.enqueue("w", "work")
    with Worker(queue, {"work": work}, concurrency=1):
        queue.wait(task_id, timeout=60)
    done = queue.get_task(task_id)
    assert done is not None and done.progress is not None
    assert done.progress["current"] == 200_000


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((math.nan,), ValueError),
        ((1, -5), ValueError),
        ((-1,), ValueError),
        ((1, math.inf), ValueError),
        (("3",), TypeError),
        ((True,), TypeError),
        ((1, 2, "x" * 1001), ValueError),
        ((1, 2, 42), TypeError),
    ],
)
def test_bad_progress_is_a_clear_error(
    queue: TaskQueue, args: tuple[Any, ...], error: type
) -> None:
    seen: list[BaseException] = []

    def work(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None
        try:
            ctx.progress(*args)
        except BaseException as exc:
            seen.append(exc)

    task_id = queue.enqueue("w", "work")
    with Worker(queue, {"work": work}, concurrency=1):
        queue.wait(task_id, timeout=10)
    assert len(seen) == 1 and isinstance(seen[0], error), seen
    assert queue.get_task(task_id).progress is None  # type: ignore[union-attr]


def test_a_stale_holders_progress_is_not_recorded(queue: TaskQueue, db_path: str) -> None:
    queue.enqueue("a", "t")
    stale = queue.claim(1, remember=False)[0]
    assert queue.report_progress(stale, 1, 10) is True
    assert queue.cancel_task(stale.id)
    assert queue.retry_task(stale.id)
    fresh = queue.claim(1, remember=False)[0]
    assert queue.report_progress(stale, 9, 10, "late") is False
    assert queue.report_progress(fresh, 2, 10) is True
    task = queue.get_task(fresh.id)
    assert task is not None and task.progress is not None and task.progress["current"] == 2
