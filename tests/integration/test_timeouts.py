"""Task timeouts in layers (issue 3, section 1).

1. cooperative: current_task() gives the deadline, ``cancelled`` and ``check()``;
2. an asynchronous TaskTimeout interrupts Python code (a CPU loop);
3. a handler blocked in C is recorded timed out after ``timeout + timeout_grace``,
   goes through the retry logic, its thread is replaced, and whatever it
   returns later is discarded.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import wait_until

from task_queue import (
    HandlerRegistry,
    RetryPolicy,
    TaskCancelled,
    TaskContext,
    TaskQueue,
    TaskStatus,
    TaskTimeout,
    Worker,
    current_task,
)
from task_queue.task import Task

GRACE = 0.3


@pytest.fixture
def tq(db_path: str) -> Iterator[TaskQueue]:
    q = TaskQueue(db_path, retry_policy=RetryPolicy(base=0.0))
    yield q
    q.close()


@pytest.fixture
def start_worker(tq: TaskQueue) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(handlers: Any, **kwargs: Any) -> Worker:
        kwargs.setdefault("concurrency", 1)
        kwargs.setdefault("timeout_grace", GRACE)
        w = Worker(tq, handlers, **kwargs).start()
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop(timeout=2.0)


def executor_threads(worker: Worker) -> list[threading.Thread]:
    """The worker's handler threads (named "<worker name>-<n>")."""
    pattern = re.compile(re.escape(worker.name) + r"-\d+")
    return [t for t in threading.enumerate() if pattern.fullmatch(t.name) and t.is_alive()]


def final(queue: TaskQueue, tid: int, timeout: float = 10.0) -> Task:
    terminal = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}

    def check() -> Task | None:
        task = queue.get_task(tid)
        return task if task is not None and task.status in terminal else None

    return wait_until(check, timeout=timeout)


def cpu_loop(payload: Any) -> Any:
    n = 0
    while True:  # pure Python: only the async exception can stop it
        n += 1


def test_enqueue_rejects_bad_timeouts(tq: TaskQueue) -> None:
    for bad in (0, -1, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="timeout"):
            tq.enqueue("t", "x", timeout=bad)  # type: ignore[arg-type]
    tid = tq.enqueue("t", "x", timeout=2)
    assert tq.get_task(tid).timeout == 2.0  # type: ignore[union-attr]


def test_cpu_loop_is_interrupted_by_async_timeout(
    tq: TaskQueue, start_worker: Callable[..., Worker]
) -> None:
    start_worker({"spin": cpu_loop})
    t0 = time.monotonic()
    tid = tq.enqueue("spin", "spin", timeout=0.2, max_retries=0)
    task = final(tq, tid)
    assert time.monotonic() - t0 >= 0.2
    assert task.status == TaskStatus.FAILED
    assert task.error_message is not None
    assert task.error_message.startswith("TaskTimeout")
    assert "0.2" in task.error_message
    assert "did not stop" not in task.error_message  # layer 2 was enough


