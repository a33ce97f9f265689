"""WorkerOptions: every setting of a Worker, validated in one place.

``Worker(queue, handlers, concurrency=8, drain_timeout=60)`` builds one; the
command line builds the same type from its flags.
"""

from __future__ import annotations

import dataclasses

from ..checks import check_queue_names, is_non_negative, is_positive


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    """How a Worker runs. Intervals are seconds."""

    #: Threads running handlers.
    concurrency: int = 4
    #: ``async def`` handlers running at once on the Worker's event loop
    #: (one thread, started only when there are such tasks).
    async_concurrency: int = 200
    #: Shown in thread names and logs (default "Worker-<n>").
    name: str | None = None
    #: How often to look for tasks enqueued by *other processes* (a cheap
    #: change check). Tasks enqueued through the same TaskQueue wake the
    #: worker at once.
    poll_interval: float = 0.05
    #: Tasks claimed ahead of a free thread; None adapts it to task length.
    prefetch: int | None = None
    #: How often the leases of held tasks are renewed (None: lease / 3).
    heartbeat_interval: float | None = None
    #: How often to rescue other workers' expired tasks (None: lease / 4,
    #: from 0.05 to 5 s).
    rescue_interval: float | None = None
    #: How long run() and ``with Worker(...)`` wait for running tasks at
    #: shutdown (None: as long as they take).
    drain_timeout: float | None = 30.0
    #: Seconds a timed-out handler gets to stop before its thread is
    #: abandoned and replaced.
    timeout_grace: float = 5.0
    #: How often an idle worker reports due tasks it has no handler for.
    idle_report_interval: float = 60.0
    #: The named queues it serves (None: every queue).
    queues: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        c = self.concurrency
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {c!r}")
        a = self.async_concurrency
        if isinstance(a, bool) or not isinstance(a, int) or a < 1:
            raise ValueError(f"async_concurrency must be an int >= 1, got {a!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if not is_positive(self.poll_interval):
            raise ValueError(f"poll_interval must be > 0 seconds, got {self.poll_interval!r}")
        p = self.prefetch
        if p is not None and (isinstance(p, bool) or not isinstance(p, int)):
            raise ValueError(f"prefetch must be an int >= 0 or None, got {p!r}")
        if p is not None and p < 0:
            object.__setattr__(self, "prefetch", 0)
        for field in ("heartbeat_interval", "rescue_interval"):
            value = getattr(self, field)
            if value is not None and not is_positive(value):
                raise ValueError(f"{field} must be > 0 seconds or None, got {value!r}")
        if self.drain_timeout is not None and not is_non_negative(self.drain_timeout):
            raise ValueError(
                f"drain_timeout must be >= 0 seconds or None, got {self.drain_timeout!r}"
            )
        if not is_non_negative(self.timeout_grace):
            raise ValueError(f"timeout_grace must be >= 0 seconds, got {self.timeout_grace!r}")
        queues = check_queue_names(self.queues)
        object.__setattr__(self, "queues", None if queues is None else tuple(queues))
        if not is_positive(self.idle_report_interval):
            raise ValueError(
                f"idle_report_interval must be > 0 seconds, got {self.idle_report_interval!r}"
            )

    def heartbeat(self, lease_seconds: float) -> float:
        """The heartbeat interval for a queue with this lease."""
        return self.heartbeat_interval or lease_seconds / 3

    def rescue(self, lease_seconds: float) -> float:
        """The rescue interval for a queue with this lease."""
        return self.rescue_interval or min(max(lease_seconds / 4, 0.05), 5.0)
