"""What a caller interrupted while waiting for a write learns about that write.

An interrupt (KeyboardInterrupt from Ctrl-C, or any exception raised
asynchronously in the waiting thread) lands after the write was handed to
the storage thread, which commits or fails it regardless. Raising at once
would leave the caller guessing, and a caller that retries creates
duplicates. So the storage keeps waiting for the answer, then re-raises the
interrupt with the outcome noted on it as attributes:

* ``task_queue_result``: the write committed; the unit's return value;
* ``task_queue_error``: it did not commit (nothing written); why;
* ``task_queue_unknown = True``: a second interrupt abandoned the wait; the
  write may still commit.

``TaskQueue.enqueue``/``enqueue_many`` turn these into ``task_ids``. A
cancelled ``aenqueue`` is the coroutine's form of the same: the write goes
on, and the ``CancelledError`` carries ``task_ids`` (see :mod:`task_queue.aio`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

RESULT = "task_queue_result"
ERROR = "task_queue_error"
UNKNOWN = "task_queue_unknown"


def _set(exc: BaseException, name: str, value: Any) -> None:
    # Exception instances take attributes; a class that forbids them loses
    # the note rather than the interrupt.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, name, value)


def note_result(exc: BaseException, result: Any) -> None:
    _set(exc, RESULT, result)


def note_error(exc: BaseException, error: BaseException) -> None:
    _set(exc, ERROR, error)


def note_unknown(exc: BaseException) -> None:
    _set(exc, UNKNOWN, True)


def is_noted(exc: BaseException) -> bool:
    return hasattr(exc, RESULT) or hasattr(exc, ERROR) or getattr(exc, UNKNOWN, False) is True


def attach_task_ids(exc: BaseException, ids: Sequence[int] | None) -> None:
    """Set ``exc.task_ids`` for a caller of enqueue whose call ``exc`` ended.

    ``ids`` are the ids the call already had in hand (the commit was
    answered, something after it raised). ``task_ids`` is then the list of
    tasks committed, ``[]`` when nothing was written, or ``None`` when a
    second interrupt left the outcome unknown. An ordinary error of the
    write itself (not an interrupt) is left as it is: nothing was written.
    """
    if ids is not None:
        _set(exc, "task_ids", list(ids))
    elif hasattr(exc, RESULT):
        # The storage's enqueue answers (id, created) per task.
        _set(exc, "task_ids", [item[0] for item in getattr(exc, RESULT)])
    elif getattr(exc, UNKNOWN, False) is True:
        _set(exc, "task_ids", None)
    elif hasattr(exc, ERROR) or not isinstance(exc, Exception):
        # Failed, or interrupted before anything was handed over.
        _set(exc, "task_ids", [])


def note_nothing_handed_over(exc: BaseException) -> None:
    """``exc`` ended an enqueue before it handed anything to the storage (in
    its checks, its encoding, a middleware before the write): an interrupt
    then says nothing was written. Notes it carries are another call's (a
    signal handler's enqueue inside this one's checks), not this call's."""
    forget_notes(exc)
    if not isinstance(exc, Exception):
        _set(exc, "task_ids", [])


def forget_notes(exc: BaseException) -> None:
    """Drop the notes an inner call left on ``exc`` (a signal handler's own
    enqueue, whose interrupt surfaced in an outer call): the outer call's
    outcome is the one its caller must learn."""
    for name in (RESULT, ERROR, UNKNOWN, "task_ids"):
        with contextlib.suppress(AttributeError, TypeError):
            delattr(exc, name)


# -- threads that may receive asynchronous exceptions ---------------------------------

_THREAD = threading.local()


def expect_async_exceptions() -> None:
    """Mark the calling thread as one that may receive exceptions raised
    asynchronously by another thread (the Worker's executors: TaskTimeout
    through PyThreadState_SetAsyncExc). Storage writes from such a thread
    are handed to the storage thread rather than run in it."""
    _THREAD.async_exceptions = True


def expects_async_exceptions() -> bool:
    return getattr(_THREAD, "async_exceptions", False) is True
