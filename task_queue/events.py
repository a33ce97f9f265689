"""What happens to tasks, as events, and the hooks that observe them.

One vocabulary (:class:`EventKind`), each kind emitted from exactly one
place:

=================  =========================================================
kind               emitted by, and when
=================  =========================================================
enqueued           TaskQueue, after the commit that stored a *new* task
claimed            TaskQueue, after the commit of a claim (dequeue, Worker)
started            the Worker's executor thread, just before the handler runs
failed             the Worker, when an attempt failed (the handler raised,
                   timed out or returned what cannot be stored); its
                   recorded outcome follows as retry_scheduled or
                   dead_lettered
timed_out          the Worker's timekeeper, when an attempt passes its timeout
lease_lost         the Worker's heartbeat, when a claim it held is gone
                   (cancelled, or rescued after the worker stalled)
completed          TaskQueue, after the commit of a success
retry_scheduled    TaskQueue, after the commit of a failed attempt with
                   retries left (``retry_at`` says when)
dead_lettered      TaskQueue, after the commit of a failure for good
rescued            the rescue service, after the commit giving up a lost
                   claim (``status`` says pending again or failed)
released           TaskQueue, after the commit giving a claim back unfinished
cancelled          TaskQueue, after the commit of cancel_task()
=================  =========================================================

Outcomes (completed, retry_scheduled, dead_lettered, rescued, released,
cancelled) are emitted only once committed, so a hook never reports what a
crash could still undo. Hooks run in the thread that emits: keep them
quick, and never block in one. A hook that raises is logged and ignored:
it changes no outcome and kills no thread.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from .task import Task

LOGGER = logging.getLogger(__name__)


class EventKind(str, enum.Enum):
    """The kinds of :class:`Event` (see the module docstring for who emits each)."""

    ENQUEUED = "enqueued"
    CLAIMED = "claimed"
    STARTED = "started"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LEASE_LOST = "lease_lost"
    COMPLETED = "completed"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"
    RESCUED = "rescued"
    RELEASED = "released"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to one task."""

    kind: EventKind
    task_id: int
    #: The task as the emitter knew it (claimed snapshot, or as read), when it had one.
    task: Task | None = None
    #: Name of the Worker involved, if any.
    worker: str | None = None
    #: When it happened (the queue's clock, UTC epoch seconds).
    at: float = 0.0
    #: Seconds the handler ran: failed, completed, retry_scheduled and
    #: dead_lettered events of attempts a Worker ran.
    duration: float | None = None
    #: The error text of a failed attempt, rescue or loss.
    error: str | None = None
    #: The exception itself, in the process where it was raised.
    exception: BaseException | None = None
    #: When a scheduled retry is due (retry_scheduled).
    retry_at: float | None = None
    #: The task's status after the event, where it changed.
    status: str | None = None


class Hook(Protocol):
    """Anything called with each :class:`Event`: a function, or an object
    with ``__call__``."""

    def __call__(self, event: Event) -> None: ...


class Hooks:
    """The hooks of one TaskQueue; ``emit`` calls each, never raising."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: tuple[Hook, ...] = ()

    def add(self, hook: Hook) -> None:
        """Call ``hook`` with every event from now on."""
        if not callable(hook):
            raise TypeError(f"a hook must be callable with an Event, got {hook!r}")
        with self._lock:
            self._hooks = (*self._hooks, hook)

    def remove(self, hook: Hook) -> None:
        """Stop calling ``hook`` (no error if it was not added)."""
        with self._lock:
            self._hooks = tuple(h for h in self._hooks if h is not hook)

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def emit(self, event: Event) -> None:
        # The tuple is replaced, never mutated: no lock on the hot path.
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                LOGGER.exception("hook %r raised on %s of task %d", hook, event.kind, event.task_id)

    def emit_lazy(self, build: Callable[[], list[Event]]) -> None:
        """Emit what ``build`` returns, building nothing when no hook listens."""
        if self._hooks:
            for event in build():
                self.emit(event)
