"""Middleware: metadata at enqueue, a wrapper around each attempt, events;
one that raises changes nothing else (issue 11, section 1)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from support import wait_until

from task_queue import (
    Event,
    EventKind,
    Middleware,
    PayloadError,
    RetryPolicy,
    Task,
    TaskQueue,
    Worker,
    current_task,
)
from task_queue.spec import TaskSpec


class Recording(Middleware):
    def __init__(self) -> None:
        self.events: list[tuple[EventKind, int]] = []
        self.around: list[tuple[str, int]] = []

    def on_event(self, event: Event) -> None:
        self.events.append((event.kind, event.task_id))

    def before_enqueue(self, spec: TaskSpec) -> Mapping[str, Any] | None:
        return {"traceparent": f"00-{spec.name}"}

    def run_attempt(self, task: Task, run: Callable[[], Any]) -> Any:
        self.around.append(("before", task.id))
        try:
            return run()
        finally:
            self.around.append(("after", task.id))


def test_a_middleware_sees_enqueues_attempts_and_outcomes(db_path: str) -> None:
    mw = Recording()
    with TaskQueue(db_path, hooks=[mw]) as queue:
        task_id = queue.enqueue("traced", "t")
        assert queue.get_task(task_id).meta == {"traceparent": "00-traced"}  # type: ignore[union-attr]
        with Worker(queue, {"t": lambda p: "ok"}, concurrency=1):
            queue.wait(task_id, timeout=10)
    assert mw.around == [("before", task_id), ("after", task_id)]
    kinds = [k for k, i in mw.events if i == task_id]
    assert kinds[:3] == [EventKind.ENQUEUED, EventKind.CLAIMED, EventKind.STARTED]
    assert EventKind.COMPLETED in kinds


class Broken(Middleware):
    def __init__(self, where: str) -> None:
        self.where = where

    def on_event(self, event: Event) -> None:
        if self.where == "event":
            raise RuntimeError("hook bug")

    def before_enqueue(self, spec: TaskSpec) -> Mapping[str, Any] | None:
        if self.where == "enqueue":
            raise RuntimeError("hook bug")
        return None

    def run_attempt(self, task: Task, run: Callable[[], Any]) -> Any:
        if self.where == "before":
            raise RuntimeError("hook bug")
        result = run()
        if self.where == "after":
            raise RuntimeError("hook bug")
        return result


@pytest.mark.parametrize("where", ["event", "enqueue", "before", "after"])
def test_a_middleware_that_raises_changes_no_outcome(
    db_path: str, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    with TaskQueue(db_path, hooks=[Broken(where)], retry_policy=RetryPolicy(base=0)) as queue:
        ok = queue.enqueue("ok", "ok")
        bad = queue.enqueue("bad", "bad", max_retries=0)

        def fail(payload: Any) -> None:
            raise ValueError("the handler's own error")

        with Worker(queue, {"ok": lambda p: "fine", "bad": fail}, concurrency=1):
            assert queue.result(ok, timeout=10) == "fine"
            task = queue.wait(bad, timeout=10)
    assert task.status == "failed" and "the handler's own error" in (task.error_message or "")
    assert "hook bug" in caplog.text


def test_a_plain_function_is_a_hook_too(db_path: str) -> None:
    seen: list[EventKind] = []
    with TaskQueue(db_path) as queue:
        queue.add_hook(lambda event: seen.append(event.kind))
        queue.enqueue("a", "t")
    assert seen == [EventKind.ENQUEUED]
    with pytest.raises(TypeError, match="Middleware or callable"):
        TaskQueue(db_path, hooks=[42])  # type: ignore[list-item]


# -- around_enqueue: a wrapper around each enqueue call (issue 11, section 3) --


class AroundEnqueue(Middleware):
    """Records what happens inside its wrapper, in order."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.inside = False

    def around_enqueue(
        self, specs: Sequence[TaskSpec], enqueue: Callable[[], list[int]]
    ) -> list[int]:
        self.log.append(("before", [s.name for s in specs]))
        self.inside = True
        try:
            ids = enqueue()
        finally:
            self.inside = False
        self.log.append(("after", ids))
        return ids

    def before_enqueue(self, spec: TaskSpec) -> Mapping[str, Any] | None:
        self.log.append(("meta", spec.name, self.inside))
        return {"seen": self.inside}

    def on_event(self, event: Event) -> None:
        if event.kind is EventKind.ENQUEUED:
            self.log.append(("enqueued", event.task_id, self.inside))


def test_around_enqueue_wraps_the_metadata_the_commit_and_the_events(db_path: str) -> None:
    mw = AroundEnqueue()
    with TaskQueue(db_path, hooks=[mw]) as queue:
        one = queue.enqueue("one", "t")
        a, b = queue.enqueue_many(
            [{"name": "a", "task_type": "t"}, {"name": "b", "task_type": "t"}]
        )
        assert queue.get_task(one).meta == {"seen": True}  # type: ignore[union-attr]
    assert mw.log == [
        ("before", ["one"]), ("meta", "one", True), ("enqueued", one, True), ("after", [one]),
        ("before", ["a", "b"]), ("meta", "a", True), ("meta", "b", True),
        ("enqueued", a, True), ("enqueued", b, True), ("after", [a, b]),
    ]  # fmt: skip


