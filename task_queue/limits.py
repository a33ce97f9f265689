"""Rate and concurrency limits of task types, enforced at claim time.

``@handler("call_api", rate_limit="10/s")`` lets at most about 10 tasks of
the type start per second, across every process on the file: the limiter is
a token bucket in the database, and a claim takes only as many tasks of the
type as there are tokens. Tasks over the limit simply stay pending (no
attempt used, no retry, no error), other types keep flowing, and no worker
thread sleeps for it: the Worker looks again when the next token is due.

``@handler("sync_account", concurrency_limit=2)`` lets at most 2 tasks of the
type run at once across every process; with ``enqueue(...,
concurrency_key="account-42")`` the limit holds per key (tasks without a key
share one). Running tasks are counted from the tasks themselves, so a
crashed holder frees its place when its task is rescued, never later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping

from .checks import is_positive

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d*(?:\.\d+)?)\s*([smh])\s*")


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most ``count`` starts per ``per`` seconds, in bursts of at most
    ``burst`` (default 1: evenly spread; a bucket of that many tokens)."""

    count: float
    per: float = 1.0
    burst: float | None = None

    def __post_init__(self) -> None:
        per = self.per.total_seconds() if isinstance(self.per, dt.timedelta) else self.per
        object.__setattr__(self, "per", per)
        if not is_positive(self.count) or not is_positive(per):
            raise ValueError(f"a rate limit needs count and per > 0, got {self.count}/{self.per}")
        if self.burst is not None and not (is_positive(self.burst) and self.burst >= 1):
            raise ValueError(f"burst must be a number >= 1, got {self.burst!r}")

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return float(self.count) / float(self.per)

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds."""
        return float(self.burst or 1)

    @classmethod
    def parse(cls, value: object) -> RateLimit:
        """A RateLimit from itself or text like "10/s", "100/m", "5/2h"."""
        if isinstance(value, RateLimit):
            return value
        if not isinstance(value, str):
            raise TypeError(f"rate_limit must be like '10/s' or a RateLimit, got {value!r}")
        match = _RATE.fullmatch(value)
        if match is None:
            raise ValueError(f"rate_limit must be like '10/s', '100/m' or '5/2h', got {value!r}")
        count, times, unit = match.groups()
        return cls(float(count), (float(times) if times else 1.0) * _PER[unit])

    def tokens(self, stored: float, updated_at: float, now: float) -> float:
        """What a bucket holding ``stored`` tokens at ``updated_at`` holds at
        ``now``: refilled at :attr:`rate`, never past :attr:`capacity`, and
        never emptied by a clock that reads earlier than the stamp."""
        return min(self.capacity, stored + max(0.0, now - updated_at) * self.rate)

    def __str__(self) -> str:
        text = f"{self.count:g}/{self.per:g}s"
        return text if self.burst is None else f"{text} (burst {self.burst:g})"


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits of one task type, as a claim applies them."""

    rate: RateLimit | None = None
    #: At most this many running at once (per concurrency key).
    concurrency: int | None = None

    def __post_init__(self) -> None:
        c = self.concurrency
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise ValueError(f"concurrency_limit must be an int >= 1, got {c!r}")


def within_concurrency(
    candidates: Iterable[tuple[int, str]], running: Mapping[str, int], limit: int, room: int
) -> list[int]:
    """The ids among due ``candidates`` (id, concurrency key; '' for none),
    in their order, that a claim may take: at most ``room`` of them, and no
    key past ``limit`` running counting those already ``running``. One
    rule for every backend's claim."""
    counts = dict(running)
    ids: list[int] = []
    for task_id, key in candidates:
        if counts.get(key, 0) < limit:
            counts[key] = counts.get(key, 0) + 1
            ids.append(task_id)
            if len(ids) >= room:
                break
    return ids
