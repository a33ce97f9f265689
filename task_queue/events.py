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

A hook is a function of the event, or a :class:`Middleware`, which may also
add metadata to a task as it is enqueued (a trace context...) and wrap each
attempt of a handler (a tracing span around it). Metrics and tracing in
``task_queue.contrib`` are middleware; nothing of them is in the Worker.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .task import Task

if TYPE_CHECKING:
    from .spec import TaskSpec

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


class Middleware:
    """Observe and wrap a queue's work: subclass, override what you need, and
    add it with ``queue.add_hook(middleware)`` (or ``TaskQueue(hooks=[...])``).

    Each method runs in the thread that enqueues, or runs the attempt; one
    that raises is logged and changes nothing else (the task is enqueued,
    the attempt runs and has the outcome it would have had)."""

    def on_event(self, event: Event) -> None:
        """Called with every :class:`Event`."""

    def before_enqueue(self, spec: TaskSpec) -> Mapping[str, Any] | None:
        """Metadata to store with a task about to be enqueued (merged into
        its ``meta``; a trace context, say); None: nothing."""
        return None

    def run_attempt(self, task: Task, run: Callable[[], Any]) -> Any:
        """Wrap one attempt of ``task``'s handler: call ``run()`` once and
        return what it returns (it raises what the handler raises)."""
        return run()


class Hooks:
    """The hooks of one TaskQueue; ``emit`` calls each, never raising."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._added: tuple[Hook | Middleware, ...] = ()
        self._hooks: tuple[Callable[[Event], None], ...] = ()
        self._enqueuers: tuple[Middleware, ...] = ()
        self._wrappers: tuple[Middleware, ...] = ()

    def add(self, hook: Hook | Middleware) -> None:
        """Call ``hook`` with every event from now on (a Middleware: also
        around enqueues and attempts)."""
        if not isinstance(hook, Middleware) and not callable(hook):
            raise TypeError(f"a hook is a Middleware or callable with an Event, got {hook!r}")
        with self._lock:
            self._added = (*self._added, hook)
            self._rebuild()

    def remove(self, hook: Hook | Middleware) -> None:
        """Stop calling ``hook`` (no error if it was not added)."""
        with self._lock:
            self._added = tuple(h for h in self._added if h is not hook)
            self._rebuild()

    def _rebuild(self) -> None:
        # Tuples replaced whole, never mutated: the hot paths read them
        # without a lock. Only overridden Middleware methods are kept, so a
        # metrics middleware costs no wrapper around every attempt.
        middleware = [h for h in self._added if isinstance(h, Middleware)]
        self._hooks = tuple(
            h.on_event if isinstance(h, Middleware) else h
            for h in self._added
            if not isinstance(h, Middleware) or _overrides(h, "on_event")
        )
        self._enqueuers = tuple(m for m in middleware if _overrides(m, "before_enqueue"))
        self._wrappers = tuple(m for m in middleware if _overrides(m, "run_attempt"))

    def enqueue_meta(self, spec: TaskSpec) -> dict[str, Any] | None:
        """What the middleware adds to a task's meta as it is enqueued."""
        if not self._enqueuers:
            return None
        extra: dict[str, Any] = {}
        for middleware in self._enqueuers:
            try:
                added = middleware.before_enqueue(spec)
            except Exception:
                LOGGER.exception("middleware %r raised before enqueue", middleware)
                continue
            if added:
                extra.update(added)
        return extra or None

    def run_attempt(self, task: Task, run: Callable[[], Any]) -> Any:
        """``run()`` wrapped by every middleware that wraps attempts."""
        return self._wrapped(0, task, run) if self._wrappers else run()

    def _wrapped(self, index: int, task: Task, run: Callable[[], Any]) -> Any:
        if index == len(self._wrappers):
            return run()
        middleware = self._wrappers[index]
        inner = _Inner(lambda: self._wrapped(index + 1, task, run))
        try:
            return middleware.run_attempt(task, inner)
        except BaseException as exc:
            if inner.called and exc is inner.error:
                raise  # the handler's own error, passed through
            LOGGER.exception("middleware %r raised around task %d", middleware, task.id)
            if not inner.called:
                return inner()  # the attempt runs all the same
            if inner.error is not None:
                raise inner.error from None
            return inner.result

    def __bool__(self) -> bool:
        """True if anyone listens to events (so building them is worth it)."""
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


class _Inner:
    """The ``run`` a middleware gets: remembers whether it ran, and how."""

    __slots__ = ("_call", "called", "error", "result")

    def __init__(self, call: Callable[[], Any]) -> None:
        self._call = call
        self.called = False
        self.result: Any = None
        self.error: BaseException | None = None

    def __call__(self) -> Any:
        if self.called:
            raise RuntimeError("a middleware's run() may be called once")
        self.called = True
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc
            raise
        return self.result


def _overrides(middleware: Middleware, name: str) -> bool:
    return getattr(type(middleware), name) is not getattr(Middleware, name)
