"""Executors: the threads that run handlers, and how an attempt's outcome
is decided.

Each executor takes the next buffered task from the ledger, runs it through
the runner, decides its outcome (completed, failed with a retry or for good,
or discarded because the claim is gone) and hands it to the recorder, then
takes the next task at once: it never waits for the outcome to commit.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..context import TaskContext
from ..errors import TaskTimeout
from ..events import Event, EventKind
from ..interrupted import expect_async_exceptions
from ..logfields import task_fields
from ..payload import encode
from ..queue import TaskQueue
from ..registry import HandlerRegistry
from ..retry import describe
from ..task import Task
from .ledger import COROUTINES, Attempt, InFlight, Slot
from .recorder import Outcome, Recorder
from .runner import Runner

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass
class Counters:
    #: Attempts completed.
    processed: int = 0
    #: Attempts failed (each retry counts).
    failed: int = 0


class Executors:
    """The pool of executor threads of one Worker."""

    def __init__(
        self,
        *,
        name: str,
        queue: TaskQueue,
        handlers: HandlerRegistry,
        ledger: InFlight,
        recorder: Recorder,
        runner: Runner,
        on_room: Callable[[], None],
        on_timed: Callable[[], None],
    ) -> None:
        """``on_room()`` is called when a task left the buffer or finished
        (the dispatcher may want to claim more); ``on_timed()`` when an
        attempt with a timeout starts (wakes the timekeeper)."""
        self._name = name
        self._queue = queue
        self._handlers = handlers
        self._ledger = ledger
        self._recorder = recorder
        self._runner = runner
        self._on_room = on_room
        self._on_timed = on_timed
        self._monotonic = queue.clock.monotonic
        self.counters = Counters()

    def start_slot(self, index: int) -> Slot:
        """Start one executor thread (at start, or replacing an abandoned one)."""
        slot = Slot(index)
        slot.thread = threading.Thread(
            target=self._loop, args=(slot,), name=f"{self._name}-{index + 1}", daemon=True
        )
        self._ledger.add_slot(slot)
        slot.thread.start()
        return slot

    def owns(self, thread: threading.Thread) -> bool:
        """True if ``thread`` is one of this pool's executors."""
        return any(slot.thread is thread for slot in self._ledger.slots())

    def join(self, timeout: float) -> None:
        """Join the executor threads still in service (not abandoned ones)."""
        for slot in self._ledger.slots():
            if slot.thread is not None and not slot.abandoned:
                slot.thread.join(timeout=timeout)

    # -- one thread ----------------------------------------------------------------
    def _loop(self, slot: Slot) -> None:
        # The timekeeper may raise TaskTimeout in this thread at any
        # bytecode: storage writes from handlers go through the storage
        # thread, never run here on the connection.
        expect_async_exceptions()
        while True:
            attempt = self._ledger.take(slot, self.new_attempt)
            if attempt is None:
                return
            self._on_room()
            try:
                self._run(attempt)
            except BaseException as exc:  # bookkeeping must not kill the thread
                LOGGER.exception(
                    "%s: internal error around task %d", self._name, attempt.task.id,
                    extra=task_fields(attempt.task),
                )  # fmt: skip
                self.after_internal_error(attempt, exc)
            if slot.abandoned:
                return

    def new_attempt(self, task: Task, slot: Slot) -> Attempt:
        """The Attempt of ``task`` starting in ``slot`` (its context, deadline)."""
        options = self._handlers.options(task.task_type)
        timeout = task.timeout if task.timeout is not None else options.timeout
        start = self._monotonic()
        ctx = TaskContext(
            task, None if timeout is None else start + timeout, self._monotonic,
            queue=self._queue, on_progress=self._recorder.report_progress,
        )  # fmt: skip
        if timeout is not None:
            self._on_timed()
        return Attempt(task, ctx, slot, timeout)

    def _run(self, attempt: Attempt) -> None:
        started = self.begin(attempt)
        error, result = self._runner.run(attempt, self._handlers.get(attempt.task.task_type))
        self.end(attempt, error, result, started)

    # An attempt's life around its handler, shared with the event loop's
    # pool (coroutines.py): begin() before, end() after.
    def begin(self, attempt: Attempt) -> float:
        """The handler is about to run: emit ``started``; the start time."""
        task = attempt.task
        started = self._monotonic()
        # Per task: the level is checked before the fields are built.
        if LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug(
                "%s: task %d (%r) started", self._name, task.id, task.name,
                extra=task_fields(task),
            )  # fmt: skip
        hooks = self._queue.hooks
        if hooks and not attempt.ctx.cancelled:
            hooks.emit(
                Event(EventKind.STARTED, task.id, task=task, worker=self._name,
                      at=self._queue.clock.time())
            )  # fmt: skip
        return started

    def end(
        self, attempt: Attempt, error: BaseException | None, result: Any, started: float
    ) -> None:
        """The handler returned (or raised): decide the outcome and hand it
        to the recorder, unless the attempt was given up meanwhile."""
        task = attempt.task
        elapsed = self._monotonic() - started
        ours = self._ledger.finish(attempt, elapsed)
        self._on_room()
        if not ours:
            LOGGER.info(
                "%s: task %d finished after it was given up; outcome discarded",
                self._name,
                task.id,
                extra=task_fields(task, duration=elapsed),
            )
            return
        try:
            self._settle(attempt, error, result, elapsed)
        finally:
            self._ledger.handed_over()

    def _settle(
        self, attempt: Attempt, error: BaseException | None, result: Any, elapsed: float
    ) -> None:
        task, ctx = attempt.task, attempt.ctx
        if ctx.cancelled and ctx.reason == "expired":
            # Its lease ran out while it waited in the buffer: another
            # worker may be running it already. Give it back (fenced: only
            # if still ours, and without using a retry) instead of running it.
            if attempt.slot.lane == COROUTINES:
                # Not from the event loop's thread: the recorder writes it.
                self._recorder.add(Outcome(task, release=True))
                return
            released = self._queue.release_tasks([task])
            LOGGER.info(
                "%s: gave back %d task(s) (lease ran out before they started)",
                self._name,
                len(released),
                extra=task_fields(task),
            )
            return
        if ctx.cancelled and ctx.reason in ("cancelled", "lost"):
            LOGGER.info(
                "%s: task %d was cancelled or lost its claim; outcome discarded",
                self._name,
                task.id,
                extra=task_fields(task, duration=elapsed),
            )
            return
        if error is None:
            try:
                encoded = encode(result, what="result", max_bytes=self._queue.max_payload_bytes)
            except BaseException as exc:  # PayloadError, or whatever a hostile result raises
                error = exc
        if error is None:
            if LOGGER.isEnabledFor(logging.INFO):
                LOGGER.info(
                    "%s: task %d (%r) completed in %.3fs", self._name, task.id, task.name,
                    elapsed, extra=task_fields(task, duration=elapsed),
                )  # fmt: skip
            self._recorder.add(Outcome(task, encoded, duration=elapsed))
            self.counters.processed += 1
            return
        if isinstance(error, TaskTimeout) or (ctx.cancelled and ctx.reason == "timeout"):
            error = TaskTimeout(f"task {task.id} timed out after {attempt.timeout}s")
        self.settle_failure(attempt, error, elapsed)

    def settle_failure(self, attempt: Attempt, error: BaseException, elapsed: float) -> None:
        """A failed attempt: decide retry or dead-letter, log it once, hand
        it to the recorder (also the timekeeper's way, for an abandoned one)."""
        task = attempt.task
        options = self._handlers.options(task.task_type)
        failure = self._queue.failure(
            task, error, retry_policy=options.retry_policy, max_retries=options.max_retries
        )
        LOGGER.warning(
            "%s: task %d (%r) failed after %.3fs: %r; %s",  # repr: no raw newlines from errors
            self._name,
            task.id,
            task.name,
            elapsed,
            failure.error,
            describe(task, failure.retry_in, options.max_retries),
            extra=task_fields(
                task, duration=elapsed, error_class=failure.error_class,
                retry_in=failure.retry_in,
            ),
        )  # fmt: skip
        self.counters.failed += 1
        hooks = self._queue.hooks
        if hooks:
            hooks.emit(
                Event(EventKind.FAILED, task.id, task=task, worker=self._name,
                      at=self._queue.clock.time(), duration=elapsed, error=failure.error,
                      exception=error, error_class=failure.error_class)
            )  # fmt: skip
        self._recorder.add(Outcome(task, failure=failure, duration=elapsed))

    def after_internal_error(self, attempt: Attempt, exc: BaseException) -> None:
        """Our own code failed around an attempt. Never leave a task that our
        code failed on "running" with its lease renewed forever: count it as
        a failed attempt (a retry, not a release, so a task that always trips
        us ends failed)."""
        if not self._ledger.drop(attempt):
            return
        try:
            failure = self._queue.failure(attempt.task, exc)
            self._recorder.add(Outcome(attempt.task, failure=failure))
        except BaseException:
            LOGGER.exception(
                "%s: task %d is left to its lease", self._name, attempt.task.id,
                extra=task_fields(attempt.task),
            )  # fmt: skip
