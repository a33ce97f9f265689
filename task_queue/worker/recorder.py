"""The recorder: writes a Worker's task outcomes, in batches, from a thread
of its own.

Executors hand an outcome over and go on to the next task at once. This
thread writes everything handed over since its last write in one go: all
completions in one statement, each failure (rare) on its own. While that
write waits for its commit, new outcomes pile up for the next one, so the
batch grows exactly as fast as the load does and adds no delay when idle.

Nothing is acknowledged to anyone before it is committed. When a write
fails for the storage's own reasons (disk full, database busy past the
timeout), the task is not at fault: the outcomes are kept, their claims
stay renewed by the heartbeat, and the write is retried with backoff until
the fault clears. One outcome's error never affects another's: a
completion the storage refuses for good (a result too large for it) is
split from its batch and recorded as a failed attempt instead, and a
storage that cannot be used any more (closed, the file deleted or
replaced) ends the writing, since retrying could only spin.

The dispatcher also borrows the waiting completions (:meth:`Recorder.lend`)
to write them in the same transaction as its next claim: one commit
instead of two per batch of short tasks.

Progress reports (``current_task().progress()``) are coalesced here: only
the latest of each task is kept, written with the next batch or at most
every ``WRITE_INTERVAL`` when there is nothing else to write, and always
before the task's own outcome (after it, the write would be fenced out).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..errors import UNSTORABLE, UNUSABLE_STORAGE, StorageError, TaskNotFoundError
from ..progress import WRITE_INTERVAL
from ..queue import TaskQueue
from ..registry import HandlerRegistry
from ..storage.base import FailureRecord
from ..task import Claim, Task

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class Outcome:
    """A decided outcome of one attempt, waiting to be written."""

    task: Task
    #: Encoded JSON result of a completion.
    result: str | None = None
    #: Set for a failed attempt.
    failure: FailureRecord | None = None
    #: Seconds the handler ran.
    duration: float | None = None


def durations(outcomes: Iterable[Outcome]) -> dict[int, float]:
    """How long each handler ran, by task id (for the completed events)."""
    return {o.task.id: o.duration for o in outcomes if o.duration is not None}


def give_back(queue: TaskQueue, tasks: Iterable[Task], why: str, who: str) -> None:
    """Release claims unfinished (no retry used), logging instead of raising:
    at shutdown a storage fault must not stop the rest of the shutdown."""
    items = list(tasks)
    if not items:
        return
    try:
        released = queue.release_tasks(items)
    except StorageError as exc:
        LOGGER.error(
            "%s: could not give back %d task(s) (%s): they return to pending when "
            "their lease expires",
            who,
            len(items),
            exc,
        )
        return
    LOGGER.info("%s: gave back %d task(s) (%s)", who, len(released), why)


class Recorder:
    """The outcome-writing thread of one Worker."""

    def __init__(
        self,
        queue: TaskQueue,
        name: str,
        handlers: HandlerRegistry | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        """``handlers`` give the retry policy of a completion that turns
        into a failed attempt (the queue's defaults without them)."""
        self._queue = queue
        self._handlers = handlers
        self._name = name
        self._max_backoff = max_backoff
        self._cond = threading.Condition()
        self._todo: list[Outcome] = []
        self._writing: list[Outcome] = []
        # Completions borrowed by the dispatcher, being written with a claim.
        self._lent: list[Outcome] = []
        # The latest unwritten progress of each task, and when progress alone
        # may be written next (monotonic).
        self._progress: dict[Claim, tuple[Task, dict[str, Any]]] = {}
        self._progress_writing: set[Claim] = set()
        self._progress_due = 0.0
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

    def report_progress(self, task: Task, value: dict[str, Any]) -> None:
        """Keep ``value`` as the task's latest progress (replacing any unwritten one)."""
        with self._cond:
            first = not self._progress
            self._progress[task.claim] = (task, value)
            if first:
                self._cond.notify()

    def held(self) -> list[Claim]:
        """Claims whose outcome is not committed yet (the heartbeat keeps them)."""
        with self._cond:
            return [o.task.claim for o in self._todo + self._writing + self._lent]

    def lend(self) -> list[Outcome]:
        """Take the waiting completions, to be written by the caller; then
        :meth:`settle` them, or :meth:`give_back` if the write failed."""
        with self._cond:
            # A completion whose progress is not written yet stays here: the
            # progress must go first.
            mine = [
                o for o in self._todo if o.failure is not None or o.task.claim in self._progress
            ]
            if self._closing or len(mine) == len(self._todo):
                return []
            lent = [o for o in self._todo if o not in mine]
            self._todo = mine
            self._lent.extend(lent)
            return lent

    def settle(self, lent: list[Outcome]) -> None:
        """The borrowed completions were written."""
        self._drop_lent(lent, back=False)

    def give_back(self, lent: list[Outcome]) -> None:
        """The borrowed completions were not written: write them here."""
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
                    if self._progress:
                        wait = self._progress_due - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if not self._todo and not self._progress:
                    return  # closing, and nothing left here or lent out
                self._writing, self._todo = self._todo, []
                reports, self._progress = self._progress, {}
                self._progress_writing = set(reports)
            try:
                self._write_progress(reports)
                self._write(self._writing)
                backoff = 0.0
            except UNUSABLE_STORAGE as exc:
                # Nothing can be written any more. The tasks come back
                # through lease expiry (at least once).
                with self._cond:
                    lost = len(self._writing) + len(self._todo)
                    self._writing, self._todo = [], []
                    self._gave_up = True
                LOGGER.error(
                    "%s: %d outcome(s) not recorded (%s); their tasks run again after "
                    "their leases expire",
                    self._name,
                    lost,
                    exc,
                )
                return
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
                    for claim, report in reports.items():
                        self._progress.setdefault(claim, report)  # unless a newer one came
                    self._cond.wait(backoff)
                continue
            except Exception:  # pragma: no cover - never let the thread die
                LOGGER.exception("recording outcomes failed; dropped (leases will expire)")
            with self._cond:
                self._writing = []
                self._progress_writing = set()

    def _write_progress(self, reports: dict[Claim, tuple[Task, dict[str, Any]]]) -> None:
        if not reports:
            return
        self._queue.record_progress(list(reports.values()))
        # Progress alone waits a while before its next write: a tight loop
        # of reports costs a dict assignment each, not a statement.
        self._progress_due = time.monotonic() + WRITE_INTERVAL

    def _write(self, batch: list[Outcome]) -> None:
        """Write ``batch``, removing from it what is done, so that a retry
        after a StorageError repeats nothing."""
        completions = [o for o in batch if o.failure is None]
        if completions:
            try:
                self._queue.complete_many(
                    [(o.task, o.result) for o in completions], durations=durations(completions)
                )
            except UNSTORABLE as exc:
                if len(completions) == 1:
                    self._refused(completions[0], exc)
                else:
                    self._complete_each(completions, batch)
            else:
                batch[:] = [o for o in batch if o.failure is not None]
        while batch:
            outcome = batch[0]
            assert outcome.failure is not None
            try:
                self._queue.record_failure(outcome.task, outcome.failure, duration=outcome.duration)
            except StorageError:
                raise  # the database's fault: keep this and the rest, retry
            except TaskNotFoundError:
                LOGGER.info(
                    "failure of task %d not recorded: the task no longer exists (purged)",
                    outcome.task.id,
                )
            except Exception:
                LOGGER.exception("failure of task %d not recorded", outcome.task.id)
            batch.pop(0)

    def _complete_each(self, completions: list[Outcome], batch: list[Outcome]) -> None:
        """One of ``completions`` was refused: write them one by one, so
        that only that one is held back."""
        for outcome in completions:
            try:
                self._queue.complete_many(
                    [(outcome.task, outcome.result)], durations=durations([outcome])
                )
            except UNSTORABLE as exc:
                self._refused(outcome, exc)
            else:
                batch.remove(outcome)

    def _refused(self, outcome: Outcome, error: BaseException) -> None:
        """The storage refuses this completion for good: the attempt failed
        (its handler's retry policy decides what follows), rather than
        being retried here forever. It is written as a failure next."""
        task = outcome.task
        options = self._handlers.options(task.task_type) if self._handlers else None
        outcome.failure = self._queue.failure(
            task, error,
            retry_policy=None if options is None else options.retry_policy,
            max_retries=None if options is None else options.max_retries,
        )  # fmt: skip
        outcome.result = None
        LOGGER.warning(
            "%s: the outcome of task %d (%r) cannot be stored (%s); recorded as a failed attempt",
            self._name,
            task.id,
            task.name,
            error,
        )
