"""Text for people: durations ("30s", "5m", "2h", "7d"), local and relative
times ("in 5m", "2h ago"), control characters escaped, aligned columns.

Pure functions of their arguments (``now`` is passed in), so the unit tests
need no queue and no clock.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Sequence

#: Width every table fits in.
WIDTH = 100

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)([smhdw])")
_PLAIN = re.compile(r"\d+(?:\.\d+)?|\.\d+")
# Categories never printed raw: controls (ESC, newline...), format
# characters (bidi overrides that reorder what follows), surrogates, private
# use, and line/paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with a unit (``30s``, ``5m``, ``2h``,
    ``7d``, ``1w``), several (``1h30m``), or a bare number of seconds.
    ValueError for anything else (negative, empty, infinite...)."""
    spec = text.strip().lower()
    if _PLAIN.fullmatch(spec):
        seconds = float(spec)
    else:
        parts = _PART.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise ValueError(
                f"bad duration {text!r}: expected a number with a unit, like 30s, 5m, 2h or 7d"
            )
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {text!r}: too large")
    return seconds


def span(seconds: float) -> str:
    """A length of time in its largest unit, rounded: ``45s``, ``5m``, ``2h``, ``3d``."""
    seconds = abs(seconds)
    # Rounded, not cut: a task due in 4m59s is due "in 5m".
    for unit, size, below in (("s", 1, 60), ("m", 60, 60), ("h", 3600, 24)):
        count = round(seconds / size)
        if count < below:
            return f"{count}{unit}"
    return f"{round(seconds / 86400)}d"


def elapsed(seconds: float) -> str:
    """How long something ran: ``0.012s``, ``4.2s``, ``3m05s``."""
    if seconds < 10:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def relative(when: float | None, now: float) -> str:
    """``when`` (UTC epoch seconds) seen from ``now``: ``in 5m``, ``2h ago``,
    ``now`` within a second; past a week, the local date instead."""
    if when is None:
        return ""
    delta = when - now
    if abs(delta) < 1:
        return "now"
    if abs(delta) >= 7 * 86400:
        return local_time(when).strftime("%Y-%m-%d")
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def local_time(when: float) -> dt.datetime:
    """UTC epoch seconds as an aware datetime in the local zone."""
    return dt.datetime.fromtimestamp(when).astimezone()


def local_iso(when: float | None, now: float | None = None) -> str:
    """Local ISO-8601 to the second, with the relative time when ``now`` is
    given: ``2026-12-01T17:35:00+01:00 (2h ago)``; empty for None."""
    if when is None:
        return ""
    text = local_time(when).isoformat(timespec="seconds")
    if now is None:
        return text
    return f"{text} ({relative(when, now)})" if abs(when - now) < 7 * 86400 else text


def clean(text: str, keep: str = "") -> str:
    """``text`` safe for a terminal: every control, format or separator
    character (ESC, newline, a bidi override...) written as its escape
    (``\\x1b``, ``\\n``, ``\\u202e``), except those in ``keep``. Task names,
    types, errors and payloads come from whoever wrote to the queue."""
    if text.isprintable():  # False for every character of those categories
        return text
    return "".join(
        ch if ch in keep or unicodedata.category(ch) not in _UNSAFE else repr(ch)[1:-1]
        for ch in text
    )


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal: wide (CJK, emoji) characters
    count two, combining marks none."""
    total = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        total += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return total


def fit(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` wide, ending in "…" when cut."""
    if width(text) <= columns:
        return text
    out, used = [], 0
    for ch in text:
        w = width(ch)
        if used + w > columns - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def pad(text: str, columns: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``columns`` wide (on the left if ``right``)."""
    fill = " " * max(0, columns - width(text))
    return fill + text if right else text + fill


class Column:
    """One column of a :func:`table`: a header, whether numbers align right,
    and how narrow it may be squeezed (a column at its minimum is never cut
    further; numbers should not be cut at all)."""

    def __init__(self, header: str, *, right: bool = False, minimum: int | None = None) -> None:
        self.header = header
        self.right = right
        self.minimum = minimum


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], limit: int = WIDTH
) -> list[str]:
    """Aligned lines (a header, then one per row) that fit ``limit`` columns:
    each column as wide as its widest cell, then the widest squeezable
    columns cut (with "…") until the line fits. Cells must be clean()ed."""
    gap = 2
    widths = [
        max([width(c.header)] + [width(row[i]) for row in rows]) for i, c in enumerate(columns)
    ]
    floors = [
        w if c.minimum is None else min(w, c.minimum) for c, w in zip(columns, widths, strict=True)
    ]
    excess = sum(widths) + gap * (len(columns) - 1) - limit
    while excess > 0:
        room = [w - f for w, f in zip(widths, floors, strict=True)]
        widest = max(range(len(columns)), key=lambda i: room[i])
        if room[widest] <= 0:
            break  # nothing left to cut: the line stays longer
        widths[widest] -= 1
        excess -= 1
    lines = []
    for cells in [[c.header for c in columns], *rows]:
        parts = [
            pad(fit(cell, w), w, right=c.right)
            for c, cell, w in zip(columns, cells, widths, strict=True)
        ]
        lines.append((" " * gap).join(parts).rstrip())
    return lines
