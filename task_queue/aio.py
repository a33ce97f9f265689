"""Awaiting the storage from an event loop, without blocking it.

``TaskQueue.aenqueue()`` and the other ``a``-methods start their storage
operation with :func:`task_queue.storage.base.submit` and await a future of
the calling loop. The storage answers from its own thread through
``loop.call_soon_threadsafe``: no thread is blocked per awaiting caller, so a
hundred coroutines enqueueing at once cost one engine thread, and their
writes share group commits like any concurrent callers'. The answer is
turned into the return value (rows into Tasks) back on the loop.

Hand-over: the engine answers a whole group commit at once, and a wake-up
of a loop from another thread costs a write to its self-pipe (~30 µs here,
more than the INSERT). So answers for one loop go into its inbox and one
``call_soon_threadsafe`` drains everything that arrived meanwhile.

Cancellation: cancelling a coroutine that awaits an operation does not take
the operation back. Once submitted it commits or fails regardless (as an
enqueue interrupted by Ctrl-C does, see :mod:`task_queue.interrupted`); the
late answer is dropped. ``aenqueue`` notes what it knows on the
``CancelledError`` (``task_ids``; see :func:`note_cancelled`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import weakref
from collections.abc import Callable
from typing import Any

from .storage.base import Outcome, Storage, submit


def start(
    storage: Storage,
    operation: str,
    *args: Any,
    late: Callable[[Any], None] | None = None,
) -> asyncio.Future[Any]:
    """Start ``storage.<operation>(*args)``; a future of the running loop
    that gets its result (or error). Raises at once (QueueClosedError...)
    if nothing could be started. ``late(result)`` is called on the loop
    with the result of an operation whose future was cancelled meanwhile
    (what the caller would have done after it: wake workers...)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    inbox = inbox_of(loop)

    def on_done(outcome: Outcome) -> None:
        # Runs in the storage's thread: only hand over.
        inbox.post(_settle, future, outcome, late)

    submit(storage, operation, args, on_done)
    return future


class Inbox:
    """Calls handed to one event loop from other threads, run in arrival
    order by as few ``call_soon_threadsafe`` wake-ups as possible."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._scheduled = False

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon; from any thread, never blocking.
        Dropped if the loop is closed (nobody awaits there any more)."""
        self._calls.append((fn, args))
        if not self._scheduled:
            # Set before the wake-up: a post racing with _drain at worst
            # schedules one wake-up too many, never one too few (_drain
            # clears the flag before it empties the deque).
            self._scheduled = True
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        calls = self._calls
        while calls:
            fn, args = calls.popleft()
            try:
                fn(*args)
            except Exception:  # pragma: no cover - _settle and wakers do not raise
                self._loop.call_exception_handler(
                    {"message": "task_queue: a storage answer could not be delivered"}
                )


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Inbox] = weakref.WeakKeyDictionary()


def inbox_of(loop: asyncio.AbstractEventLoop) -> Inbox:
    """The loop's inbox (made on first use, from the loop's own thread)."""
    inbox = _inboxes.get(loop)
    if inbox is None:
        inbox = _inboxes[loop] = Inbox(loop)
    return inbox


def _settle(
    future: asyncio.Future[Any], outcome: Outcome, late: Callable[[Any], None] | None
) -> None:
    if future.cancelled():
        # The awaiting coroutine was cancelled; the outcome stands.
        if late is not None:
            with contextlib.suppress(Exception):
                late(outcome())
        return
    try:
        result = outcome()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


async def call(storage: Storage, operation: str, *args: Any) -> Any:
    """Await ``storage.<operation>(*args)`` without blocking the loop."""
    return await start(storage, operation, *args)


def note_cancelled(exc: BaseException, future: asyncio.Future[Any]) -> None:
    """Note on a ``CancelledError`` what the cancelled enqueue wrote:
    ``task_ids`` is the list of ids if the answer had arrived (the
    cancellation came just after it), else None: the write was submitted
    and may still commit (as after a second Ctrl-C)."""
    ids: list[int] | None = None
    if future.done() and not future.cancelled():
        error = future.exception()
        ids = [] if error is not None else [task_id for task_id, _ in future.result()]
    with contextlib.suppress(AttributeError, TypeError):
        exc.task_ids = ids  # type: ignore[attr-defined]
