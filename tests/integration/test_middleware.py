"""Middleware: metadata at enqueue, a wrapper around each attempt, events;
one that raises changes nothing else (issue 11, section 1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from task_queue import Event, EventKind, Middleware, RetryPolicy, Task, TaskQueue, Worker
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
