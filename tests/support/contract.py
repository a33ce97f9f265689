"""Helpers of the storage contract suite (``tests/storage/test_contract_*.py``).

They build the contract's arguments only: rows through ``TaskSpec.encode``
(the way TaskQueue builds them, so every row is one the queue could send),
claim requests with explicit tokens, and claims driven through the
``Storage`` protocol. Nothing here knows which backend runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from task_queue.spec import TaskSpec
from task_queue.storage.base import ClaimRequest, FailureRecord, NewTask, Owner, Rescue, Storage
from task_queue.task import Task

#: The suite's "now": any fixed epoch works, the storage takes time as arguments.
T0 = 1_700_000_000.0
LEASE = 30.0
OWNER = Owner("host-a", 1001)

#: Opens one more storage object on one database.
Opener = Callable[[], Storage]


class Backend:
    """One backend under test: its first database, fresh ones on demand,
    and every storage object opened, closed at teardown."""

    def __init__(self, name: str, new_database: Callable[[], Opener]) -> None:
        self.name = name
        self._new_database = new_database
        self._opened: list[Storage] = []
        self._default = self.fresh()

    def fresh(self) -> Opener:
        """A new empty database; returns its opener (objects are closed at teardown)."""
        raw = self._new_database()

        def open_storage() -> Storage:
            storage = raw()
            self._opened.append(storage)
            return storage

        return open_storage

    def open(self) -> Storage:
        """Another storage object on the test's database."""
        return self._default()

    def close(self) -> None:
        for storage in self._opened:
            # Tests close some themselves; closing twice is allowed, and a
            # failure here must not hide the test's own result.
            with contextlib.suppress(Exception):
                storage.close()


def new_task(now: float = T0, **fields: Any) -> NewTask:
    """One encoded row; ``name`` and ``task_type`` default to "t" and "job"."""
    fields.setdefault("name", "t")
    fields.setdefault("task_type", "job")
    return TaskSpec(**fields).encode(now)


def enqueue(storage: Storage, now: float = T0, **fields: Any) -> int:
    """Insert one task; its id (asserting it was created)."""
    [(task_id, created)] = storage.enqueue([new_task(now, **fields)], now)
    assert created
    return task_id


def claim_request(
    token: int = 1,
    *,
    limit: int = 100,
    task_types: Sequence[str] | None = None,
    queues: Sequence[str] | None = None,
    lease_seconds: float = LEASE,
    worker_id: str = "worker-1",
    owner: Owner = OWNER,
) -> ClaimRequest:
    return ClaimRequest(
        worker_id=worker_id,
        owner=owner,
        limit=limit,
        task_types=task_types,
        token=token,
        lease_seconds=lease_seconds,
        queues=queues,
    )


def claim(storage: Storage, now: float = T0, token: int = 1, **kwargs: Any) -> list[Task]:
    """Claim without completions; the tasks taken."""
    recorded, tasks = storage.claim(claim_request(token, **kwargs), now)
    assert recorded == set()
    return tasks


def claim_one(storage: Storage, now: float = T0, token: int = 1, **kwargs: Any) -> Task:
    """Claim exactly one task (asserting there was one to take)."""
    tasks = claim(storage, now, token, limit=1, **kwargs)
    assert len(tasks) == 1, f"expected one task to claim, got {tasks}"
    return tasks[0]


def retry_failure(retry_in: float = 5.0, error: str = "boom") -> FailureRecord:
    return FailureRecord(error=error, traceback="Traceback: boom", retry_in=retry_in)


def final_failure(error: str = "boom") -> FailureRecord:
    return FailureRecord(error=error, traceback="Traceback: boom", retry_in=None)


def rescue_of(task: Task, retry_in: float | None = 0.0, error: str = "lost") -> Rescue:
    """The rescue a rescuer decides from ``task`` as it found it."""
    return Rescue(
        claim=task.claim, lease_expires_at=task.lease_expires_at, retry_in=retry_in, error=error
    )


def get(storage: Storage, task_id: int) -> Task:
    task = storage.get(task_id)
    assert task is not None, f"task {task_id} is gone"
    return task


def status(storage: Storage, task_id: int) -> str:
    return get(storage, task_id).status.value
