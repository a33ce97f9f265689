"""The claim's limit rules, shared by both backends (task_queue/limits.py)."""

from __future__ import annotations

from task_queue.limits import RateLimit, within_concurrency


def test_tokens_refill_at_the_rate_up_to_the_burst_and_never_drain_on_a_clock_behind() -> None:
    limit = RateLimit(2, per=1.0, burst=5)
    assert limit.tokens(1.0, 100.0, 101.0) == 3.0
    assert limit.tokens(1.0, 100.0, 200.0) == 5.0  # no more than the burst
    assert limit.tokens(1.0, 100.0, 90.0) == 1.0  # a clock behind the stamp adds nothing


def test_within_concurrency_keeps_order_room_and_each_keys_limit() -> None:
    candidates = [(1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, ""), (6, "b")]
    assert within_concurrency(candidates, {"a": 1}, 2, room=10) == [1, 3, 5, 6]
    assert within_concurrency(candidates, {}, 1, room=2) == [1, 3]
    running = {"b": 2}
    assert within_concurrency(candidates, running, 2, room=10) == [1, 2, 5]
    assert running == {"b": 2}, "the caller's counts are not changed"
