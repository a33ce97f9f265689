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
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TypeVar

from .retry import RetryPolicy
from .spec import check_task_type

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

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("timeout must be > 0 seconds")


class HandlerRegistry(MutableMapping[str, HandlerFn]):
    """task_type -> handler function, plus per-handler options."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerFn] = {}
        self._options: dict[str, HandlerOptions] = {}

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
    ) -> None:
        """Run ``fn(payload)`` for tasks of ``task_type``; the keywords are
        its :class:`HandlerOptions` (per-handler defaults)."""
        options = HandlerOptions(max_retries, timeout, retry_policy)
        self[task_type] = fn
        self._options[task_type] = options

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
