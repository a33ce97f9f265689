"""The timekeeper: enforces timeouts from a thread of its own.

A dispatcher can wait on the database (another process holding the write
lock) for longer than any timeout, so timeouts are not its job. Layers, in
order (README "Timeouts" says the same):

1. cooperative: at the deadline the handler's context is flagged
   ``cancelled`` and ``ctx.check()`` raises; works everywhere, if the
   handler looks;
2. an asynchronous ``TaskTimeout`` raised in the executor thread; it
   interrupts Python code but not a call blocked in C (a socket read, a C
   extension, ``time.sleep`` as one call);
3. ``timeout_grace`` seconds later the attempt is recorded as timed out
   (retried or failed like any error), the thread is abandoned and a new
   one replaces it so the pool keeps its capacity; whatever the stuck
   thread returns later is discarded (and fenced out by the database anyway).

An ``async def`` handler is cancelled for real in layer 2 (``task.cancel()``
on the Worker's loop); one that swallows the CancelledError is abandoned
in layer 3 like a stuck thread, its place on the loop freed (there is no
thread to replace).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import TaskTimeout
from ..events import Event, EventKind
from ..logfields import task_fields
from ..queue import TaskQueue
from .ledger import THREADS, Attempt, InFlight
from .runner import async_raise

LOGGER = logging.getLogger(__name__)

#: How often deadlines are checked while an attempt with one runs.
CHECK_INTERVAL = 0.05


class Timekeeper:
    def __init__(
        self,
        *,
        name: str,
        queue: TaskQueue,
        ledger: InFlight,
        grace: float,
        settle_failure: Callable[[Attempt, BaseException, float], None],
        replace_slot: Callable[[int], None],
    ) -> None:
        """``settle_failure`` records an abandoned attempt's failure;
        ``replace_slot(index)`` starts a new executor in place of an
        abandoned one."""
        self._name = name
        self._queue = queue
        self._ledger = ledger
        self._grace = grace
        self._settle_failure = settle_failure
        self._replace_slot = replace_slot
        self._monotonic = queue.clock.monotonic
        self._timed = threading.Event()

    def wake(self) -> None:
        """An attempt with a deadline started (or the worker is stopping)."""
        self._timed.set()

    def run(self, finished: threading.Event) -> None:
        while not finished.is_set():
            self._timed.clear()
            try:
                pending = self.check(self._monotonic())
            except Exception:  # pragma: no cover - keep enforcing
                LOGGER.exception("%s: timeout check failed", self._name)
                pending = True
            if pending:
                finished.wait(CHECK_INTERVAL)
            else:
                self._timed.wait(1.0)

    def check(self, now: float) -> bool:
        """Act on every deadline passed at ``now``; True while attempts with
        a deadline are running (check again soon)."""
        attempts = self._ledger.timed()
        for attempt in attempts:
            deadline = attempt.ctx.deadline
            assert deadline is not None
            if now < deadline:
                continue
            if attempt.timeout_fired_at is None:
                self._interrupt(attempt, now)
            elif now >= attempt.timeout_fired_at + self._grace:
                self._abandon(attempt, now - deadline + (attempt.timeout or 0))
        return bool(attempts)

    def _interrupt(self, attempt: Attempt, now: float) -> None:
        attempt.timeout_fired_at = now
        attempt.ctx.cancel("timeout")
        slot = attempt.slot
        with slot.lock:
            if slot.current is attempt and slot.in_handler and slot.thread is not None:
                assert slot.thread.ident is not None
                async_raise(slot.thread.ident, TaskTimeout)
                attempt.interrupted = True
        if attempt.interrupt is not None:
            attempt.interrupt()
        LOGGER.warning(
            "%s: task %d ran past its %ss timeout; interrupting it",
            self._name,
            attempt.task.id,
            attempt.timeout,
            extra=task_fields(attempt.task, timeout=attempt.timeout),
        )
        hooks = self._queue.hooks
        if hooks:
            hooks.emit(
                Event(EventKind.TIMED_OUT, attempt.task.id, task=attempt.task, worker=self._name,
                      at=self._queue.clock.time())
            )  # fmt: skip

    def _abandon(self, attempt: Attempt, elapsed: float) -> None:
        if not self._ledger.abandon(attempt):
            return
        LOGGER.error(
            "%s: task %d did not stop %ss after its timeout (blocked in C?); "
            "recording it as timed out and replacing its thread",
            self._name,
            attempt.task.id,
            self._grace,
            extra=task_fields(attempt.task, timeout=attempt.timeout),
        )
        error = TaskTimeout(
            f"task {attempt.task.id} timed out after {attempt.timeout}s and did not stop"
        )
        try:
            self._settle_failure(attempt, error, elapsed)
        finally:
            self._ledger.handed_over()
        if not self._ledger.stopping and attempt.slot.lane == THREADS:
            self._replace_slot(attempt.slot.index)
