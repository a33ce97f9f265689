"""JSON encoding of payloads and results.

JSON only, never pickle: a shared queue file that unpickles is remote code
execution for anyone who can write to it. We encode strictly (no NaN or
Infinity, no lone surrogates, no non-string keys coerced silently) and
limit the size, so whatever is stored decodes back to an equal value.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

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


def _encoder() -> Callable[[Any], str]:
    """_ENCODER.encode, or the same output for less: JSONEncoder.encode
    builds its C encoder anew at every call (three Python calls and an
    object per payload); this one is built once. It keeps no markers for
    circular references: _check, which runs first, refuses any nesting
    deeper than MAX_DEPTH, a cycle included."""
    try:
        from _json import make_encoder
    except ImportError:  # pragma: no cover - an interpreter without the C accelerator
        return _ENCODER.encode
    encode_once = make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False,
        False,
    )  # fmt: skip

    def dumps(value: Any) -> str:
        return "".join(encode_once(value, 0))

    return dumps


_dumps = _encoder()

T = TypeVar("T")

# Exact types that need no look inside (not int: it has a size limit).
_PLAIN = frozenset({str, bool, type(None)})

# Plain ints inside this range are far below the size limit.
_SMALL_INT = 2**62


def encode(value: Any, *, what: str = "payload", max_bytes: int = DEFAULT_MAX_BYTES) -> str | None:
    """Return the JSON text for ``value`` or raise :class:`PayloadError`.

    ``None`` is stored as SQL NULL so "no payload" stays distinguishable
    from the JSON ``null``-less default.
    """
    if value is None:
        return None
    try:
        _check(value, what)
    except PayloadError:
        raise
    except Exception as exc:  # a hostile __eq__, items(), __iter__...
        raise PayloadError(f"{what} could not be inspected: {_describe_error(exc)}") from exc
    try:
        text = _deep_enough(_dumps, value)
    except RecursionError as exc:
        raise PayloadError(
            f"{what} is nested too deeply to encode under this interpreter's recursion limit "
            f"({sys.getrecursionlimit()}); raise it or flatten the {what}"
        ) from exc
    except Exception as exc:
        raise PayloadError(f"{what} is not JSON-serializable: {_describe_error(exc)}") from exc
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise PayloadError(f"{what} contains a lone surrogate: {exc}") from exc
    if size > max_bytes:
        raise PayloadError(f"{what} is {size} bytes encoded, more than the limit of {max_bytes}")
    return text


def decode(text: str | None) -> Any:
    """The value of JSON ``text`` (None for SQL NULL)."""
    return None if text is None else _deep_enough(_loads, text)


# The decoder's C scanner (typeshed leaves the attribute out).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    # json.loads without its three Python-level calls (once per task
    # claimed, for its payload): the scanner straight away when the text
    # is one value with nothing around it, as what we store always is;
    # json.loads for anything else (whitespace, errors: its messages).
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _deep_enough(fn: Callable[[Any], T], arg: Any) -> T:
    """``fn(arg)``, on a fresh stack if the caller's is too deep for it.

    json recurses once per nesting level and, in CPython 3.11, that counts
    against the same recursion limit as the caller's own frames: a payload
    nested 150 deep fails in a caller already 900 frames deep, although it
    is well within MAX_DEPTH. A new thread starts with an empty stack.
    """
    try:
        return fn(arg)
    except RecursionError:
        pass
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn(arg)))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="task_queue-json", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


def _describe(obj: Any) -> str:
    """repr() for messages, which must not fail because of the object itself."""
    try:
        text = repr(obj)
    except Exception as exc:
        return f"<{type(obj).__name__} object; its repr() raised {_describe_error(exc)}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_error(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


def _check(value: Any, what: str) -> None:
    """Reject what json would accept but not round-trip exactly.

    Iterative, not recursive: the caller may already be deep in its stack,
    and the nesting under inspection is what we are bounding.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PayloadError(f"{what} is nested deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, str)):
            continue
        if isinstance(value, int):
            # int subclasses (IntEnum) encode as their value; huge ints are
            # refused by int->str conversion limits on decode (Python 3.11+).
            if value.bit_length() > _MAX_INT_BITS:
                raise PayloadError(f"{what} contains an integer too large to round-trip")
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise PayloadError(f"{what} contains {float(value)!r}, which JSON cannot represent")
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise PayloadError(
                        f"{what} has a non-string key {_describe(key)}; "
                        "JSON would silently turn it into a string"
                    )
                kind = type(item)
                if kind in _PLAIN or (kind is int and -_SMALL_INT < item < _SMALL_INT):
                    continue  # nothing to look at (the common case: no push, no pop)
                stack.append((item, depth + 1))
            continue
        if isinstance(value, list):
            stack.extend((item, depth + 1) for item in value if type(item) not in _PLAIN)
            continue
        if isinstance(value, tuple):
            raise PayloadError(
                f"{what} contains a tuple, which would come back as a list; use a list"
            )
        raise PayloadError(
            f"{what} contains {type(value).__name__!s}, which is not JSON-serializable"
        )