def test_timeout_attempt_goes_through_retry(
    tq: TaskQueue, start_worker: Callable[..., Worker]
) -> None:
    def slow_first(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        if ctx.task.attempts == 1:
            cpu_loop(payload)
        return "second attempt"

    start_worker({"slow_first": slow_first})
    tid = tq.enqueue("s", "slow_first", timeout=0.2, max_retries=1)
    task = final(tq, tid)
    assert (task.status, task.result, task.attempts, task.retry_count) == (
        TaskStatus.COMPLETED,
        "second attempt",
        2,
        1,
    )
    assert task.error_message is not None and "TaskTimeout" in task.error_message


def test_handler_default_timeout_and_task_override(
    tq: TaskQueue, start_worker: Callable[..., Worker]
) -> None:
    seen: dict[int, float | None] = {}

    def cooperative(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        seen[ctx.task.id] = ctx.remaining()
        end = time.monotonic() + payload["seconds"]
        while time.monotonic() < end:
            ctx.check()  # raises TaskTimeout once the deadline passed
            time.sleep(0.01)
        return "finished"

    registry = HandlerRegistry()
    registry.register("coop", cooperative, timeout=0.2)
    start_worker(registry, concurrency=2)
    by_default = tq.enqueue("default", "coop", {"seconds": 30}, max_retries=0)
    longer = tq.enqueue("longer", "coop", {"seconds": 0.5}, max_retries=0, timeout=10)
    shorter = tq.enqueue("shorter", "coop", {"seconds": 30}, max_retries=0, timeout=0.1)

    t = final(tq, by_default)
    assert t.status == TaskStatus.FAILED and t.timeout is None
    assert t.error_message is not None and t.error_message.startswith("TaskTimeout")
    t = final(tq, longer)
    assert (t.status, t.result) == (TaskStatus.COMPLETED, "finished")
    t = final(tq, shorter)
    assert t.status == TaskStatus.FAILED
    assert t.error_message is not None and "0.1" in t.error_message

    assert seen[by_default] is not None and 0 < seen[by_default] <= 0.2  # type: ignore[operator]
    assert seen[longer] is not None and 0.2 < seen[longer] <= 10  # type: ignore[operator]
    assert seen[shorter] is not None and seen[shorter] <= 0.1  # type: ignore[operator]


@pytest.mark.parametrize("then", ["return", "raise"])
def test_handler_that_catches_the_timeout_sees_the_flag(
    tq: TaskQueue, start_worker: Callable[..., Worker], then: str
) -> None:
    """A handler that catches the async TaskTimeout still sees ``cancelled``
    and ``check()`` raising. If it then returns a result (its own decision,
    like Celery's soft time limit) the attempt completes; if it raises
    anything, the attempt is recorded as timed out."""
    seen: dict[str, Any] = {}

    def catcher(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        seen["deadline"] = ctx.deadline
        try:
            while True:
                pass
        except TaskTimeout:
            seen["interrupted"] = True
        seen["cancelled"] = ctx.cancelled
        seen["reason"] = ctx.reason
        try:
            ctx.check()
        except TaskTimeout:
            seen["check raised"] = True
        if then == "raise":
            raise RuntimeError("clean-up failed")
        return "cleaned up"

    start_worker({"catcher": catcher})
    tid = tq.enqueue("c", "catcher", timeout=0.2, max_retries=0)
    task = final(tq, tid)
    assert seen["deadline"] is not None
    assert {k: seen.get(k) for k in ("interrupted", "cancelled", "reason", "check raised")} == {
        "interrupted": True, "cancelled": True, "reason": "timeout", "check raised": True,
    }  # fmt: skip
    if then == "return":
        assert (task.status, task.result) == (TaskStatus.COMPLETED, "cleaned up")
    else:
        assert (task.status, task.result) == (TaskStatus.FAILED, None)
        assert task.error_message is not None and task.error_message.startswith("TaskTimeout")


def test_context_check_outside_worker() -> None:
    """TaskContext on its own: check() raises TaskTimeout past the deadline,
    TaskCancelled after cancel()."""
    now = [100.0]
    task = Task(
        id=1, name="n", task_type="t", payload=None, priority=2, status=TaskStatus.RUNNING,  # type: ignore[arg-type]
        worker_id=None, created_at=0.0, scheduled_at=None, started_at=None, completed_at=None,
        max_retries=0, retry_count=0, error_message=None, result=None,
    )  # fmt: skip
    ctx = TaskContext(task, 101.0, lambda: now[0])
    assert ctx.remaining() == 1.0
    ctx.check()
    now[0] = 101.0
    with pytest.raises(TaskTimeout):
        ctx.check()
    assert ctx.cancelled and ctx.reason == "timeout"
    other = TaskContext(task, None, lambda: now[0])
    assert other.remaining() is None
    other.cancel("cancelled")
    other.cancel("timeout")  # the first reason stays
    with pytest.raises(TaskCancelled):
        other.check()
    assert other.reason == "cancelled"
    assert other.wait(5) is True  # returns at once once cancelled


def test_blocked_in_c_socket_recv_is_timed_out_and_thread_replaced(
    tq: TaskQueue, start_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="task_queue")
    left, right = socket.socketpair()
    returned = threading.Event()
    threads: list[int] = []

    def blocked(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        threads.append(threading.get_ident())
        if ctx.task.attempts == 1:
            try:
                left.recv(1)  # blocks in C: no async exception gets in
                # (once recv returns, the pending TaskTimeout may land here)
                return "late result of the stuck first attempt"
            finally:
                returned.set()
        return "second attempt"

    try:
        worker = start_worker({"blocked": blocked, "quick": lambda p: p}, concurrency=1)
        tid = tq.enqueue("b", "blocked", timeout=0.2, max_retries=1)
        # With concurrency=1 the pool keeps its capacity: these still run.
        quick = [tq.enqueue(f"q{i}", "quick", i) for i in range(3)]
        task = final(tq, tid)
        for i, q in enumerate(quick):
            t = final(tq, q)
            assert (t.status, t.result) == (TaskStatus.COMPLETED, i)
        assert not returned.is_set()  # still stuck in recv()
        assert (task.status, task.result, task.attempts, task.retry_count) == (
            TaskStatus.COMPLETED,
            "second attempt",
            2,
            1,
        )
        assert task.error_message is not None
        assert "TaskTimeout" in task.error_message and "did not stop" in task.error_message
        assert len(threads) == 2 and threads[0] != threads[1]  # a replacement thread ran it
        assert len(executor_threads(worker)) == 2  # the stuck one and its replacement

        # Unblock the stuck thread: its late result is discarded.
        right.send(b"x")
        wait_until(returned.is_set)
        wait_until(
            lambda: any("given up; outcome discarded" in r.getMessage() for r in caplog.records)
        )
        task = tq.get_task(tid)
        assert task is not None
        assert (task.status, task.result) == (TaskStatus.COMPLETED, "second attempt")
    finally:
        right.send(b"x")
        left.close()
        right.close()


def test_blocked_in_c_sleep_fails_without_retries_and_late_result_is_discarded(
    tq: TaskQueue, start_worker: Callable[..., Worker]
) -> None:
    def sleeper(payload: Any) -> Any:
        time.sleep(30)  # one C call; the thread is abandoned, a daemon
        return "far too late"

    start_worker({"sleep": sleeper, "quick": lambda p: "ok"}, concurrency=1)
    t0 = time.monotonic()
    tid = tq.enqueue("s", "sleep", timeout=0.2, max_retries=0)
    after = tq.enqueue("after", "quick")
    task = final(tq, tid)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.2 + GRACE
    assert task.status == TaskStatus.FAILED
    assert task.result is None
    assert task.error_message is not None and "did not stop" in task.error_message
    assert final(tq, after).result == "ok"


def test_stop_after_replacing_a_stuck_thread(
    tq: TaskQueue, start_worker: Callable[..., Worker]
) -> None:
    release = threading.Event()

    def stuck(payload: Any) -> Any:
        while not release.wait(10):  # a C-level wait; ignores the async exception
            pass
        return None

    worker = start_worker({"stuck": stuck, "quick": lambda p: "ok"}, concurrency=1)
    try:
        tid = tq.enqueue("s", "stuck", timeout=0.1, max_retries=0)
        assert final(tq, tid).status == TaskStatus.FAILED
        assert final(tq, tq.enqueue("q", "quick")).result == "ok"
        t0 = time.monotonic()
        worker.stop(timeout=5)
        assert time.monotonic() - t0 < 5  # the abandoned thread is not waited for
        assert tq.get_queue_stats()["running"] == 0
    finally:
        release.set()
