"""A stored task as Django's ``TaskResult``, every field from the queue.

Statuses (Django has four):

==============================  ===========
task_queue                      Django
==============================  ===========
pending (new, or retrying)      READY: "ready to be executed again"
waiting (on other tasks)        READY
running (claimed)               RUNNING
completed                       SUCCESSFUL
failed (for good)               FAILED
cancelled                       FAILED: "unable to start" (or to finish)
==============================  ===========

Fields: ``enqueued_at`` the enqueue, ``started_at`` the first attempt's
start, ``last_attempted_at`` the latest attempt's, ``finished_at`` when it
reached SUCCESSFUL or FAILED; ``worker_ids`` one per attempt (so
``attempts`` counts them, a lost one included); ``errors`` one
``TaskError`` per failed attempt, with the exception's class path and
traceback (an attempt lost with its worker names :class:`AttemptLost`, a
cancelled running one ``task_queue.errors.TaskCancelled``). A task
cancelled before it ran is FAILED with neither. Times are aware (UTC) with
USE_TZ, naive local time without, as ``timezone.now()`` gives them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from ...task import AttemptRecord
from ...task import Task as QueuedTask
from .compat import TaskError, TaskResult, TaskResultStatus

#: Where the backend keeps its marker in a task's ``meta``: which TASKS
#: alias enqueued it (tasks without it are not Django tasks).
META_KEY = "django"

_STATUS = {
    "pending": TaskResultStatus.READY,
    "waiting": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "completed": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
}
_FAILED_OUTCOMES = ("retried", "failed", "lost", "cancelled")
_NO_CLASS = {
    "lost": "task_queue.contrib.django.errors.AttemptLost",
    "cancelled": "task_queue.errors.TaskCancelled",
}


def alias_of(task: QueuedTask) -> str | None:
    """The TASKS alias that enqueued ``task``; None if it is not a Django task."""
    mark = (task.meta or {}).get(META_KEY)
    alias = mark.get("backend") if isinstance(mark, dict) else None
    return alias if isinstance(alias, str) else None


def status_of(task: QueuedTask) -> Any:
    """Django's TaskResultStatus for the task's status (table above)."""
    return _STATUS[task.status.value]


def when(timestamp: float | None) -> dt.datetime | None:
    """Epoch seconds as Django shows times: aware UTC with USE_TZ, else naive local."""
    if timestamp is None:
        return None
    if settings.USE_TZ:
        return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)
    return dt.datetime.fromtimestamp(timestamp)


def restored(template: Any, **fields: Any) -> Any:
    """A copy of the Django Task ``template`` with ``fields`` changed, made
    without validation: a stored task's result must be readable even after
    the settings changed (its queue no longer in QUEUES...). Unlike
    dataclasses.replace() and copy(), this neither validates nor imports."""
    made = object.__new__(type(template))
    for field in dataclasses.fields(template):
        value = fields[field.name] if field.name in fields else getattr(template, field.name)
        object.__setattr__(made, field.name, value)
    return made


def django_task(task: QueuedTask, template: Any, alias: str) -> Any:
    """The Django Task of a stored task: ``template``'s function, with the
    priority, queue, run_after and backend it was enqueued with."""
    return restored(
        template,
        priority=int(task.priority),
        queue_name=task.queue_name,
        run_after=when(task.scheduled_at),
        backend=alias,
    )


def build(task: QueuedTask, history: Sequence[AttemptRecord], template: Any, alias: str) -> Any:
    """The TaskResult of ``task`` as stored, given its attempts (``queue.attempts()``)."""
    payload = task.payload if isinstance(task.payload, dict) else {}
    status = status_of(task)
    starts = [a.started_at for a in history if a.started_at is not None]
    result = TaskResult(
        task=django_task(task, template, alias),
        id=str(task.id),
        status=status,
        enqueued_at=when(task.created_at),
        started_at=when(task.first_started_at),
        last_attempted_at=when(max(starts) if starts else task.started_at),
        finished_at=when(task.completed_at) if task.status.finished else None,
        args=list(payload.get("args", [])),
        kwargs=dict(payload.get("kwargs", {})),
        backend=alias,
        errors=[error(a) for a in history if a.outcome in _FAILED_OUTCOMES],
        worker_ids=[a.worker_id or "" for a in history],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", task.result)
    return result


def error(attempt: AttemptRecord) -> Any:
    """The TaskError of one failed attempt."""
    path = attempt.error_class or _NO_CLASS.get(attempt.outcome, "builtins.Exception")
    return TaskError(
        exception_class_path=path, traceback=attempt.traceback or attempt.error or attempt.outcome
    )
