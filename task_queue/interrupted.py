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
