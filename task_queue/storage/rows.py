"""Rows to Tasks, in one place for every backend.

Each backend selects the task columns in :data:`TASK_COLUMNS` order and
hands the row to :func:`task_from_row`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import TaskNotFoundError
from ..payload import decode
from ..task import Task, TaskPriority, TaskStatus, task_from_values

if TYPE_CHECKING:
    from .base import ClaimRequest, NewTask

#: The tasks table's columns in table order; rows map to Task by position.
TASK_COLUMNS = (
    "id", "name", "task_type", "payload", "priority", "status", "worker_id",
    "created_at", "scheduled_at", "started_at", "completed_at", "max_retries",
    "retry_count", "error_message", "result", "attempts", "run_at",
    "lease_expires_at", "claim_token", "timeout", "unique_key", "error_traceback",
    "owner_host", "owner_pid", "queue_name", "progress", "depends_on", "waiting_on",
    "has_dependents", "first_started_at", "meta", "concurrency_key",
)  # fmt: skip

# Dict lookups: calling the Enum classes costs several times more, on the
# claim path, once per task.
_PRIORITY = {p.value: p for p in TaskPriority}
_STATUS = {s.value: s for s in TaskStatus}


def task_from_row(row: Sequence[Any]) -> Task:
    """The Task for one row of TASK_COLUMNS."""
    (id_, name, task_type, payload, priority, status, worker_id, created_at, scheduled_at,
     started_at, completed_at, max_retries, retry_count, error_message, result, attempts,
     run_at, lease_expires_at, claim_token, timeout, unique_key, error_traceback, owner_host,
     owner_pid, queue_name, progress, depends_on, waiting_on, _has_dependents, first_started_at,
     meta, concurrency_key) = row  # fmt: skip
    # Task's fields in their order (task_from_values).
    return task_from_values((
        id_, name, task_type, decode(payload), _PRIORITY.get(priority, priority),
        _STATUS[status], worker_id, created_at, scheduled_at, started_at, completed_at,
        max_retries, retry_count, error_message, decode(result), attempts, run_at,
        lease_expires_at, claim_token, timeout, unique_key, error_traceback, owner_host,
        owner_pid, queue_name, decode(progress), tuple(decode(depends_on) or ()), waiting_on,
        first_started_at, decode(meta), concurrency_key,
    ))  # fmt: skip


#: What the claim returns of each row it takes: the rest of a claimed
#: task is known to the claimer (the claim it recorded, running, no result
#: or progress yet), and every column less is time saved per claimed task.
CLAIMED_COLUMNS = (
    "id", "name", "task_type", "payload", "priority", "created_at", "scheduled_at",
    "max_retries", "retry_count", "error_message", "attempts", "run_at", "timeout",
    "unique_key", "error_traceback", "queue_name", "depends_on", "first_started_at", "meta",
    "concurrency_key",
)  # fmt: skip


def claimed_from_row(
    row: Sequence[Any],
    *,
    worker_id: str,
    now: float,
    lease_expires_at: float,
    token: int,
    owner_host: str,
    owner_pid: int,
) -> Task:
    """The Task for one row of CLAIMED_COLUMNS, as the claim left it."""
    (id_, name, task_type, payload, priority, created_at, scheduled_at, max_retries,
     retry_count, error_message, attempts, run_at, timeout, unique_key, error_traceback,
     queue_name, depends_on, first_started_at, meta, concurrency_key) = row  # fmt: skip
    # Task's fields in their order (task_from_values): running under this
    # claim, no result or progress yet, nothing left to wait for.
    return task_from_values((
        id_, name, task_type, decode(payload), _PRIORITY.get(priority, priority),
        TaskStatus.RUNNING, worker_id, created_at, scheduled_at, now, None, max_retries,
        retry_count, error_message, None, attempts, run_at, lease_expires_at, token, timeout,
        unique_key, error_traceback, owner_host, owner_pid, queue_name, None,
        tuple(decode(depends_on) or ()) if depends_on else (), 0, first_started_at,
        decode(meta), concurrency_key,
    ))  # fmt: skip


def claim_order(tasks: list[Task]) -> list[Task]:
    """Tasks in the order they are claimed: highest priority, earliest due,
    lowest id (RETURNING hands rows back in no particular order)."""
    tasks.sort(key=lambda t: (-t.priority, t.run_at, t.id))
    return tasks


def claimed_tasks(rows: Sequence[Sequence[Any]], request: ClaimRequest, now: float) -> list[Task]:
    """The Tasks of a claim's rows (CLAIMED_COLUMNS), in claim order."""
    expires, owner = now + request.lease_seconds, request.owner

    def claimed(row: Sequence[Any]) -> Task:
        return claimed_from_row(
            row, worker_id=request.worker_id, now=now, lease_expires_at=expires,
            token=request.token, owner_host=owner.host, owner_pid=owner.pid,
        )  # fmt: skip

    return claim_order([claimed(r) for r in rows])


def dependency_state(
    found: Mapping[int, str], parents: list[int], now: float, index: int
) -> dict[str, Any]:
    """Status and counters of a new task that waits for ``parents``, from
    the parents' statuses (``found``: id -> status, read so that no parent
    can finish before the enqueue commits). TaskNotFoundError for a parent
    that does not exist."""
    missing = [p for p in parents if p not in found]
    if missing:
        raise TaskNotFoundError(
            f"task #{index} depends on task(s) that do not exist: {missing[:10]}"
        )
    state: dict[str, Any] = {"depends_on": json.dumps(parents)}
    doomed = [p for p in parents if found[p] in ("failed", "cancelled")]
    if doomed:
        why = f"cancelled: task {doomed[0]}, which it depends on, was {found[doomed[0]]}"
        state.update(status="cancelled", completed_at=now, error_message=why)
        return state
    unfinished = sum(1 for p in parents if found[p] != "completed")
    if unfinished:
        state.update(status="waiting", waiting_on=unfinished)
    return state


def insert_params(t: NewTask, now: float) -> dict[str, Any]:
    """The named parameters of both backends' ``insert_task`` for one new
    task, as a plain pending task (dependency_state() overrides the status
    and counters of one that waits)."""
    return {
        "name": t.name, "task_type": t.task_type, "payload": t.payload,
        "priority": t.priority, "now": now, "scheduled_at": t.scheduled_at,
        "max_retries": t.max_retries, "run_at": t.run_at, "timeout": t.timeout,
        "unique_key": t.unique_key, "queue_name": t.queue_name, "meta": t.meta,
        "concurrency_key": t.concurrency_key,
        "status": "pending", "waiting_on": 0, "depends_on": None, "completed_at": None,
        "error_message": None,
    }  # fmt: skip
