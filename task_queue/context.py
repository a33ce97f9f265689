"""What a running handler can know about its own task.

Inside a handler run by a Worker, :func:`current_task` returns a
:class:`TaskContext`: the task, its deadline, and a cancellation flag that is
set when the task times out, is cancelled with ``cancel_task()``, loses its
lease, or the worker is stopping past its drain deadline. Long handlers
should look at it between steps (``ctx.check()``) and stop cleanly: that is
the only layer of interruption that works everywhere (README, "Timeouts").
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import TaskCancelled, TaskTimeout
from .progress import make_progress
from .task import Task

if TYPE_CHECKING:
    from .queue import TaskQueue

__all__ = ["TaskCancelled", "TaskContext", "current_task"]


#: Guards the creation of a context's Event (rare: only wait() makes one).
_EVENT_LOCK = threading.Lock()


class TaskContext:
    """What a handler can know about the attempt it runs (``current_task()``)."""

    def __init__(
        self,
        task: Task,
        deadline: float | None,
        monotonic: Callable[[], float],
        *,
        queue: TaskQueue | None = None,
        on_progress: Callable[[Task, dict[str, Any]], None] | None = None,
    ) -> None:
        """Made by the Worker for each attempt: ``on_progress`` takes the
        reports to write, ``queue`` answers :meth:`parents`."""
        self._queue = queue
        self._on_progress = on_progress
        #: The task as claimed.
        self.task = task
        #: Monotonic time after which the attempt times out (None: never).
        self.deadline = deadline
        self._monotonic = monotonic
        # The flag is what nearly every attempt needs; the Event only a
        # handler that wait()s on it: made then, not for every attempt (a
        # threading.Event is a Condition and a lock: a measurable share of
        # a no-op task's cost).
        self._cancelled = False
        self._event: threading.Event | None = None
        #: Why it should stop: "timeout", "cancelled", "lost", "shutdown"
        #: (or "expired": never started); None while it may run.
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """True once the handler should stop (timeout, cancel, lost lease, shutdown)."""
        return self._cancelled

    def cancel(self, reason: str) -> None:
        """Flag the handler to stop (the Worker calls this)."""
        if not self._cancelled:
            self.reason = reason
            self._cancelled = True
            event = self._event
            if event is not None:
                event.set()

    def remaining(self) -> float | None:
        """Seconds left before the timeout, or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self._monotonic())

    def check(self) -> None:
        """Raise if the handler should stop: TaskTimeout or TaskCancelled."""
        if self.deadline is not None and self._monotonic() >= self.deadline:
            self.cancel("timeout")
        if self._cancelled:
            if self.reason == "timeout":
                raise TaskTimeout(f"task {self.task.id} ran past its timeout")
            raise TaskCancelled(f"task {self.task.id} stopped: {self.reason}")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancellation; True if
        cancelled. (Blocks the thread: in an ``async def`` handler use
        ``await asyncio.sleep()``, which the Worker cancels for real.)"""
        event = self._event
        if event is None:
            with _EVENT_LOCK:
                if self._event is None:
                    self._event = threading.Event()
                event = self._event
        # The flag first, then the Event: a cancel() that found no Event
        # yet is seen here.
        if self._cancelled:
            event.set()
        return event.wait(seconds)

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report how far the task is: ``Task.progress`` shows it, while it
        runs and after. Cheap in a tight loop (the Worker writes the latest
        value at most four times a second, and the last one always).
        Refused: NaN, negative numbers, messages over 1,000 characters."""
        clock = self._queue.clock.time() if self._queue is not None else time.time()
        value = make_progress(current, total, message, clock)
        if self._on_progress is not None:
            self._on_progress(self.task, value)

    def parents(self) -> list[Task]:
        """The tasks this one depends on (``enqueue(depends_on=...)``), as
        stored now: completed, so their ``result`` is there to read."""
        if not self.task.depends_on:
            return []
        if self._queue is None:
            raise RuntimeError("parents() needs the TaskQueue; it works inside a Worker's handler")
        return self._queue.get_tasks(self.task.depends_on)

    async def aparents(self) -> list[Task]:
        """:meth:`parents` for ``async def`` handlers: the read is awaited,
        so the Worker's event loop (and every other coroutine on it) is not
        blocked while it waits for the database."""
        if not self.task.depends_on:
            return []
        if self._queue is None:
            raise RuntimeError("aparents() needs the TaskQueue; it works inside a Worker's handler")
        return await self._queue.aget_tasks(self.task.depends_on)


# A context variable, not a thread-local: one event loop thread runs many
# async handlers at once, each in its own asyncio task (and context).
_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "task_queue_current_task", default=None
)


def current_task() -> TaskContext | None:
    """The context of the task the calling thread (or, inside an ``async
    def`` handler, the calling coroutine) is running, if any."""
    return _current.get()


def _set_current(ctx: TaskContext | None) -> None:
    _current.set(ctx)
