"""``async def`` handlers (issue 12, section 2): run on the Worker's own
event loop with their own concurrency; timeouts, cancel_task(), lost
leases and shutdown stop the coroutine for real; heartbeats, fencing,
progress and middleware work as for sync handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import wait_until

from task_queue import (
    BatchRef,
    HandlerRegistry,
    ManualClock,
    Middleware,
    Task,
    TaskQueue,
    TaskStatus,
    Worker,
    WorkerOptions,
    current_task,
)


@pytest.fixture
def aq(db_path: str) -> Iterator[TaskQueue]:
    q = TaskQueue(db_path, lease_seconds=3.0)
    yield q
    q.close()


class Gate:
    """A release flag a coroutine on another loop can await (polling, with
    a deadline: the test's thread sets it)."""

    def __init__(self) -> None:
        self._flag = threading.Event()

    def open(self) -> None:
        self._flag.set()

    async def wait(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._flag.is_set():
            if time.monotonic() > deadline:
                raise AssertionError("the test never opened the gate")
            await asyncio.sleep(0.005)


def finished(queue: TaskQueue, task_id: int) -> Callable[[], Task | None]:
    def check() -> Task | None:
        task = queue.get_task(task_id)
        return task if task is not None and task.status.finished else None

    return check


def test_async_concurrency_is_validated() -> None:
    for bad in (0, -1, 1.5, True, "200"):
        with pytest.raises(ValueError, match="async_concurrency"):
            WorkerOptions(async_concurrency=bad)  # type: ignore[arg-type]
    assert WorkerOptions().async_concurrency == 200


def test_coroutine_handlers_are_detected(registry: HandlerRegistry) -> None:
    async def coro(payload: Any) -> Any:
        return payload

    class Callable_:
        async def __call__(self, payload: Any) -> Any:
            return payload

    registry["a"] = coro
    registry["b"] = Callable_()
    registry["c"] = lambda p: p
    assert [registry.is_async(t) for t in "abc"] == [True, True, False]


def test_500_sleeping_coroutines_run_at_once_on_few_threads(aq: TaskQueue) -> None:
    running = 0
    most = 0
    all_in = Gate()

    async def sleeper(payload: Any) -> Any:
        nonlocal running, most
        running += 1  # one loop thread: no lock needed
        most = max(most, running)
        if running == 500:
            all_in.open()
        await all_in.wait()
        await asyncio.sleep(0.01)
        running -= 1
        return payload["i"]

    threads_before = threading.active_count()
    seen_threads = 0
    ids = aq.enqueue_many([{"name": f"s{i}", "task_type": "sleep", "payload": {"i": i}}
                           for i in range(500)])  # fmt: skip
    with Worker(aq, {"sleep": sleeper}, concurrency=2, async_concurrency=500) as worker:

        def all_done() -> bool:
            nonlocal seen_threads
            seen_threads = max(seen_threads, threading.active_count() - threads_before)
            return aq.get_queue_stats()["completed"] == 500

        wait_until(all_done, timeout=60)
        assert worker.processed == 500
    assert most == 500
    # 2 executors, dispatcher, timekeeper, recorder, the loop: not 500.
    assert seen_threads <= 8, seen_threads
    assert [t.result for t in aq.get_tasks(ids[:3])] == [0, 1, 2]


def test_the_pools_do_not_starve_each_other(aq: TaskQueue) -> None:
    async_gate, sync_gate = Gate(), threading.Event()

    async def slow_async(payload: Any) -> str:
        await async_gate.wait()
        return "async"

    def slow_sync(payload: Any) -> str:
        assert sync_gate.wait(20)
        return "sync"

    handlers = {"slow_async": slow_async, "slow_sync": slow_sync,
                "fast_async": _fast_async, "fast_sync": lambda p: "fast"}  # fmt: skip
    with Worker(aq, handlers, concurrency=1, async_concurrency=2):
        # Both pools full with blocked tasks...
        blocked = [aq.enqueue("a", "slow_async") for _ in range(2)] + [aq.enqueue("s", "slow_sync")]
        wait_until(lambda: aq.get_queue_stats()["running"] == 3)
        # ...then more of each kind wait; none of them takes the other's place.
        more_async = aq.enqueue("fa", "fast_async")
        more_sync = aq.enqueue("fs", "fast_sync")
        async_gate.open()  # frees the async places only
        assert wait_until(finished(aq, more_async), timeout=10).result == "async-fast"
        assert aq.get_task(more_sync).status == TaskStatus.PENDING  # type: ignore[union-attr]
        sync_gate.set()
        assert wait_until(finished(aq, more_sync), timeout=10).result == "fast"
        for task_id in blocked:
            wait_until(finished(aq, task_id), timeout=10)


async def _fast_async(payload: Any) -> str:
    await asyncio.sleep(0)
    return "async-fast"


def test_current_task_and_progress_inside_a_coroutine(aq: TaskQueue) -> None:
    seen: dict[int, int] = {}

    async def reporter(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        for step in range(1, 4):
            ctx.progress(step, 3, f"step {step}")
            await asyncio.sleep(0.01)
            # Other coroutines ran meanwhile: each still sees its own task.
            assert current_task() is ctx

        async def child() -> int:
            inner = current_task()
            assert inner is not None
            return inner.task.id

        seen[ctx.task.id] = await asyncio.create_task(child())
        return ctx.task.attempts

    ids = [aq.enqueue(f"r{i}", "report") for i in range(10)]
    with Worker(aq, {"report": reporter}):
        tasks = [wait_until(finished(aq, i), timeout=20) for i in ids]
    assert seen == {i: i for i in ids}
    assert [t.result for t in tasks] == [1] * 10
    assert tasks[0].progress is not None and tasks[0].progress["current"] == 3
    assert current_task() is None


def test_a_timeout_cancels_the_coroutine(aq: TaskQueue) -> None:
    cancelled = threading.Event()

    async def hangs(payload: Any) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with Worker(aq, {"hang": hangs}, timeout_grace=10):
        tid = aq.enqueue("h", "hang", timeout=0.3, max_retries=0)
        task = wait_until(finished(aq, tid), timeout=10)
    assert cancelled.is_set()
    assert task.status == TaskStatus.FAILED
    assert task.error_message is not None and "TaskTimeout" in task.error_message
    # Well before the grace period: the coroutine stopped when told.
    assert task.completed_at is not None and task.started_at is not None
    assert task.completed_at - task.started_at < 5


def test_a_coroutine_that_swallows_the_cancellation_is_abandoned_after_the_grace(
    aq: TaskQueue,
) -> None:
    keeps_running = Gate()
    swallowed = threading.Event()

    async def stubborn(payload: Any) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.set()
        await keeps_running.wait()
        return "too late"

    handlers = {"stubborn": stubborn, "next": _fast_async}
    with Worker(aq, handlers, async_concurrency=1, timeout_grace=0.3) as worker:
        tid = aq.enqueue("s", "stubborn", timeout=0.2, max_retries=0)
        task = wait_until(finished(aq, tid), timeout=10)
        assert swallowed.is_set()
        assert task.status == TaskStatus.FAILED
        assert "did not stop" in (task.error_message or "")
        # Its place was freed although it still runs.
        after = aq.enqueue("n", "next")
        assert wait_until(finished(aq, after), timeout=10).result == "async-fast"
        keeps_running.open()
        wait_until(lambda: worker.in_flight == 0)
    task = aq.get_task(tid)
    assert task is not None and task.status == TaskStatus.FAILED and task.result is None


def test_cancel_task_cancels_the_running_coroutine(db_path: str) -> None:
    q = TaskQueue(db_path, lease_seconds=0.6)  # heartbeat every 0.2 s
    started, cancelled = threading.Event(), threading.Event()

    async def long(payload: Any) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    try:
        with Worker(q, {"long": long, "next": _fast_async}, async_concurrency=1):
            tid = q.enqueue("l", "long", max_retries=3)
            assert started.wait(10)
            assert q.cancel_task(tid)
            assert cancelled.wait(10)
            other = q.enqueue("n", "next")  # the one place is free again
            assert wait_until(finished(q, other), timeout=10).result == "async-fast"
        task = q.get_task(tid)
        assert task is not None
        assert (task.status, task.retry_count, task.attempts) == (TaskStatus.CANCELLED, 0, 1)
    finally:
        q.close()


def test_graceful_stop_waits_for_running_coroutines(aq: TaskQueue) -> None:
    started = threading.Event()

    async def short(payload: Any) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished"

    worker = Worker(aq, {"short": short}).start()
    tid = aq.enqueue("s", "short")
    assert started.wait(10)
    worker.stop(timeout=10)
    task = aq.get_task(tid)
    assert task is not None and (task.status, task.result) == (TaskStatus.COMPLETED, "finished")


def test_a_stop_past_the_drain_deadline_gives_coroutines_back(aq: TaskQueue) -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def endless(payload: Any) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    worker = Worker(aq, {"endless": endless}).start()
    tid = aq.enqueue("e", "endless")
    assert started.wait(10)
    worker.stop(timeout=0.2)
    assert cancelled.wait(10)
    task = aq.get_task(tid)
    assert task is not None
    # Back to pending, without using a retry.
    assert (task.status, task.retry_count) == (TaskStatus.PENDING, 0)


def test_a_coroutine_that_lost_its_lease_cannot_overwrite_the_new_holder(
    db_path: str, clock: ManualClock
) -> None:
    q = TaskQueue(db_path, lease_seconds=30)
    started = threading.Event()
    release = Gate()

    async def slow(payload: Any) -> str:
        started.set()
        # Pretend not to notice the loss: the late result is fenced out.
        with contextlib.suppress(asyncio.CancelledError):
            await release.wait()
        return "stale"

    try:
        with Worker(q, {"slow": slow}, heartbeat_interval=0.1) as worker:
            tid = q.enqueue("s", "slow", max_retries=3)
            assert started.wait(10)
            # Another process, whose clock says the lease is long gone,
            # rescues the task and claims it.
            clock.advance(time.time() - clock.time() + 3600)
            other = TaskQueue(db_path, clock=clock)
            try:
                assert other.rescue_expired() == 1
                claimed = other.dequeue()
                assert claimed is not None and claimed.id == tid
                release.open()
                wait_until(lambda: q.get_task(tid).attempts == 2)  # type: ignore[union-attr]
                # The stale outcome is discarded, or written and fenced out.
                wait_until(lambda: worker.in_flight == 0 and not worker._recorder.held())
                assert other.complete_task(claimed, "theirs") is True
            finally:
                other.close()
        task = q.get_task(tid)
        assert task is not None and (task.status, task.result) == (TaskStatus.COMPLETED, "theirs")
    finally:
        q.close()


class Tracing(Middleware):
    def __init__(self) -> None:
        self.spans: list[tuple[int, str]] = []

    async def arun_attempt(self, task: Task, run: Callable[[], Any]) -> Any:
        self.spans.append((task.id, "enter"))
        try:
            return await run()
        finally:
            self.spans.append((task.id, "exit"))


class SyncOnly(Middleware):
    def __init__(self) -> None:
        self.wrapped: list[int] = []

    def run_attempt(self, task: Task, run: Callable[[], Any]) -> Any:
        self.wrapped.append(task.id)
        return run()


def test_middleware_wraps_async_attempts_with_arun_attempt(
    aq: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="task_queue")
    tracing, sync_only = Tracing(), SyncOnly()
    aq.add_hook(tracing)
    aq.add_hook(sync_only)
    ids = [aq.enqueue("a", "fast_async"), aq.enqueue("s", "fast_sync")]
    with Worker(aq, {"fast_async": _fast_async, "fast_sync": lambda p: "s"}):
        for task_id in ids:
            wait_until(finished(aq, task_id), timeout=10)
    assert tracing.spans == [(ids[0], "enter"), (ids[0], "exit")]
    # A sync run_attempt cannot wrap a coroutine without blocking the loop:
    # it wraps the sync attempts only, and says so once.
    assert sync_only.wrapped == [ids[1]]
    assert sum("wraps sync attempts only" in r.getMessage() for r in caplog.records) == 1


def test_an_async_handler_reads_its_parents_results_with_aparents(aq: TaskQueue) -> None:
    async def join(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        return sorted(p.result for p in await ctx.aparents())

    ids = aq.enqueue_many(
        [
            {"name": "a", "task_type": "leaf", "payload": 1},
            {"name": "b", "task_type": "leaf", "payload": 2},
            {"name": "j", "task_type": "join", "depends_on": [BatchRef(0), BatchRef(1)]},
        ]
    )
    handlers = {"leaf": lambda payload: payload * 10, "join": join}
    with Worker(aq, handlers, concurrency=2):
        assert aq.result(ids[2], timeout=10) == [10, 20]
