"""``--burst``: when a running Worker has nothing left to do.

Used by ``task-queue worker --burst`` and Django's ``task_queue_worker
--burst``: a predicate for ``Worker.run(until=...)``, checked every poll
interval: done once the worker holds nothing and no task it could run is
due, for :data:`BURST_CHECKS` checks in a row.
Not waited for: tasks scheduled for later, retries whose backoff has not
passed, tasks of types it has no handler for, paused queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..queue import TaskQueue

if TYPE_CHECKING:
    from .worker import Worker

#: Consecutive idle checks before stopping: a retry recorded just after one
#: check is seen by the next.
BURST_CHECKS = 3


class BurstCheck:
    """Called once per poll interval while ``worker`` runs; True when it
    should stop."""

    def __init__(self, worker: Worker, queue: TaskQueue) -> None:
        self._worker = worker
        self._queue = queue
        self._quiet = 0

    def __call__(self) -> bool:
        """One check; True once nothing was due and nothing ran for
        :data:`BURST_CHECKS` checks in a row."""
        if self._worker.in_flight or self._due():
            self._quiet = 0
            return False
        self._quiet += 1
        return self._quiet >= BURST_CHECKS

    def _due(self) -> bool:
        served = self._worker.options.queues
        names = list(self._queue.queue_stats()) if served is None else list(served)
        paused = self._queue.paused()
        active = [name for name in names if name not in paused]
        if not active:
            return False
        due = self._queue.pending_by_type(queues=active)
        return any(task_type in self._worker.handlers for task_type in due)
