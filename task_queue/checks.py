"""Argument checks shared by the API's entry points (TaskSpec, TaskQueue,
WorkerOptions, the storage options), so one rule has one wording."""

from __future__ import annotations

import math


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
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate?): {exc}") from None
