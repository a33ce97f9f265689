"""The database server's clock, as a :class:`~task_queue.clock.Clock`.

Leases, due times (run_at) and rescue compare times written by different
machines, whose clocks differ. So on PostgreSQL every process takes "now"
from the server: :class:`ServerClock` is the local clock plus the offset
to the server's ``clock_timestamp()``, measured at connect (the best of a
few round trips, the server's reading set against the middle of each),
again every ~10 s, and at once when the local wall clock jumps (seen by
:class:`~task_queue.clock.JumpDetector`: the offset is corrected by the
jump at once, then measured again). Every process's "now" is then the
server's, within about half a round trip. TaskQueue uses it when it was
given no ``clock=`` (an injected ManualClock, in tests, bypasses it).

Reading it costs two local clock reads: no query runs in ``time()``; the
measurements run in a background thread, and a failed one (the server
restarting) keeps the last offset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ...clock import SYSTEM_CLOCK, JumpDetector

LOGGER = logging.getLogger(__name__)

#: Seconds between measurements of the offset.
REFRESH_EVERY = 10.0


class ServerClock:
    """Local time corrected to the database server's (see the module docstring).

    ``sample()`` returns (local time before, server time, local time after)
    of one round trip.
    """

    def __init__(
        self, sample: Callable[[], tuple[float, float, float]], refresh_every: float = REFRESH_EVERY
    ) -> None:
        self._sample = sample
        self._refresh_every = refresh_every
        self._lock = threading.Lock()
        self._jumps = JumpDetector(SYSTEM_CLOCK)
        self._offset = 0.0
        self._next = 0.0
        self._measuring = False
        self.measure()  # at connect, in the caller's thread: errors surface here
        self._jumps.jumped()

    @property
    def offset(self) -> float:
        """Seconds to add to the local clock to get the server's."""
        return self._offset

    def measure(self) -> float:
        """Measure the offset now (three round trips, the shortest kept)."""
        best: tuple[float, float] | None = None
        for _ in range(3):
            before, server, after = self._sample()
            rtt = after - before
            if best is None or rtt < best[0]:
                best = (rtt, server - (before + after) / 2)
        assert best is not None
        with self._lock:
            self._offset = best[1]
            self._next = time.monotonic() + self._refresh_every
        return best[1]

    def time(self) -> float:
        """The server's time now (UTC epoch seconds), within a round trip."""
        with self._lock:
            jump = self._jumps.jumped()
            if jump:
                # The local clock was set: the server's was not. Keep "now"
                # continuous at once, then measure again.
                self._offset -= jump
                self._next = 0.0
            refresh = time.monotonic() >= self._next and not self._measuring
            if refresh:
                self._measuring = True
            wall = time.time() + self._offset
        if refresh:
            threading.Thread(target=self._refresh, name="task_queue-clock", daemon=True).start()
        return wall

    def monotonic(self) -> float:
        """The local monotonic clock (durations inside one process)."""
        return time.monotonic()

    def _refresh(self) -> None:
        try:
            self.measure()
        except Exception as exc:
            LOGGER.debug("task_queue: measuring the server clock failed (kept the last): %s", exc)
            with self._lock:
                self._next = time.monotonic() + 1.0
        finally:
            with self._lock:
                self._measuring = False
