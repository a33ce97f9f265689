"""The fields of log lines about tasks, passed as ``extra``.

Every line about one task carries ``task_id``, ``task_type``, ``queue`` and
``attempt`` (the attempt number: attempts started, this one included) as
attributes of its LogRecord, so a JSON formatter picks them up without
parsing the message; a line about several tasks carries ``task_ids``. The
messages themselves stay readable text (and never contain raw newlines
from task names or errors: those are shown with repr()).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .task import Task

#: How the error of a rescued attempt begins (maintenance.Rescuer).
RESCUE_ERROR_PREFIX = "claim lost:"


def task_fields(task: Task, **more: Any) -> dict[str, Any]:
    """``extra`` for a line about ``task`` (plus ``more`` fields)."""
    return {
        "task_id": task.id,
        "task_type": task.task_type,
        "queue": task.queue_name,
        "attempt": task.attempts,
        **more,
    }


def tasks_fields(tasks: Iterable[Task]) -> dict[str, Any]:
    """``extra`` for a line about several tasks: their ids."""
    return {"task_ids": sorted(task.id for task in tasks)}


def new_task_fields(task_id: int, task_type: str, queue: str) -> dict[str, Any]:
    """``extra`` for a line about a task just enqueued (no attempt yet)."""
    return {"task_id": task_id, "task_type": task_type, "queue": queue, "attempt": 0}


def why_not_held(task: Task, stored: Task | None) -> str:
    """Why a claim on ``task`` is gone, from the task as stored now."""
    if stored is None:
        return "the task no longer exists"
    status = stored.status.value
    if status == "cancelled":
        return "it was cancelled"
    if stored.attempts != task.attempts:
        return f"it was rescued and claimed again: now {status}, attempt {stored.attempts}"
    if (stored.error_message or "").startswith(RESCUE_ERROR_PREFIX):
        return f"it was rescued after its lease ran out: now {status}"
    return f"it is {status} now"
