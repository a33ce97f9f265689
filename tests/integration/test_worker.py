"""The Worker pool: lifecycle, handler lookup, outcomes, exceptions, wake-up."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import procs, wait_until

from task_queue import (
    TASK_HANDLERS,
    HandlerRegistry,
    RetryPolicy,
    TaskQueue,
    TaskStatus,
    Worker,
    current_task,
)

MakeWorker = Callable[..., Worker]


@pytest.fixture
def fast_queue(db_path: str) -> Iterator[TaskQueue]:
    """A queue whose retries are due at once (no backoff)."""
    q = TaskQueue(db_path, retry_policy=RetryPolicy(base=0.0))
    yield q
    q.close()


@pytest.fixture
def make_worker(fast_queue: TaskQueue) -> Iterator[MakeWorker]:
    """Build Workers on ``fast_queue``; every one is stopped at teardown."""
    workers: list[Worker] = []

    def make(handlers: Any = None, **kwargs: Any) -> Worker:
        kwargs.setdefault("concurrency", 2)
        w = Worker(kwargs.pop("queue", fast_queue), handlers, **kwargs)
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.stop(timeout=2.0)


@pytest.fixture
def default_handlers() -> Iterator[HandlerRegistry]:
    """TASK_HANDLERS, restored to its previous contents afterwards."""
    saved = dict(TASK_HANDLERS)
    yield TASK_HANDLERS
    TASK_HANDLERS.clear()
    TASK_HANDLERS.update(saved)


def finished(queue: TaskQueue, task_id: int) -> Callable[[], bool]:
    done = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}

    def check() -> bool:
        task = queue.get_task(task_id)
        return task is not None and task.status in done

    return check


# -- lifecycle ------------------------------------------------------------------


def test_start_stop_join(fast_queue: TaskQueue, make_worker: MakeWorker) -> None:
    worker = make_worker({"echo": lambda p: p}, name="lifecycle")
    assert not worker.join(timeout=0)  # not started: not stopped either
    worker.stop()  # stop before start: nothing to do
    assert worker.start() is worker
    with pytest.raises(RuntimeError, match="already started"):
        worker.start()
    assert not worker.join(timeout=0.05)
    tid = fast_queue.enqueue("e", "echo", {"a": 1})
    wait_until(finished(fast_queue, tid))
    worker.stop()
    assert worker.join(timeout=0)
    worker.stop()  # idempotent
    names = [t.name for t in threading.enumerate()]
    assert not any(n.startswith("lifecycle-") for n in names), names
    task = fast_queue.get_task(tid)
    assert task is not None
    assert task.status == TaskStatus.COMPLETED
    assert task.result == {"a": 1}
    assert task.worker_id is not None and task.worker_id.endswith(":lifecycle")


def test_context_manager_stops(fast_queue: TaskQueue) -> None:
    with Worker(fast_queue, {"echo": lambda p: p}, concurrency=1) as worker:
        tid = fast_queue.enqueue("e", "echo", [1, 2])
        wait_until(finished(fast_queue, tid))
    assert worker.join(timeout=0)
    assert fast_queue.get_task(tid).result == [1, 2]  # type: ignore[union-attr]


def test_invalid_arguments(fast_queue: TaskQueue) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="concurrency"):
            Worker(fast_queue, {}, concurrency=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="poll_interval"):
        Worker(fast_queue, {}, poll_interval=0)


# -- handlers ---------------------------------------------------------------------


def test_default_registry_is_task_handlers(
    fast_queue: TaskQueue, make_worker: MakeWorker, default_handlers: HandlerRegistry
) -> None:
    # The seed API: TASK_HANDLERS['custom_task'] = custom_handler
    def custom_handler(payload: dict[str, Any]) -> dict[str, Any]:
        return {"success": True, "data": payload["n"] * 2}

    TASK_HANDLERS["custom_task"] = custom_handler
    worker = make_worker()
    assert worker.handlers is TASK_HANDLERS
    worker.start()
    tid = fast_queue.enqueue("custom", "custom_task", {"n": 21})
    wait_until(finished(fast_queue, tid))
    assert fast_queue.get_task(tid).result == {"success": True, "data": 42}  # type: ignore[union-attr]


def test_explicit_registry_and_dict(fast_queue: TaskQueue, make_worker: MakeWorker) -> None:
    registry = HandlerRegistry()

    @registry.handler("upper")
    def upper(payload: str) -> str:
        return payload.upper()

    make_worker(registry).start()
    make_worker({"lower": lambda p: p.lower()}).start()
    a = fast_queue.enqueue("a", "upper", "abc")
    b = fast_queue.enqueue("b", "lower", "XYZ")
    wait_until(lambda: finished(fast_queue, a)() and finished(fast_queue, b)())
    assert fast_queue.get_task(a).result == "ABC"  # type: ignore[union-attr]
    assert fast_queue.get_task(b).result == "xyz"  # type: ignore[union-attr]


def test_claims_only_types_it_handles(
    fast_queue: TaskQueue, make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="task_queue")
    worker = make_worker({"known": lambda p: "ok"}, idle_report_interval=0.1, name="picky")
    orphan = fast_queue.enqueue("orphan", "not_deployed_yet")
    known = fast_queue.enqueue("known", "known")
    worker.start()
    wait_until(finished(fast_queue, known))
    wait_until(
        lambda: any(
            r.name.startswith("task_queue")
            and "not_deployed_yet" in r.getMessage()
            and "picky" in r.getMessage()
            for r in caplog.records
        ),
        timeout=5,
    )
    task = fast_queue.get_task(orphan)
    assert task is not None
    assert task.status == TaskStatus.PENDING
    assert task.attempts == 0
    assert fast_queue.pending_by_type() == {"not_deployed_yet": 1}

    # A worker that has the handler takes it.
    make_worker({"not_deployed_yet": lambda p: "finally"}).start()
    wait_until(finished(fast_queue, orphan))
    assert fast_queue.get_task(orphan).result == "finally"  # type: ignore[union-attr]
    assert fast_queue.pending_by_type() == {}


def test_worker_without_handlers_warns_and_claims_nothing(
    fast_queue: TaskQueue, make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="task_queue")
    tid = fast_queue.enqueue("t", "anything")
    make_worker({}).start()
    assert any("no handlers" in r.getMessage() for r in caplog.records)
    assert fast_queue.get_task(tid).status == TaskStatus.PENDING  # type: ignore[union-attr]


# -- outcomes ----------------------------------------------------------------------


def test_handler_exception_is_retried_then_failed(
    fast_queue: TaskQueue, make_worker: MakeWorker
) -> None:
    calls: list[int] = []

    def flaky(payload: Any) -> Any:
        calls.append(1)
        raise RuntimeError(f"boom {len(calls)}")

    make_worker({"flaky": flaky}).start()
    tid = fast_queue.enqueue("f", "flaky", max_retries=2)
    wait_until(finished(fast_queue, tid))
    task = fast_queue.get_task(tid)
    assert task is not None
    assert task.status == TaskStatus.FAILED
    assert len(calls) == 3
    assert task.attempts == 3
    assert task.retry_count == 2
    assert task.error_message == "RuntimeError: boom 3"
    assert task.error_traceback is not None and "in flaky" in task.error_traceback


def test_retry_then_success(fast_queue: TaskQueue, make_worker: MakeWorker) -> None:
    def second_time_lucky(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        if ctx.task.attempts == 1:
            raise ValueError("first attempt fails")
        return "ok"

    make_worker({"lucky": second_time_lucky}).start()
    tid = fast_queue.enqueue("l", "lucky", max_retries=1)
    wait_until(finished(fast_queue, tid))
    task = fast_queue.get_task(tid)
    assert task is not None
    assert (task.status, task.result, task.retry_count, task.attempts) == (
        TaskStatus.COMPLETED,
        "ok",
        1,
        2,
    )


@pytest.mark.parametrize("backoff", [0.0, 0.3])
def test_retry_is_picked_up_by_the_same_idle_worker(db_path: str, backoff: float) -> None:
    """Regression: after recording a failed attempt the worker went idle
    without looking again, so the retry (due at once or after its backoff)
    waited for an unrelated wake-up: forever in a single-process setup,
    since the worker's own commits do not change data_version."""
    attempts: list[float] = []

    def fails_once(payload: Any) -> Any:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return "second"

    policy = RetryPolicy(base=backoff, random=lambda: 1.0)  # delay == backoff exactly
    with TaskQueue(db_path, retry_policy=policy) as q:
        with Worker(q, {"once": fails_once}, concurrency=1, poll_interval=5.0):
            tid = q.enqueue("once", "once", max_retries=1)
            wait_until(finished(q, tid), timeout=4.0)
        task = q.get_task(tid)
    assert task is not None
    assert (task.status, task.result, task.retry_count) == (TaskStatus.COMPLETED, "second", 1)
    assert attempts[1] - attempts[0] >= backoff * 0.9


