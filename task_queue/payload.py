"""JSON encoding of payloads and results.

JSON only, never pickle: a shared queue file that unpickles is remote code
execution for anyone who can write to it. We encode strictly (no NaN or
Infinity, no lone surrogates, no non-string keys coerced silently) and
limit the size, so whatever is stored decodes back to an equal value.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import PayloadError

#: Default upper bound for one encoded payload or result.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024

# Deep nesting makes json.loads/dumps hit the recursion limit on *decode*
# in another process; refuse it at encode time instead.
MAX_DEPTH = 200

# About 4,000 decimal digits: Python 3.11+ refuses to parse longer ints
# (sys.int_info.default_max_str_digits is 4,300), so a worker could not decode it.
_MAX_INT_BITS = 13_000

_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def encode(value: Any, *, what: str = "payload", max_bytes: int = DEFAULT_MAX_BYTES) -> str | None:
    """Return the JSON text for ``value`` or raise :class:`PayloadError`.

    ``None`` is stored as SQL NULL so "no payload" stays distinguishable
    from the JSON ``null``-less default.
    """
    if value is None:
        return None
    _check(value, what, 0)
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"{what} is not JSON-serializable: {exc}") from exc
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise PayloadError(f"{what} contains a lone surrogate: {exc}") from exc
    if size > max_bytes:
        raise PayloadError(f"{what} is {size} bytes encoded, more than the limit of {max_bytes}")
    return text


def decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _check(value: Any, what: str, depth: int) -> None:
    """Reject what json would accept but not round-trip exactly."""
    if depth > MAX_DEPTH:
        raise PayloadError(f"{what} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        # int subclasses (IntEnum) encode as their value; huge ints are
        # refused by int->str conversion limits on decode (Python 3.11+).
        if value.bit_length() > _MAX_INT_BITS:
            raise PayloadError(f"{what} contains an integer too large to round-trip")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(f"{what} contains {value!r}, which JSON cannot represent")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(
                    f"{what} has a non-string key {key!r}; "
                    "JSON would silently turn it into a string"
                )
            _check(item, what, depth + 1)
        return
    if isinstance(value, list):
        for item in value:
            _check(item, what, depth + 1)
        return
    if isinstance(value, tuple):
        raise PayloadError(f"{what} contains a tuple, which would come back as a list; use a list")
    raise PayloadError(f"{what} contains {type(value).__name__!s}, which is not JSON-serializable")
