"""Writes a Worker's task outcomes, in batches, from a thread of its own.

Executors hand an outcome over and go on to the next task at once. This
thread writes everything handed over since its last write in one call: all
completions in one statement, each failure (rare) on its own. While that
call waits for its commit, new outcomes pile up for the next one, so the
batch grows exactly as fast as the load does and adds no delay when idle.

Nothing is acknowledged to anyone before it is committed. When the write
fails for the storage's own reasons (disk full, database busy past the
budget), the task is not at fault: the outcomes are kept, the claims stay
renewed by the heartbeat, and the write is retried with backoff until the
fault clears.

The dispatcher also borrows the waiting completions (:meth:`lend`) to write
them in the same transaction as its next claim: one commit instead of two
per batch of short tasks.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from .errors import StorageError
from .queue import TaskQueue
from .storage.base import Claim, Failure

LOGGER = logging.getLogger("task_queue.worker")


@dataclasses.dataclass(eq=False)
class Outcome:
    claim: Claim
    #: Encoded JSON result of a completion; None for a failure.
    result: str | None = None
    #: Set for a failed attempt.
    failure: Failure | None = None


class OutcomeRecorder:
    def __init__(
        self,
        queue: TaskQueue,
        name: str,
        on_failure_recorded: Callable[[], None],
        max_backoff: float = 5.0,
    ) -> None:
        self._queue = queue
        self._on_failure_recorded = on_failure_recorded
        self._max_backoff = max_backoff
        self._cond = threading.Condition()
        self._todo: list[Outcome] = []
        self._writing: list[Outcome] = []
        # Completions borrowed by the dispatcher, being written with a claim.
        self._lent: list[Outcome] = []
        self._closing = False
        self._gave_up = False
        self._thread = threading.Thread(target=self._loop, name=f"{name}-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, outcome: Outcome) -> None:
        with self._cond:
            self._todo.append(outcome)
            if len(self._todo) == 1:
                self._cond.notify()

    def held(self) -> list[Claim]:
        """Claims whose outcome is not committed yet (the heartbeat keeps them)."""
        with self._cond:
            return [o.claim for o in self._todo + self._writing + self._lent]

    def lend(self) -> list[Outcome]:
        """Take the waiting completions, to be written by the caller; then
        :meth:`settle` them, or :meth:`give_back` if the write failed."""
        with self._cond:
            if self._closing or not any(o.failure is None for o in self._todo):
                return []
            lent = [o for o in self._todo if o.failure is None]
            self._todo = [o for o in self._todo if o.failure is not None]
            self._lent.extend(lent)
            return lent

    def settle(self, lent: list[Outcome], recorded: set[int]) -> None:
        _warn_fenced(lent, recorded)
        self._drop_lent(lent, back=False)

    def give_back(self, lent: list[Outcome]) -> None:
        self._drop_lent(lent, back=True)

    def _drop_lent(self, lent: list[Outcome], *, back: bool) -> None:
        with self._cond:
            ids = {id(o) for o in lent}
            self._lent = [o for o in self._lent if id(o) not in ids]
            if back:
                self._todo[:0] = lent
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> bool:
        """Write everything handed over, then stop the thread.

        With a ``timeout``, give up after it (a storage fault that does not
        clear): what is unwritten is logged and its tasks come back through
        lease expiry, so they run again (at least once). True if all written.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        with self._cond:
            lost = len(self._todo) + len(self._writing) + len(self._lent)
            self._todo = []
            self._gave_up = True
            self._cond.notify_all()
        LOGGER.error(
            "gave up recording %d outcome(s) at shutdown; their tasks will run again "
            "after their leases expire",
            lost,
        )
        return False

    def _loop(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while not self._todo and not (self._closing and not self._lent):
                    self._cond.wait()
                if not self._todo:
                    return  # closing, and nothing left here or lent out
                self._writing, self._todo = self._todo, []
            try:
                self._write(self._writing)
                backoff = 0.0
            except StorageError as exc:
                backoff = min(self._max_backoff, max(0.05, backoff * 2))
                LOGGER.warning(
                    "recording %d outcome(s) failed (%s); retrying in %.2fs",
                    len(self._writing),
                    exc,
                    backoff,
                )
                with self._cond:
                    if self._gave_up:
                        return
                    self._todo[:0] = self._writing  # keep the order; retry first
                    self._writing = []
                    self._cond.wait(backoff)
                continue
            except Exception:  # pragma: no cover - never let the thread die
                LOGGER.exception("recording outcomes failed; dropped (leases will expire)")
            with self._cond:
                self._writing = []

    def _write(self, batch: list[Outcome]) -> None:
        storage = self._queue.storage
        now = self._queue.clock.time
        completions = [o for o in batch if o.failure is None]
        if completions:
            recorded = storage.complete_many([(o.claim, o.result) for o in completions], now())
            _warn_fenced(completions, recorded)
            # Written: a retry of the failures below must not repeat them.
            batch[:] = [o for o in batch if o.failure is not None]
        while batch:
            o = batch[0]
            assert o.failure is not None
            if not storage.fail(o.claim, o.failure, now()):
                LOGGER.warning("failure of task %d not recorded: claim no longer held", o.claim[0])
            batch.pop(0)
            # A retry may be due at once; our own commits do not change
            # data_version, so tell the dispatcher to look.
            self._on_failure_recorded()


def _warn_fenced(completions: list[Outcome], recorded: set[int]) -> None:
    for o in completions:
        if o.claim[0] not in recorded:
            LOGGER.warning("completion of task %d not recorded: claim no longer held", o.claim[0])
