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

    def jump(self, seconds: float) -> None:
        """Move the wall clock only (forward or back), as an operator or an
        NTP step does; the monotonic clock does not move."""
        self._now += seconds


class JumpDetector:
    """Notices the wall clock being set: between two looks, wall and
    monotonic time should advance alike, and a difference beyond
    ``tolerance`` seconds (reading two clocks is not atomic) is a jump.

    Leases are wall-clock times shared between processes, so a forward
    jump makes live workers' leases look expired. A worker that notices a
    jump renews at once; a rescuer that notices one holds off for a while
    so that live workers can (README, "Clocks").
    """

    def __init__(self, clock: Clock, tolerance: float = 0.25) -> None:
        self._clock = clock
        self._tolerance = tolerance
        self._last: tuple[float, float] | None = None

    def jumped(self) -> float:
        """Seconds the wall clock jumped since the last call (0.0: none;
        negative: backwards). The first call only takes a reading."""
        wall, mono = self._clock.time(), self._clock.monotonic()
        last, self._last = self._last, (wall, mono)
        if last is None:
            return 0.0
        jump = (wall - last[0]) - (mono - last[1])
        return jump if abs(jump) > self._tolerance else 0.0


SYSTEM_CLOCK = SystemClock()