class CustomBaseError(BaseException):
    pass


@pytest.mark.parametrize(
    "exc",
    [SystemExit(3), KeyboardInterrupt(), CustomBaseError("custom"), GeneratorExit()],
    ids=lambda e: type(e).__name__,
)
def test_base_exceptions_are_retried_then_failed_and_threads_survive(
    fast_queue: TaskQueue, make_worker: MakeWorker, exc: BaseException
) -> None:
    def raiser(payload: Any) -> Any:
        raise exc

    worker = make_worker({"raise": raiser, "ok": lambda p: p}, concurrency=2, name="survivor")
    worker.start()
    bad = [fast_queue.enqueue(f"bad {i}", "raise", max_retries=1) for i in range(3)]
    for tid in bad:
        wait_until(finished(fast_queue, tid))
        task = fast_queue.get_task(tid)
        assert task is not None
        assert task.status == TaskStatus.FAILED
        assert (task.attempts, task.retry_count) == (2, 1)
        assert task.error_message is not None
        assert task.error_message.startswith(type(exc).__name__)
    # Both executor threads are alive and keep working.
    executors = [t for t in threading.enumerate() if re.fullmatch(r"survivor-\d+", t.name)]
    assert len(executors) == 2 and all(t.is_alive() for t in executors)
    oks = [fast_queue.enqueue(f"ok {i}", "ok", i) for i in range(6)]
    for i, tid in enumerate(oks):
        wait_until(finished(fast_queue, tid))
        assert fast_queue.get_task(tid).result == i  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "result", [float("nan"), {"x": object()}, {1: "int key"}, b"bytes"], ids=repr
)
def test_non_json_result_fails_the_attempt(
    fast_queue: TaskQueue, make_worker: MakeWorker, result: Any
) -> None:
    make_worker({"bad_result": lambda p: result}).start()
    tid = fast_queue.enqueue("r", "bad_result", max_retries=0)
    wait_until(finished(fast_queue, tid))
    task = fast_queue.get_task(tid)
    assert task is not None
    assert task.status == TaskStatus.FAILED
    assert task.result is None
    assert task.error_message is not None
    assert task.error_message.startswith("PayloadError")
    assert "result" in task.error_message


