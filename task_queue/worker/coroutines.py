"""Coroutines: how a Worker runs ``async def`` handlers.

A Worker whose registry has coroutine functions runs their tasks on an event
loop of its own, in one thread, started the first time such a task is
claimed (a Worker without async handlers has no loop). Up to
``async_concurrency`` of them run at once; they are claimed for that pool
only (:mod:`.dispatcher` claims for each pool the room it has), so sleeping
coroutines never hold back sync tasks, nor the other way round.

Each attempt goes through the same ledger, executor bookkeeping, recorder
and timekeeper as a sync one; what differs is how it is stopped:

* a timeout, ``cancel_task()`` (seen by the heartbeat), a lost lease or a
  forced stop cancel the coroutine for real (``task.cancel()`` on its loop)
  after flagging its context, as for a sync handler;
* a handler that swallows the ``CancelledError`` and runs on past its
  timeout is treated like a sync handler stuck in C: ``timeout_grace``
  seconds later its attempt is recorded as timed out and its place freed;
  whatever it returns later is discarded (and fenced out anyway).

Nothing here blocks the loop: outcomes go to the recorder thread, as from
executor threads. ``current_task()`` works inside the coroutine (and in
tasks it creates): it is a context variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..context import _set_current
from ..errors import TaskCancelled, TaskTimeout
from ..events import Hooks
from ..logfields import task_fields
from ..registry import HandlerRegistry
from .executor import Executors
from .ledger import COROUTINES, Attempt, InFlight, Slot

LOGGER = logging.getLogger(__name__)

# How long stop() lets cancelled coroutines unwind before closing the loop.
_UNWIND = 1.0


class CoroutineRunner:
    """Awaits an async handler for one attempt, wrapped by the queue's
    middleware (``arun_attempt``). Returns (error, result), never raises."""

    def __init__(self, hooks: Hooks | None = None) -> None:
        self._hooks = hooks

    async def run(
        self, attempt: Attempt, fn: Callable[[Any], Any] | None
    ) -> tuple[BaseException | None, Any]:
        ctx, slot, task = attempt.ctx, attempt.slot, attempt.task
        error: BaseException | None = None
        result: Any = None
        _set_current(ctx)  # this asyncio task's own context
        try:
            slot.current = attempt
            slot.in_handler = True
            ctx.check()  # given back (stop) or cancelled before it started
            if fn is None:
                raise LookupError(f"no handler registered for task type {task.task_type!r}")
            if self._hooks is None:
                result = await fn(task.payload)
            else:
                result = await self._hooks.arun_attempt(task, lambda: fn(task.payload))
        except asyncio.CancelledError as exc:
            _uncancel()
            if ctx.reason == "timeout":
                error = TaskTimeout(f"task {task.id} ran past its timeout")
            elif ctx.cancelled:
                error = TaskCancelled(f"task {task.id} stopped: {ctx.reason}")
            else:
                error = exc  # cancelled by something of the handler's own
        except BaseException as exc:  # SystemExit etc. from handler code too
            error = exc
        finally:
            slot.in_handler = False
            slot.current = None
            _set_current(None)
        return error, result


def _uncancel() -> None:
    # The cancellation was ours and is handled here: the task goes on to
    # record the outcome (Python 3.11+ counts cancellations per task).
    current = asyncio.current_task()
    cancelling = getattr(current, "cancelling", None)
    if cancelling is not None and cancelling():
        current.uncancel()  # type: ignore[union-attr]


class CoroutinePool:
    """One Worker's event loop thread and its ``async_concurrency`` places."""

    def __init__(
        self,
        *,
        name: str,
        handlers: HandlerRegistry,
        ledger: InFlight,
        executors: Executors,
        concurrency: int,
        runner: CoroutineRunner,
    ) -> None:
        self._name = name
        self._handlers = handlers
        self._ledger = ledger
        self._executors = executors
        self.concurrency = concurrency
        self._runner = runner
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._fill_scheduled = False
        self._stopped = False

    @property
    def started(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """Start the loop thread (once; later calls do nothing)."""
        with self._lock:
            if self._loop is not None or self._stopped:
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=self._run_loop, args=(loop, ready), name=f"{self._name}-async", daemon=True
            )
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
        LOGGER.info("%s: event loop started for async handlers (up to %d at once)",
                    self._name, self.concurrency)  # fmt: skip

    def _run_loop(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def owns(self, thread: threading.Thread) -> bool:
        return thread is self._thread

    def wake(self) -> None:
        """Tasks were buffered for this pool (or places freed): start what fits."""
        loop = self._loop
        if loop is None or self._fill_scheduled:
            return
        self._fill_scheduled = True
        try:
            loop.call_soon_threadsafe(self._fill)
        except RuntimeError:  # closed: the Worker is stopping
            self._fill_scheduled = False

    # -- on the loop -------------------------------------------------------------
    def _fill(self) -> None:
        self._fill_scheduled = False
        loop = self._loop
        assert loop is not None
        while self._ledger.running_in(COROUTINES) < self.concurrency:
            attempt = self._ledger.take_nowait(COROUTINES, self._executors.new_attempt)
            if attempt is None:
                return
            attempt.interrupt = self._interrupter(loop, attempt)
            task = loop.create_task(self._attempt(attempt))
            attempt.slot.handle = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _interrupter(self, loop: asyncio.AbstractEventLoop, attempt: Attempt) -> Callable[[], None]:
        def interrupt() -> None:
            with contextlib.suppress(RuntimeError):  # closed: nothing runs any more
                loop.call_soon_threadsafe(_cancel_if_in_handler, attempt.slot)

        return interrupt

    async def _attempt(self, attempt: Attempt) -> None:
        try:
            started = self._executors.begin(attempt)
            error, result = await self._runner.run(
                attempt, self._handlers.get(attempt.task.task_type)
            )
            self._executors.end(attempt, error, result, started)
        except BaseException as exc:  # bookkeeping must not kill the loop
            LOGGER.exception(
                "%s: internal error around task %d", self._name, attempt.task.id,
                extra=task_fields(attempt.task),
            )  # fmt: skip
            self._executors.after_internal_error(attempt, exc)
        finally:
            self._fill()

    # -- stopping ----------------------------------------------------------------
    def stop(self) -> None:
        """Cancel what still runs on the loop (the Worker gave those attempts
        up already), let it unwind briefly, close the loop, join its thread."""
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        done = threading.Event()

        async def wind_down() -> None:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=_UNWIND)
            done.set()

        def begin() -> None:
            loop.create_task(wind_down()).add_done_callback(lambda _: loop.stop())

        try:
            loop.call_soon_threadsafe(begin)
        except RuntimeError:
            return
        if thread is not threading.current_thread():
            thread.join(_UNWIND + 5.0)


def _cancel_if_in_handler(slot: Slot) -> None:
    # On the loop: a coroutine not yet inside its handler sees the flag
    # (ctx.check()) instead; one past it has nothing left to cancel.
    handle = slot.handle
    if slot.in_handler and isinstance(handle, asyncio.Task) and not handle.done():
        handle.cancel()
