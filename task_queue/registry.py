"""Handlers: which function runs which task type.

Handlers come from an explicit registry filled by the application, never
from importing a name found in the database (that would let whoever writes
to the file choose code to run).

``TASK_HANDLERS`` is the default registry and a plain mutable mapping, so
``TASK_HANDLERS['custom_task'] = fn`` works. Applications that want several
sets of handlers create their own :class:`HandlerRegistry`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TypeVar

from .limits import Limits, RateLimit
from .periodic import Schedule, make_schedule
from .retry import RetryPolicy
from .spec import check_task_type

#: Where @periodic leaves its schedule when @handler is applied after it.
_PENDING = "__task_queue_schedules__"

HandlerFn = Callable[[Any], Any]
F = TypeVar("F", bound=HandlerFn)


@dataclasses.dataclass(frozen=True)
class HandlerOptions:
    """Per-handler defaults; None means "use the task's own value"."""

    #: Overrides the task's max_retries when this handler fails it.
    max_retries: int | None = None
    #: Seconds per attempt, for tasks enqueued without a timeout.
    timeout: float | None = None
    #: Backoff between retries for this handler's tasks.
    retry_policy: RetryPolicy | None = None
    #: At most this rate of starts, across every process ("10/s", a RateLimit).
    rate_limit: RateLimit | str | None = None
    #: At most this many running at once across every process (per
    #: concurrency key, for tasks enqueued with one).
    concurrency_limit: int | None = None

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("timeout must be > 0 seconds")
        if self.rate_limit is not None:
            object.__setattr__(self, "rate_limit", RateLimit.parse(self.rate_limit))
        Limits(concurrency=self.concurrency_limit)  # refuse a bad one now

    @property
    def limits(self) -> Limits | None:
        """The claim-time limits of this handler's tasks, if any."""
        if self.rate_limit is None and self.concurrency_limit is None:
            return None
        rate = self.rate_limit if isinstance(self.rate_limit, RateLimit) else None
        return Limits(rate=rate, concurrency=self.concurrency_limit)


class HandlerRegistry(MutableMapping[str, HandlerFn]):
    """task_type -> handler function, plus per-handler options."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerFn] = {}
        self._options: dict[str, HandlerOptions] = {}
        self._schedules: dict[str, Schedule] = {}

    def __getitem__(self, task_type: str) -> HandlerFn:
        return self._handlers[task_type]

    def __setitem__(self, task_type: str, fn: HandlerFn) -> None:
        check_task_type(task_type)
        if not callable(fn):
            raise TypeError(f"handler for {task_type!r} is not callable: {fn!r}")
        self._handlers[task_type] = fn

    def __delitem__(self, task_type: str) -> None:
        del self._handlers[task_type]
        self._options.pop(task_type, None)
        for name in [n for n, s in self._schedules.items() if s.task_type == task_type]:
            del self._schedules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def options(self, task_type: str) -> HandlerOptions:
        """The options of ``task_type``'s handler (all None when it has none)."""
        return self._options.get(task_type, _NO_OPTIONS)

    def register(
        self,
        task_type: str,
        fn: HandlerFn,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        rate_limit: RateLimit | str | None = None,
        concurrency_limit: int | None = None,
    ) -> None:
        """Run ``fn(payload)`` for tasks of ``task_type``; the keywords are
        its :class:`HandlerOptions` (per-handler defaults and limits)."""
        options = HandlerOptions(max_retries, timeout, retry_policy, rate_limit, concurrency_limit)
        self[task_type] = fn
        self._options[task_type] = options
        # @periodic may have been applied first (it sits below @handler).
        for cron, every, periodic_options in getattr(fn, _PENDING, ()):
            self._add_schedule(
                make_schedule(task_type, cron, every=every, options=periodic_options)
            )

    def merge(self, other: HandlerRegistry) -> None:
        """Add every handler of ``other`` with its options and schedules.

        A task type (or schedule name) already here with a different
        handler (or schedule) raises ValueError and adds nothing, so two
        modules cannot silently take each other's tasks.
        """
        for task_type, fn in other.items():
            mine = self._handlers.get(task_type)
            if mine is not None and (
                mine is not fn or self.options(task_type) != other.options(task_type)
            ):
                raise ValueError(
                    f"task type {task_type!r} has a different handler in each registry"
                )
        for name, schedule in other._schedules.items():
            if name in self._schedules and self._schedules[name] != schedule:
                raise ValueError(f"a schedule named {name!r} is declared in both registries")
        for task_type, fn in other.items():
            self._handlers[task_type] = fn
            if task_type in other._options:
                self._options[task_type] = other._options[task_type]
        self._schedules.update(other._schedules)

    def periodic(
        self, cron: str | None = None, *, every: float | dt.timedelta | None = None, **options: Any
    ) -> Callable[[F], F]:
        """Enqueue the decorated handler's task type on a schedule: a cron
        expression (``"0 3 * * *"``, with ``tz=``) or ``every=`` seconds or a
        timedelta. Stack it on ``@handler(...)`` (either order). Options:
        ``name``, ``tz``, ``payload``, ``priority``, ``queue_name``,
        ``misfire`` ("latest", "skip", "all"), ``grace``, ``max_retries``;
        see :class:`task_queue.periodic.Schedule`. A bad expression, time zone
        or option is refused here, when the module is imported."""
        # Checked now, with a placeholder type (the real one comes with @handler).
        make_schedule("_", cron, every=every, options=options)

        def decorate(fn: F) -> F:
            types = [t for t, f in self._handlers.items() if f is fn]
            for task_type in types:
                self._add_schedule(make_schedule(task_type, cron, every=every, options=options))
            if not types:  # @handler comes after: it takes the schedule along
                setattr(fn, _PENDING, [*getattr(fn, _PENDING, ()), (cron, every, options)])
            return fn

        return decorate

    def _add_schedule(self, schedule: Schedule) -> None:
        name = schedule.name or schedule.task_type
        if name in self._schedules and self._schedules[name] != schedule:
            raise ValueError(f"a schedule named {name!r} is already declared in this registry")
        self._schedules[name] = schedule

    def schedules(self) -> list[Schedule]:
        """The periodic schedules declared on this registry's handlers."""
        return list(self._schedules.values())

    def handler(self, task_type: str, **options: Any) -> Callable[[F], F]:
        """Decorator form of :meth:`register` (same keywords)."""
        HandlerOptions(**options)  # refuse bad options at declaration

        def decorate(fn: F) -> F:
            self.register(task_type, fn, **options)
            return fn

        return decorate


_NO_OPTIONS = HandlerOptions()


#: The default registry, used by Workers created without ``handlers=``.
TASK_HANDLERS = HandlerRegistry()

#: ``@handler("type", ...)``: register the decorated function in
#: :data:`TASK_HANDLERS` (see :meth:`HandlerRegistry.handler`).
handler = TASK_HANDLERS.handler

#: ``@periodic("0 3 * * *", ...)``: a schedule for the decorated handler in
#: :data:`TASK_HANDLERS` (see :meth:`HandlerRegistry.periodic`).
periodic = TASK_HANDLERS.periodic
