"""A rate limit holds when the processes sharing the file disagree on the time.

The token bucket is refilled by the time since its last update, and each
claimer stamps the update with its own clock. A claimer whose clock is
behind used to move the stamp back, so the next claimer with a clock ahead
saw the whole difference as elapsed time and refilled up to a full burst at
once: with a 10 s skew and burst 5, 10 starts in one second at 1/s. The
stamp now never moves back: the bucket follows the furthest clock, a
lagging claimer only spends tokens already there.
"""

from __future__ import annotations

from task_queue import ManualClock, TaskQueue
from task_queue.limits import Limits, RateLimit

LIMITS = {"api": Limits(rate=RateLimit(1, per=1.0, burst=5))}


def claim(queue: TaskQueue, limit: int = 20) -> int:
    return len(queue.complete_and_claim([], limit, task_types=["api"], limits=LIMITS))


def test_a_claimer_with_a_clock_behind_does_not_hand_out_extra_tokens(db_path: str) -> None:
    # On either backend (db_path): PostgreSQL takes its time from the server,
    # but an injected clock wins, and a server's clock may step back too.
    path = db_path
    ahead, behind = ManualClock(1_700_000_010.0), ManualClock(1_700_000_000.0)
    with TaskQueue(path, clock=ahead) as a, TaskQueue(path, clock=behind) as b:
        a.enqueue_many([{"name": f"t{i}", "task_type": "api"} for i in range(2)])
        assert claim(a) == 2  # a full bucket of 5: 3 left, stamped 10 s ahead
        b.enqueue_many([{"name": f"u{i}", "task_type": "api"} for i in range(20)])
        assert claim(b) == 3  # the 3 left: nothing refilled for the lagging clock
        assert claim(b) == 0
        ahead.advance(1.0)
        behind.advance(1.0)
        # One second later, one token: not a burst refilled by the skew.
        assert claim(a) == 1
        assert claim(b) == 0
