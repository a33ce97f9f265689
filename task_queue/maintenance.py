"""Maintenance services: the periodic chores that keep a queue healthy.

Each service is one object with ``run_once(now) -> next_at``: do the chore
once, return when it wants to run again. ``now`` and ``next_at`` are on the
monotonic clock (intervals inside one process must not jump with the wall
clock); what a chore compares with stored times uses the queue's clock.
A Worker's dispatcher runs its services in its :meth:`step`; a hand-driven
``dequeue()`` loop runs the queue's rescue service the same way. Later
chores (periodic schedules, retention) are services too.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from .clock import JumpDetector
from .events import Event, EventKind
from .logfields import RESCUE_ERROR_PREFIX, task_fields
from .owner import host_id, pid_alive
from .retry import NO_BACKOFF, decide
from .storage.base import Owner, Rescue

if TYPE_CHECKING:
    from .queue import TaskQueue

LOGGER = logging.getLogger(__name__)


class MaintenanceService(Protocol):
    """A chore run from time to time."""

    def run_once(self, now: float) -> float:
        """Do the chore once; return the monotonic time to run it again."""
        ...


class Rescuer:
    """Gives lost claims up: running tasks whose lease expired (their worker
    died, hung, or was frozen past it) or whose owner process on this host
    is gone. A rescued task is pending again at once, the lost attempt
    counted as a retry, or failed for good once its retries are used up
    (so a task that kills its worker every time cannot loop forever).

    The decision is :func:`task_queue.retry.decide` on the task as found,
    with the retry budget stored on the task; the storage records it only
    if the claim is still the one found, with the same lease (a renewal
    since then wins)."""

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = queue
        self._jumps = JumpDetector(queue.clock)
        self._hold_until = -math.inf  # monotonic

    def rescue(self) -> int:
        """Rescue what is lost now; returns how many tasks were rescued."""
        queue = self._queue
        if self._held_off():
            return 0
        storage = queue.storage
        now = queue.clock.time()
        host = host_id()
        me = os.getpid()
        dead = [
            Owner(host, pid)
            for pid in storage.claim_owners(host)
            if pid != me and not pid_alive(pid)
        ]
        found = storage.expired(now, dead_owners=dead)
        if not found:
            return 0
        rescues = [
            Rescue(
                claim=task.claim,
                lease_expires_at=task.lease_expires_at,
                retry_in=decide(task, NO_BACKOFF),
                error=f"{RESCUE_ERROR_PREFIX} worker {task.worker_id or '?'} died or stopped "
                "renewing its lease",
            )
            for task in found
        ]
        applied = storage.rescue(rescues, now)
        if not applied:
            return 0
        by_id = {task.id: task for task in found}
        gone = set(dead)
        for task_id, status in applied:
            task = by_id[task_id]
            if Owner(task.owner_host or "", task.owner_pid or 0) in gone:
                why = f"its process {task.owner_pid} on this host is gone"
            else:
                expired = now - (task.lease_expires_at or now)
                why = f"its lease ran out {expired:.1f}s ago without renewal"
            LOGGER.warning(
                "rescued task %d from worker %s: %s; %s", task_id, task.worker_id or "?", why,
                "pending again" if status == "pending" else "failed for good (no retries left)",
                extra=task_fields(task, status=status),
            )  # fmt: skip
        errors = {r.claim.task_id: r.error for r in rescues}
        queue.hooks.emit_lazy(
            lambda: [
                Event(
                    EventKind.RESCUED,
                    task_id,
                    task=by_id.get(task_id),
                    at=now,
                    error=errors.get(task_id),
                    status=status,
                )
                for task_id, status in applied
            ]
        )
        queue.wake_listeners()
        return len(applied)

    def _held_off(self) -> bool:
        """After a forward jump of the wall clock every live lease looks
        expired: hold off for half a lease. Every live holder renews within
        a heartbeat interval (lease / 3 by default) of the jump, and a
        Worker renews at once when it notices the jump itself."""
        jump = self._jumps.jumped()
        mono = self._queue.clock.monotonic()
        if jump > 0:
            hold = self._queue.lease_seconds / 2
            self._hold_until = mono + hold
            LOGGER.warning(
                "the wall clock jumped %.1fs forward: rescue waits %.1fs for live workers "
                "to renew their leases",
                jump,
                hold,
            )
        return mono < self._hold_until


class RescueService:
    """Runs the queue's rescue every ``interval`` seconds."""

    def __init__(self, queue: TaskQueue, interval: float) -> None:
        self._queue = queue
        self.interval = interval
        #: Tasks rescued by the last run.
        self.last_rescued = 0

    def run_once(self, now: float) -> float:
        self.last_rescued = self._queue.rescue_expired()
        return now + self.interval


class UnhandledReport:
    """Warns, while a worker is idle, about due tasks of types it has no
    handler for (they wait for a worker that has one: a deployment that
    forgot a handler shows here, and in ``pending_by_type()``)."""

    def __init__(
        self,
        queue: TaskQueue,
        handled: Callable[[], Collection[str]],
        idle: Callable[[], bool],
        interval: float,
        who: str,
        queues: Sequence[str] | None = None,
    ) -> None:
        self._queue = queue
        self._queues = queues
        self._handled = handled
        self._idle = idle
        self.interval = interval
        self._who = who

    def run_once(self, now: float) -> float:
        if not self._idle():
            return now + min(self.interval, 1.0)  # look again soon, once idle
        handled = self._handled()
        due = self._queue.pending_by_type(queues=self._queues)
        missing = {t: n for t, n in due.items() if t not in handled}
        if missing:
            LOGGER.warning(
                "%s: due tasks wait for handlers this worker does not have: %s",
                self._who,
                ", ".join(f"{t!r}: {n}" for t, n in sorted(missing.items())),
            )
        return now + self.interval
