"""Argument checks shared by the API's entry points (TaskSpec, TaskQueue,
WorkerOptions, the storage options), so one rule has one wording."""

from __future__ import annotations

import math
import re

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")


def is_number(value: object) -> bool:
    """An int or float, not a bool (True is not "1 second")."""
    return not isinstance(value, bool) and isinstance(value, (int, float))


def is_positive(value: object) -> bool:
    """A finite number > 0."""
    return is_number(value) and math.isfinite(value) and value > 0  # type: ignore[arg-type, operator]


def is_non_negative(value: object) -> bool:
    """A number >= 0, infinity allowed (NaN is not)."""
    return is_number(value) and not math.isnan(value) and value >= 0  # type: ignore[arg-type, operator]


def check_text(what: str, value: str) -> None:
    """SQLite stores UTF-8: a lone surrogate would fail deep in the driver
    with a UnicodeEncodeError; say what is wrong instead."""
    if value.isascii():
        return  # no surrogate possible (and no copy made to find out)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate?): {exc}") from None


def check_queue_name(queue_name: object) -> str:
    """A queue name: 1 to 100 ASCII letters, digits and ``-_.:``."""
    if type(queue_name) is str and queue_name == "default":
        return queue_name  # nearly every task's
    if not isinstance(queue_name, str) or not _QUEUE_NAME.fullmatch(queue_name):
        raise ValueError(
            f"a queue name is 1 to 100 characters of letters, digits and -_.: got {queue_name!r}"
        )
    return queue_name


def check_queue_names(queues: object) -> list[str] | None:
    """None (every queue), or a non-empty collection of queue names."""
    if queues is None:
        return None
    if isinstance(queues, str):
        raise TypeError(f"queues must be a sequence of queue names, not a string: {queues!r}")
    try:
        names = list(queues)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"queues must be a sequence of queue names, got {queues!r}") from None
    if not names:
        raise ValueError("queues must name at least one queue (None: every queue)")
    return [check_queue_name(name) for name in names]
