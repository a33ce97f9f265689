"""When a failed attempt runs again.

Exponential backoff with full jitter (delay drawn uniformly from
``[0, min(cap, base * 2**retry)]``): the AWS-architecture-blog result that
spreads a thundering herd of simultaneous failures best.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    #: Ceiling of the first retry's delay, in seconds.
    base: float = 1.0
    #: No delay ever exceeds this.
    cap: float = 300.0
    #: Draws the jitter; injectable for deterministic tests.
    random: Callable[[], float] = dataclasses.field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("RetryPolicy base and cap must be >= 0")

    def delay(self, retry_count: int) -> float:
        """Seconds to wait before retry number ``retry_count + 1``."""
        # Bound the exponent so a huge retry budget cannot overflow a float.
        ceiling = min(self.cap, self.base * (2.0 ** min(retry_count, 62)))
        return ceiling * self.random()
