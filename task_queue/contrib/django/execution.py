"""Running a Django task in a Worker thread: the handler each registered
Task gets.

It sends ``task_started`` (the claim is committed: the task is RUNNING in
the database), calls the function with the stored args and kwargs (and a
``TaskContext`` first when ``takes_context``), and returns its value made
JSON the way Django does (``normalize_json``): the Worker stores it, or
records the exception as a failed attempt (its class path and traceback
become the attempt's ``TaskError``). ``task_finished`` comes later, from the
queue's hook once the outcome is committed (:mod:`.signals`).

``async def`` tasks run to completion in the worker thread through
``async_to_sync`` (``Task.call``), one event loop per attempt: each holds
its thread while it runs, as a sync task does.

Django database connections opened by a task are closed around each
attempt when unusable or past CONN_MAX_AGE (``close_old_connections``), as
Django does around each request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import close_old_connections

from ...context import current_task
from ...registry import HandlerRegistry
from ...task import AttemptRecord
from ...task import Task as QueuedTask
from . import results
from .compat import TaskContext, normalize_json, task_started
from .senders import sender_of


def handlers(
    tasks: dict[str, Any], history: Callable[[int], list[AttemptRecord]]
) -> HandlerRegistry:
    """A HandlerRegistry running each of ``tasks`` (module path -> Task);
    ``history(task_id)`` reads a task's attempts (for retried ones)."""
    registry = HandlerRegistry()
    for path, template in tasks.items():
        registry[path] = _handler(template, history)
    return registry


def _handler(template: Any, history: Callable[[int], list[AttemptRecord]]) -> Callable[[Any], Any]:
    def run(payload: Any) -> Any:
        ctx = current_task()
        if ctx is None:
            raise RuntimeError("a Django task's handler runs inside a task_queue Worker")
        claimed = ctx.task
        alias = results.alias_of(claimed) or template.backend
        result = results.build(claimed, _attempts(claimed, history), template, alias)
        close_old_connections()
        try:
            task_started.send(sender=sender_of(alias), task_result=result)
            args = list(payload.get("args", []))
            kwargs = dict(payload.get("kwargs", {}))
            if template.takes_context:
                value = template.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = template.call(*args, **kwargs)
            return normalize_json(value)
        finally:
            close_old_connections()

    run.__name__ = run.__qualname__ = f"run_{template.name}"
    return run


def _attempts(
    claimed: QueuedTask, history: Callable[[int], list[AttemptRecord]]
) -> list[AttemptRecord]:
    if claimed.attempts <= 1:
        # The first attempt: its history is this claim (no read needed).
        return [AttemptRecord(1, claimed.worker_id, claimed.started_at, None, "running")]
    return history(claimed.id)