def test_around_enqueue_sees_the_enqueue_error(db_path: str) -> None:
    seen: list[BaseException] = []

    class Watch(Middleware):
        def around_enqueue(self, specs, enqueue):
            try:
                return enqueue()
            except Exception as exc:
                seen.append(exc)
                raise

    with TaskQueue(db_path, hooks=[Watch()]) as queue:
        with pytest.raises(PayloadError):
            queue.enqueue("bad", "t", {1, 2})
        assert queue.get_queue_stats()["pending"] == 0
    assert len(seen) == 1 and isinstance(seen[0], PayloadError)


class BadAround(Middleware):
    def __init__(self, how: str) -> None:
        self.how = how

    def around_enqueue(self, specs, enqueue):
        if self.how == "before":
            raise RuntimeError("hook bug")
        if self.how == "skip":
            return [12345]  # never calls enqueue()
        if self.how == "twice":
            enqueue()
            return enqueue()
        if self.how == "swallow":
            with contextlib.suppress(Exception):
                enqueue()
            return [12345]
        ids = enqueue()
        if self.how == "after":
            raise RuntimeError("hook bug")
        return [i + 1000 for i in ids]  # "lie": the caller gets the real ids


@pytest.mark.parametrize("how", ["before", "after", "skip", "twice", "lie"])
def test_an_enqueue_wrapper_that_misbehaves_changes_nothing(
    db_path: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    with TaskQueue(db_path, hooks=[BadAround(how)]) as queue:
        task_id = queue.enqueue("x", "t")
        assert queue.get_task(task_id) is not None
        assert queue.get_queue_stats()["pending"] == 1  # exactly once
    if how in ("before", "after"):
        assert "raised around enqueue" in caplog.text
    if how == "skip":
        assert "did not call enqueue()" in caplog.text


def test_an_enqueue_error_swallowed_by_a_wrapper_still_reaches_the_caller(db_path: str) -> None:
    with TaskQueue(db_path, hooks=[BadAround("swallow")]) as queue, pytest.raises(PayloadError):
        queue.enqueue("bad", "t", {1, 2})


def test_an_interrupt_in_a_wrapper_after_the_commit_carries_the_ids(db_path: str) -> None:
    class Interrupted(Middleware):
        def around_enqueue(self, specs, enqueue):
            enqueue()
            raise KeyboardInterrupt

    with TaskQueue(db_path, hooks=[Interrupted()]) as queue:
        with pytest.raises(KeyboardInterrupt) as info:
            queue.enqueue("x", "t")
        [task_id] = info.value.task_ids  # type: ignore[attr-defined]
        assert queue.get_task(task_id) is not None


# -- what the events carry for metrics and tracing -----------------------------


def test_events_carry_the_spec_durations_and_error_class(db_path: str) -> None:
    events: list[Event] = []
    policy = RetryPolicy(base=0)
    with TaskQueue(db_path, hooks=[lambda e: events.append(e)], retry_policy=policy) as queue:
        ok = queue.enqueue("ok", "ok", queue_name="fast")
        flaky = queue.enqueue("flaky", "flaky", max_retries=1)
        slow = queue.enqueue("slow", "slow", max_retries=0, timeout=0.1)
        attempts: list[int] = []

        def flaky_handler(payload: Any) -> None:
            attempts.append(1)
            raise ValueError("boom")

        def slow_handler(payload: Any) -> None:
            while True:
                current_task().check()  # type: ignore[union-attr]
                time.sleep(0.01)

        handlers = {"ok": lambda p: "fine", "flaky": flaky_handler, "slow": slow_handler}
        with Worker(queue, handlers, concurrency=2):
            for task_id in (ok, flaky, slow):
                queue.wait(task_id, timeout=10)

    def of(kind: EventKind, task_id: int) -> list[Event]:
        return [e for e in events if e.kind is kind and e.task_id == task_id]

    [enqueued] = of(EventKind.ENQUEUED, ok)
    assert enqueued.spec is not None
    assert (enqueued.spec.task_type, enqueued.spec.queue_name) == ("ok", "fast")
    [completed] = of(EventKind.COMPLETED, ok)
    assert completed.duration is not None and completed.duration >= 0
    [retry] = of(EventKind.RETRY_SCHEDULED, flaky)
    [dead] = of(EventKind.DEAD_LETTERED, flaky)
    for e in (retry, dead, *of(EventKind.FAILED, flaky)):
        assert e.duration is not None and e.error_class == "builtins.ValueError"
    [timed_out] = of(EventKind.DEAD_LETTERED, slow)
    assert timed_out.error_class == "task_queue.errors.TaskTimeout"
    assert timed_out.duration is not None and timed_out.duration >= 0.05  # ~ the timeout


def test_a_cancelled_running_attempt_loses_its_lease_with_status_cancelled(db_path: str) -> None:
    events: list[Event] = []
    started = threading.Event()

    def wait_for_cancel(payload: Any) -> None:
        started.set()
        ctx = current_task()
        assert ctx is not None
        ctx.wait(10)

    with TaskQueue(db_path, hooks=[lambda e: events.append(e)], lease_seconds=0.3) as queue:
        task_id = queue.enqueue("long", "long")
        with Worker(queue, {"long": wait_for_cancel}, concurrency=1):
            assert started.wait(10)
            assert queue.cancel_task(task_id)
            wait_until(lambda: any(e.kind is EventKind.LEASE_LOST for e in events))
    [lost] = [e for e in events if e.kind is EventKind.LEASE_LOST]
    assert lost.status == "cancelled" and lost.task is not None
