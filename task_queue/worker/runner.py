"""Runners: how a handler is called for one attempt.

:class:`ThreadRunner` calls a plain function in the executor's own thread,
with the task's context set (``current_task()``) and the slot marked "in
the handler" so that the timekeeper may raise ``TaskTimeout`` into it
(layer 2 of the timeouts) only while handler code runs, never while our
bookkeeping does.

A runner returns what happened, never raises: any exception the handler
raises, BaseExceptions such as SystemExit included, is the attempt's error.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any, Protocol

from ..context import _set_current
from ..errors import TaskTimeout
from ..events import Hooks
from .ledger import Attempt


class Runner(Protocol):
    def run(
        self, attempt: Attempt, fn: Callable[[Any], Any] | None
    ) -> tuple[BaseException | None, Any]:
        """Run ``fn(payload)`` for ``attempt``; (error, result)."""
        ...


def async_raise(thread_id: int, exc_type: type[BaseException]) -> None:
    """Raise ``exc_type`` in another thread at its next bytecode."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )


class ThreadRunner:
    """Calls the handler in the calling (executor) thread, wrapped by the
    queue's middleware."""

    def __init__(self, hooks: Hooks | None = None) -> None:
        self._hooks = hooks

    def run(
        self, attempt: Attempt, fn: Callable[[Any], Any] | None
    ) -> tuple[BaseException | None, Any]:
        slot, ctx = attempt.slot, attempt.ctx
        error: BaseException | None = None
        result: Any = None
        # Only an attempt with a deadline can get an asynchronous TaskTimeout
        # (the timekeeper looks at those alone): the others skip the lock.
        timed = ctx.deadline is not None
        _set_current(ctx)
        try:
            try:
                if timed:
                    with slot.lock:
                        slot.current = attempt
                        slot.in_handler = True
                ctx.check()  # given back (stop) or cancelled before it started
                if fn is None:
                    raise LookupError(
                        f"no handler registered for task type {attempt.task.task_type!r}"
                    )
                task = attempt.task
                if self._hooks is None:
                    result = fn(task.payload)
                else:
                    result = self._hooks.run_attempt(task, functools.partial(fn, task.payload))
            finally:
                if timed:
                    with slot.lock:
                        slot.in_handler = False
                        slot.current = None
                # A TaskTimeout scheduled just as the handler returned must
                # not hit our bookkeeping below: take it here. Never clear
                # one with PyThreadState_SetAsyncExc(NULL): on CPython 3.11
                # that leaves the eval breaker set, and under a profiler or
                # tracer (cProfile, coverage, pdb) the thread then spins
                # forever after its first task.
                if attempt.interrupted:
                    try:
                        for _ in range(3):
                            pass
                    except TaskTimeout:
                        pass
        except BaseException as exc:  # SystemExit etc. from handler code too
            error = exc
        finally:
            _set_current(None)
        return error, result
