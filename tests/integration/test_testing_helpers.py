"""task_queue.testing (issue 12, section 5): drain() runs what is due in the
calling thread through the real claim/complete/fail path; the pytest
plugin's fixtures give a fresh queue per test."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from task_queue import (
    EventKind,
    HandlerRegistry,
    ManualClock,
    Middleware,
    RetryPolicy,
    Task,
    TaskQueue,
    TaskStatus,
    current_task,
)
from task_queue.testing import DrainReport, drain

pytest_plugins = ["pytester"]


def test_drain_runs_due_tasks_in_this_thread_and_reports_them(clocked_queue: TaskQueue) -> None:
    threads: set[str] = set()

    def echo(payload: Any) -> Any:
        threads.add(threading.current_thread().name)
        ctx = current_task()
        assert ctx is not None and ctx.task.payload == payload
        return payload

    q = clocked_queue
    ids = [q.enqueue(f"t{i}", "echo", i) for i in range(3)]
    later = q.enqueue("later", "echo", "x", delay=60)
    other = q.enqueue("other", "not-mine")
    report = drain(q, {"echo": echo})
    assert isinstance(report, DrainReport)
    assert report.completed_ids == ids
    assert report.attempts == 3 and report.failed == [] and report.retried == []
    assert threads == {threading.current_thread().name}
    assert [t.result for t in q.get_tasks(ids)] == [0, 1, 2]
    # Not due yet, and a type it has no handler for: left pending.
    assert report.next_due == q.get_task(later).run_at  # type: ignore[union-attr]
    assert q.get_task(other).status == TaskStatus.PENDING  # type: ignore[union-attr]
    assert drain(q, {"echo": echo}).attempts == 0


def test_retries_are_due_when_the_manual_clock_says_so(db_path: str, clock: ManualClock) -> None:
    q = TaskQueue(db_path, clock=clock, retry_policy=RetryPolicy(base=10, cap=10))
    calls = []

    def flaky(payload: Any) -> str:
        calls.append(clock.time())
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)}")
        return "ok"

    try:
        tid = q.enqueue("f", "flaky", max_retries=5)
        first = drain(q, {"flaky": flaky})
        assert (first.retried_ids, first.completed_ids) == ([tid], [])
        assert isinstance(first.errors[tid], ConnectionError)
        assert first.next_due is not None and first.next_due > clock.time()
        # The retry waits for its backoff: nothing runs until the clock moves.
        assert drain(q, {"flaky": flaky}).attempts == 0
        clock.advance(first.next_due - clock.time())
        assert drain(q, {"flaky": flaky}).retried_ids == [tid]
        # Or let drain move the clock to each next due time.
        last = drain(q, {"flaky": flaky}, until_idle=True)
        assert last.completed_ids == [tid] and last.next_due is None
        task = q.get_task(tid)
        assert task is not None and (task.status, task.result, task.attempts) == (
            TaskStatus.COMPLETED, "ok", 3,
        )  # fmt: skip
    finally:
        q.close()


def test_failures_use_the_handlers_options_and_can_be_raised(clocked_queue: TaskQueue) -> None:
    registry = HandlerRegistry()

    @registry.handler("boom", max_retries=0)
    def boom(payload: Any) -> None:
        raise ValueError("no")

    tid = clocked_queue.enqueue("b", "boom", max_retries=3)
    with pytest.raises(ValueError, match="no"):
        drain(clocked_queue, registry, raise_errors=True)
    task = clocked_queue.get_task(tid)
    assert task is not None and task.status == TaskStatus.FAILED
    assert task.error_message == "ValueError: no"


def test_until_idle_runs_pipelines_and_schedules_but_never_sleeps(
    clocked_queue: TaskQueue, queue: TaskQueue
) -> None:
    q = clocked_queue
    first = q.enqueue("a", "step", 1, delay=3600)
    second = q.enqueue("b", "step", 2, depends_on=[first])
    report = drain(q, {"step": lambda p: p * 10}, until_idle=True)
    assert report.completed_ids == [first, second]
    with pytest.raises(ValueError, match="ManualClock"):
        drain(queue, {"step": lambda p: p}, until_idle=True)


def test_drain_keeps_fencing_middleware_and_async_handlers(clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    seen: list[Any] = []
    wrapped: list[int] = []

    class Wrap(Middleware):
        def run_attempt(self, task: Task, run: Any) -> Any:
            wrapped.append(task.id)
            return run()

        async def arun_attempt(self, task: Task, run: Any) -> Any:
            wrapped.append(-task.id)
            return await run()

    q.add_hook(Wrap())
    q.add_hook(lambda e: seen.append(e.kind))

    async def coro(payload: Any) -> Any:
        await asyncio.sleep(0)
        return payload + 1

    def cancels_itself(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        q.cancel_task(ctx.task.id)
        return "too late"

    a = q.enqueue("a", "coro", 1)
    b = q.enqueue("b", "self-cancel")
    report = drain(q, {"coro": coro, "self-cancel": cancels_itself})
    # The fenced completion of a cancelled task is not reported as completed.
    assert report.completed_ids == [a]
    assert q.get_task(a).result == 2  # type: ignore[union-attr]
    assert q.get_task(b).status == TaskStatus.CANCELLED  # type: ignore[union-attr]
    assert wrapped == [-a, b]
    assert EventKind.STARTED in seen and EventKind.COMPLETED in seen


def test_max_attempts_stops_a_task_that_enqueues_itself_forever(clocked_queue: TaskQueue) -> None:
    q = clocked_queue

    def again(payload: Any) -> None:
        q.enqueue("again", "again")

    q.enqueue("again", "again")
    with pytest.raises(RuntimeError, match="50 attempts"):
        drain(q, {"again": again}, max_attempts=50)


def test_the_pytest_plugin_gives_a_fresh_queue_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from task_queue import ManualClock, SystemClock
        from task_queue.testing import drain

        def test_one(tq_queue):
            assert tq_queue.enqueue("a", "echo", 1) == 1
            assert drain(tq_queue, {"echo": lambda p: p}).completed_ids == [1]
            assert isinstance(tq_queue.clock, SystemClock)

        def test_two_starts_empty(tq_queue, tmp_path):
            assert tq_queue.get_queue_stats()["completed"] == 0
            assert tq_queue.path.startswith(str(tmp_path))

        def test_on_the_manual_clock(tq_queue, tq_clock):
            assert isinstance(tq_clock, ManualClock) and tq_queue.clock is tq_clock
            tid = tq_queue.enqueue("later", "echo", 2, delay=60)
            assert drain(tq_queue, {"echo": lambda p: p}).attempts == 0
            tq_clock.advance(60)
            assert drain(tq_queue, {"echo": lambda p: p}).completed_ids == [tid]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
