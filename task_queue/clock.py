"""Time, injectable.

Everything that depends on the wall clock (due times, leases, backoff) asks a
:class:`Clock`, so tests can move time instead of sleeping. Durations that
only matter inside one process (timeouts, poll intervals) use the monotonic
clock, which does not jump when the wall clock is set.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock and monotonic time."""

    def time(self) -> float:
        """UTC epoch seconds, as stored in the database."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...


class SystemClock:
    """The real clocks: ``time.time()`` and ``time.monotonic()``."""

    def time(self) -> float:
        """UTC epoch seconds."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        """``start``: the epoch time it shows first (its monotonic time starts at 0)."""
        self._now = start
        self._mono = 0.0

    def time(self) -> float:
        """The wall-clock time it was moved to."""
        return self._now

    def monotonic(self) -> float:
        """Seconds it was moved forward in all."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both the wall clock and the monotonic clock forward."""
        self._now += seconds
        self._mono += seconds


SYSTEM_CLOCK = SystemClock()
