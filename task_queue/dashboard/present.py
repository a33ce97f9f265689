"""How values are shown: times, JSON, the throughput chart's geometry.

Pure functions of their arguments (``now`` is passed in, from the queue's
clock), registered as template filters by :mod:`.app`. They return plain
strings and numbers; the templates escape them like everything else.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Longest JSON or text shown in full on a page (payloads may be 8 MiB).
MAX_SHOWN = 64 * 1024


def utc(ts: float | None) -> str:
    """Epoch seconds as ``2026-11-28 12:00:03 UTC`` (empty for None)."""
    if ts is None:
        return ""
    try:
        moment = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return repr(ts)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ts: float | None) -> str:
    """Epoch seconds as ISO 8601 (for ``<time datetime=...>``)."""
    if ts is None:
        return ""
    try:
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return ""


def duration(seconds: float) -> str:
    """A short human duration: ``850 ms``, ``42 s``, ``3 min``, ``5 h 10 min``, ``3 d``."""
    seconds = abs(seconds)
    if not math.isfinite(seconds):
        return "forever"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        hours, rest = divmod(int(seconds), 3600)
        return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"
    return f"{seconds / 86400:.0f} d"


def relative(ts: float | None, now: float) -> str:
    """``3 min ago`` / ``in 5 s`` (empty for None)."""
    if ts is None:
        return ""
    delta = ts - now
    if abs(delta) < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def pretty_json(value: Any) -> str:
    """A JSON value indented for reading, cut at :data:`MAX_SHOWN` characters.
    Only ever shown as escaped text: never evaluated, never marked safe."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    return clip(text)


def clip(text: str | None, limit: int = MAX_SHOWN) -> str:
    """``text`` up to ``limit`` characters, saying how much was left out."""
    if text is None:
        return ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters not shown)"


def one_line(text: str | None, limit: int = 120) -> str:
    """The first line of ``text``, cut to ``limit`` characters (for tables)."""
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def count(n: int) -> str:
    """An integer with thousands separators."""
    return f"{n:,}"


# -- the throughput chart ----------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One bucket of the chart: completed stacked under failed."""

    x: float
    width: float
    done_y: float
    done_h: float
    failed_y: float
    failed_h: float
    title: str


@dataclass(frozen=True)
class Chart:
    """An SVG bar chart's geometry, in viewBox units."""

    width: int
    height: int
    top: int
    bottom: int
    bars: list[Bar]
    #: The largest bucket's total (the top of the scale).
    peak: int
    completed: int
    failed: int
    #: (x, label) under the axis.
    ticks: list[tuple[float, str]]


def throughput_chart(
    buckets: Sequence[tuple[float, int, int]],
    now: float,
    *,
    width: int = 720,
    height: int = 170,
) -> Chart:
    """The geometry of a stacked bar chart of ``TaskQueue.throughput()``
    buckets (start, completed, failed), oldest first."""
    top, bottom, left, right = 16, 22, 0, 0
    plot_h = height - top - bottom
    peak = max((done + failed for _, done, failed in buckets), default=0)
    scale = plot_h / peak if peak else 0.0
    n = max(1, len(buckets))
    step = (width - left - right) / n
    gap = min(2.0, step * 0.2)
    bars = []
    base = top + plot_h
    for i, (start, done, failed) in enumerate(buckets):
        x = left + i * step
        done_h = done * scale
        failed_h = failed * scale
        label = dt.datetime.fromtimestamp(start, dt.timezone.utc).strftime("%H:%M")
        title = f"{label} UTC: {done:,} completed, {failed:,} failed"
        bar = Bar(
            x=round(x + gap / 2, 2), width=round(step - gap, 2),
            done_y=round(base - done_h, 2), done_h=round(done_h, 2),
            failed_y=round(base - done_h - failed_h, 2), failed_h=round(failed_h, 2),
            title=title,
        )  # fmt: skip
        bars.append(bar)
    ticks: list[tuple[float, str]] = []
    if buckets:
        span = now - buckets[0][0]
        for i, label in ((0, f"{duration(span)} ago"), (n // 2, f"{duration(span / 2)} ago")):
            ticks.append((round(left + (i + 0.5) * step, 2), label))
        ticks.append((round(left + (n - 0.5) * step, 2), "now"))
    return Chart(
        width=width, height=height, top=top, bottom=bottom, bars=bars, peak=peak,
        completed=sum(d for _, d, _ in buckets), failed=sum(f for _, _, f in buckets),
        ticks=ticks,
    )  # fmt: skip
