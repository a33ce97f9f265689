"""The storage boundary: domain operations, nothing SQL-shaped.

TaskQueue and Worker talk only to this interface, so another backend (a
PostgreSQL one with ``FOR UPDATE SKIP LOCKED`` claims and LISTEN/NOTIFY
wake-ups) can be added without touching either. Everything here validates
nothing: TaskQueue has already checked and encoded its arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from ..task import Task


@dataclasses.dataclass(frozen=True, slots=True)
class NewTask:
    """An encoded, validated task ready to insert."""

    name: str
    task_type: str
    payload: str | None
    priority: int
    scheduled_at: float | None
    run_at: float
    max_retries: int
    timeout: float | None
    unique_key: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """The outcome of a failed attempt, as the storage records it."""

    error: str
    traceback: str | None
    #: Seconds to wait before the next attempt, given the retries used so far.
    backoff: Callable[[int], float]
    #: Overrides the stored max_retries (a handler's own setting).
    max_retries: int | None = None


#: (task id, claim token): proof that the caller holds a claim.
Claim = tuple[int, int]


class Storage(Protocol):
    def enqueue(self, tasks: Sequence[NewTask], now: float) -> list[int]:
        """Insert all or none; for a live unique_key return the existing id."""
        ...

    def complete_and_claim(
        self,
        completions: Sequence[tuple[Claim, str | None]],
        now: float,
        *,
        worker_id: str,
        limit: int,
        task_types: Sequence[str] | None,
        lease_expires_at: float,
        token: int,
        rescue: bool,
    ) -> tuple[set[int], list[Task]]:
        """The claim: atomically take up to ``limit`` due tasks (after
        rescuing expired leases, if ``rescue``), recording this process
        (host and PID) as their owner. ``completions`` (possibly none) are
        written first in the same transaction, as complete_many() would: a
        Worker's steady state, one commit per batch instead of two.
        Returns (ids recorded, tasks claimed)."""
        ...

    def complete(self, claim: Claim, result: str | None, now: float) -> bool:
        """Record success if ``claim`` still holds; False if fenced out."""
        ...

    def fail(self, claim: Claim, failure: Failure, now: float) -> bool:
        """Retry or dead-letter if ``claim`` still holds; False if fenced out."""
        ...

    def complete_many(self, items: Sequence[tuple[Claim, str | None]], now: float) -> set[int]:
        """complete() for many claims at once; returns the ids recorded."""
        ...

    def release(self, claims: Sequence[Claim]) -> list[int]:
        """Give claims back unfinished, the attempt not counted; ids released."""
        ...

    def renew(self, claims: Sequence[Claim], lease_expires_at: float) -> set[int]:
        """Extend leases still held; return the ids renewed."""
        ...

    def rescue(self, now: float, *, dead_owners: bool = True) -> int:
        """Expired leases back to pending (or failed); how many.

        With ``dead_owners``, claims held by processes on this host that no
        longer exist count as expired too.
        """
        ...

    def cancel(self, task_id: int, now: float) -> bool: ...

    def retry(self, task_id: int, now: float) -> bool: ...

    def get(self, task_id: int) -> Task | None: ...

    def list_by_status(self, status: str, limit: int) -> list[Task]: ...

    def counts(self) -> dict[str, int]: ...

    def next_due(self, now: float) -> float | None:
        """When the earliest not-yet-due pending task becomes due."""
        ...

    def due_by_type(self, now: float) -> dict[str, int]: ...

    def purge(self, statuses: Sequence[str], before: float) -> int: ...

    def data_version(self) -> int:
        """A number that changes whenever another connection commits."""
        ...

    def close(self) -> None: ...