def test_missing_handler_after_claim_fails_clearly(
    fast_queue: TaskQueue, make_worker: MakeWorker
) -> None:
    # The handler is removed from the registry while its task is prefetched.
    registry = HandlerRegistry()
    gate = threading.Event()
    registry["gate"] = lambda p: gate.wait(10)
    registry["gone"] = lambda p: "never"
    make_worker(registry, concurrency=1, prefetch=1).start()
    first = fast_queue.enqueue("gate", "gate", priority=4)
    wait_until(lambda: fast_queue.get_task(first).status == TaskStatus.RUNNING)  # type: ignore[union-attr]
    gone = fast_queue.enqueue("gone", "gone", max_retries=0)
    wait_until(lambda: fast_queue.get_task(gone).status == TaskStatus.RUNNING)  # type: ignore[union-attr]
    del registry["gone"]
    gate.set()
    wait_until(finished(fast_queue, gone))
    task = fast_queue.get_task(gone)
    assert task is not None
    assert task.status == TaskStatus.FAILED
    assert "no handler registered" in (task.error_message or "")


# -- current_task ---------------------------------------------------------------


def test_current_task_inside_and_outside_handlers(
    fast_queue: TaskQueue, make_worker: MakeWorker
) -> None:
    seen: dict[str, Any] = {}

    def introspect(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        seen.update(
            id=ctx.task.id, payload=ctx.task.payload, cancelled=ctx.cancelled,
            remaining=ctx.remaining(), deadline=ctx.deadline,
        )  # fmt: skip
        ctx.check()  # neither timed out nor cancelled: no exception
        return "ok"

    assert current_task() is None
    make_worker({"intro": introspect}).start()
    tid = fast_queue.enqueue("i", "intro", {"k": "v"})
    wait_until(finished(fast_queue, tid))
    assert fast_queue.get_task(tid).result == "ok"  # type: ignore[union-attr]
    assert seen == {
        "id": tid, "payload": {"k": "v"}, "cancelled": False, "remaining": None, "deadline": None,
    }  # fmt: skip
    assert current_task() is None


# -- wake-up and polling ------------------------------------------------------------


def test_idle_worker_is_woken_by_in_process_enqueue(
    fast_queue: TaskQueue, make_worker: MakeWorker
) -> None:
    started: dict[int, float] = {}

    def note(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        started[ctx.task.id] = time.monotonic()
        return None

    make_worker({"note": note}, poll_interval=5.0).start()
    first = fast_queue.enqueue("first", "note")
    wait_until(finished(fast_queue, first))
    # Let the worker settle into its idle wait, which with poll_interval=5.0
    # lasts seconds unless it is woken (this sleep sets up the scenario; it
    # synchronises nothing).
    time.sleep(0.3)
    for _ in range(3):
        enqueued_at = time.monotonic()
        tid = fast_queue.enqueue("woken", "note")
        wait_until(lambda tid=tid: tid in started, timeout=10)  # type: ignore[misc]
        assert started[tid] - enqueued_at < 1.0


def test_task_enqueued_by_another_process_is_picked_up(
    db_path: str, fast_queue: TaskQueue, make_worker: MakeWorker
) -> None:
    done: list[int] = []

    def note(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        done.append(ctx.task.id)
        return payload

    make_worker({"remote": note}, poll_interval=0.05).start()
    proc = procs.start("enqueue", db=db_path, task_type="remote", n=3)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    ids = json.loads(out)
    for tid in ids:
        wait_until(finished(fast_queue, tid), timeout=10)
        assert fast_queue.get_task(tid).status == TaskStatus.COMPLETED  # type: ignore[union-attr]
    assert sorted(done) == sorted(ids)


# -- heartbeat ----------------------------------------------------------------------


def test_heartbeat_keeps_a_long_task_from_being_rescued(tmp_path: Path) -> None:
    """lease 0.5 s, handler 2 s: renewed leases, so no rescue and no second run,
    even with a second worker (another TaskQueue on the file) looking for work."""
    db = str(tmp_path / "hb.db")
    runs: list[str] = []
    lock = threading.Lock()

    def long(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        with lock:
            runs.append(threading.current_thread().name)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            time.sleep(0.02)
        return "done"

    with TaskQueue(db, lease_seconds=0.5) as q1, TaskQueue(db, lease_seconds=0.5) as q2:
        w1 = Worker(q1, {"long": long}, concurrency=1, name="hb1").start()
        tid = q1.enqueue("long", "long")
        wait_until(lambda: len(runs) == 1)
        w2 = Worker(q2, {"long": long}, concurrency=1, name="hb2").start()
        rescued = 0
        while not finished(q1, tid)():
            rescued += q2.rescue_expired()  # an operator's rescue finds nothing
            task = q2.get_task(tid)
            assert task is not None
            if task.status == TaskStatus.RUNNING:
                assert task.lease_expires_at is not None
            time.sleep(0.05)
        w1.stop(5)
        w2.stop(5)
        task = q1.get_task(tid)
    assert task is not None
    assert rescued == 0
    assert runs == ["hb1-1"]
    assert (task.status, task.result, task.attempts, task.retry_count) == (
        TaskStatus.COMPLETED,
        "done",
        1,
        0,
    )
    assert task.error_message is None
