"""When a failed attempt runs again, and whether it does: the retry-or-
dead-letter rule, in one place.

Backoff is exponential with full jitter (delay drawn uniformly from
``[0, min(cap, base * 2**retry)]``): the AWS-architecture-blog result that
spreads a thundering herd of simultaneous failures best.

:func:`decide` takes the task as it was claimed: while a claim is held no
one else can change its retry counters (every change is fenced by the
claim token), so the decision made from the claimed snapshot is the one the
storage records.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from .task import Task


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Backoff between retries: retry *n* (from 0) waits a random time in
    ``[0, min(cap, base * 2**n)]`` seconds."""

    #: Ceiling of the first retry's delay, in seconds.
    base: float = 1.0
    #: No delay ever exceeds this.
    cap: float = 300.0
    #: Draws the jitter; injectable for deterministic tests.
    random: Callable[[], float] = dataclasses.field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.cap >= 0):  # also refuses NaN
            raise ValueError("RetryPolicy base and cap must be >= 0")

    def delay(self, retry_count: int) -> float:
        """Seconds to wait before retry number ``retry_count + 1``."""
        # Bound the exponent so a huge retry budget cannot overflow a float.
        ceiling = min(self.cap, self.base * (2.0 ** min(retry_count, 62)))
        return max(0.0, ceiling * self.random())


#: A rescued task (its worker died) is due again at once.
NO_BACKOFF = RetryPolicy(base=0.0, cap=0.0)


def decide(task: Task, policy: RetryPolicy, max_retries: int | None = None) -> float | None:
    """Seconds until the next attempt of ``task`` after this one failed, or
    None when its retries are used up (it is failed for good: the
    dead-letter state). ``max_retries`` overrides the task's own (a
    handler's setting)."""
    limit = task.max_retries if max_retries is None else max_retries
    if task.retry_count < limit:
        return policy.delay(task.retry_count)
    return None


def describe(task: Task, retry_in: float | None, max_retries: int | None = None) -> str:
    """How a log line says what happens next: "retrying in 1.7s (attempt 2
    of 4)" or "failed for good after 4 attempts"."""
    limit = task.max_retries if max_retries is None else max_retries
    if retry_in is None:
        return f"failed for good after {task.retry_count + 1} attempt(s)"
    return f"retrying in {retry_in:.1f}s (attempt {task.retry_count + 2} of {limit + 1})"
