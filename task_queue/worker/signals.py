"""SIGINT and SIGTERM for ``Worker.run()``: the first asks for a graceful
drain, the second gives the running tasks back at once.

The handlers only set flags. A handler runs in the main thread between two
bytecodes, possibly while that thread holds a lock the handler would need
(the ledger's, the logging module's), so it takes none; the run loop polls
the flags and acts, logging included.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class ShutdownSignals:
    """A context manager installing the handlers (from the main thread only:
    elsewhere Python refuses them, and it does nothing)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, on_second: Callable[[int], None]) -> None:
        """``on_second(signum)`` runs in the signal handler on the second
        signal: it must only set a flag."""
        self._on_second = on_second
        #: Set by the first signal: drain and stop.
        self.requested = threading.Event()
        #: True after a second signal: give running tasks back now.
        self.forced = False
        #: The last signal received.
        self.signum: int | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            self.forced = True
            self._on_second(signum)
        self.signum = signum
        self.requested.set()

    def __enter__(self) -> ShutdownSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
