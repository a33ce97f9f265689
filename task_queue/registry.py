"""Handlers: which function runs which task type.

Handlers come from an explicit registry filled by the application, never
from importing a name found in the database (that would let whoever writes
to the file choose code to run).

``TASK_HANDLERS`` is the default registry and a plain mutable mapping, so
seed.md's ``TASK_HANDLERS['custom_task'] = fn`` works. Applications that
want several sets of handlers create their own :class:`HandlerRegistry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TypeVar

from .retry import RetryPolicy

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
        _check_type(task_type)
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
        options = HandlerOptions(max_retries, timeout, retry_policy)
        self[task_type] = fn
        self._options[task_type] = options

    def handler(
        self,
        task_type: str,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`register`."""

        def decorate(fn: F) -> F:
            self.register(
                task_type, fn, max_retries=max_retries, timeout=timeout, retry_policy=retry_policy
            )
            return fn

        return decorate


_NO_OPTIONS = HandlerOptions()


def _check_type(task_type: object) -> None:
    if not isinstance(task_type, str) or not task_type or "\x00" in task_type:
        # NUL: SQLite's json_each (the claim's type filter) cuts strings at it.
        raise ValueError(f"task_type must be a non-empty string without NUL, got {task_type!r}")


#: The default registry, used by Workers created without ``handlers=``.
TASK_HANDLERS = HandlerRegistry()


def handler(
    task_type: str,
    *,
    max_retries: int | None = None,
    timeout: float | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Callable[[F], F]:
    """Register the decorated function in :data:`TASK_HANDLERS`."""
    return TASK_HANDLERS.handler(
        task_type, max_retries=max_retries, timeout=timeout, retry_policy=retry_policy
    )
