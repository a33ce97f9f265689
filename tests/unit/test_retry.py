"""retry.py on its own: the backoff, the retry-or-dead-letter decision, and
how a log line describes it. No database."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from task_queue.retry import NO_BACKOFF, RetryPolicy, decide, describe
from task_queue.task import Task, TaskPriority, TaskStatus


def make_task(retry_count: int = 0, max_retries: int = 3) -> Task:
    return Task(
        id=1, name="t", task_type="job", payload=None, priority=TaskPriority.NORMAL,
        status=TaskStatus.RUNNING, worker_id="w", created_at=0.0, scheduled_at=None,
        started_at=0.0, completed_at=None, max_retries=max_retries, retry_count=retry_count,
        error_message=None, result=None, attempts=retry_count + 1, claim_token=7,
    )  # fmt: skip


def fixed(value: float) -> RetryPolicy:
    """A policy whose jitter always draws ``value``."""
    return RetryPolicy(base=2.0, cap=100.0, random=lambda: value)


def ceiling(base: float, cap: float, retry_count: int) -> float:
    # 2**n beyond ~1000 is past any cap in the strategies below (and past
    # what a float holds): the ceiling is the cap there.
    return min(cap, base * 2.0**retry_count) if retry_count < 1000 else cap


# -- delay ---------------------------------------------------------------------


@given(
    base=st.floats(0.001, 100.0),
    cap=st.floats(0.0, 1e6),
    retry_count=st.integers(0, 10**6),
    draw=st.floats(0.0, 1.0, exclude_max=True),
)
def test_delay_is_within_zero_and_the_capped_exponential(
    base: float, cap: float, retry_count: int, draw: float
) -> None:
    delay = RetryPolicy(base=base, cap=cap, random=lambda: draw).delay(retry_count)
    assert 0.0 <= delay <= ceiling(base, cap, retry_count)


def test_delay_spans_the_whole_interval() -> None:
    # Full jitter: the draw scales the ceiling, from 0 up to it.
    assert fixed(0.0).delay(0) == 0.0
    assert fixed(0.5).delay(0) == 1.0
    assert fixed(1.0).delay(0) == 2.0
    assert fixed(1.0).delay(3) == 16.0
    assert fixed(1.0).delay(10) == 100.0  # capped


def test_huge_retry_counts_do_not_overflow() -> None:
    for policy in (fixed(1.0), RetryPolicy(base=1.0, cap=math.inf, random=lambda: 1.0)):
        for retry_count in (1023, 1024, 10**6, 2**63 - 1):
            delay = policy.delay(retry_count)
            assert math.isfinite(delay)
            assert 0.0 <= delay <= policy.cap


def test_the_default_jitter_is_random_within_bounds() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0)
    delays = {policy.delay(2) for _ in range(200)}
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(delays) > 1


def test_no_backoff_is_always_zero() -> None:
    assert {NO_BACKOFF.delay(n) for n in (0, 5, 10**6)} == {0.0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": math.nan},
        {"cap": math.nan},
        {"base": -1.0},
        {"cap": -0.5},
        {"base": -math.inf},
    ],
    ids=["base-nan", "cap-nan", "base-negative", "cap-negative", "base-minus-inf"],
)
def test_nan_and_negative_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="base and cap"):
        RetryPolicy(**kwargs)


# -- decide --------------------------------------------------------------------


def test_decide_gives_a_delay_while_retries_are_left() -> None:
    policy = fixed(1.0)
    assert decide(make_task(retry_count=0, max_retries=3), policy) == 2.0
    assert decide(make_task(retry_count=2, max_retries=3), policy) == 8.0


def test_decide_gives_none_once_retries_are_used_up() -> None:
    assert decide(make_task(retry_count=3, max_retries=3), fixed(1.0)) is None
    assert decide(make_task(retry_count=0, max_retries=0), fixed(1.0)) is None


def test_a_handlers_max_retries_overrides_the_tasks() -> None:
    policy = fixed(1.0)
    assert decide(make_task(retry_count=0, max_retries=0), policy, max_retries=2) == 2.0
    assert decide(make_task(retry_count=1, max_retries=5), policy, max_retries=1) is None
    # An override of 0 means none, not "unset".
    assert decide(make_task(retry_count=0, max_retries=5), policy, max_retries=0) is None


def test_decide_uses_the_policy_it_is_given() -> None:
    assert decide(make_task(retry_count=4), NO_BACKOFF, max_retries=10) == 0.0


# -- describe ------------------------------------------------------------------


def test_describe_a_retry() -> None:
    task = make_task(retry_count=0, max_retries=3)
    assert describe(task, 1.7) == "retrying in 1.7s (attempt 2 of 4)"
    assert describe(make_task(retry_count=2, max_retries=3), 0.04) == (
        "retrying in 0.0s (attempt 4 of 4)"
    )


def test_describe_a_retry_under_a_handler_override() -> None:
    task = make_task(retry_count=1, max_retries=0)
    assert describe(task, 12.34, max_retries=5) == "retrying in 12.3s (attempt 3 of 6)"


def test_describe_failed_for_good() -> None:
    assert describe(make_task(retry_count=3, max_retries=3), None) == (
        "failed for good after 4 attempt(s)"
    )
    assert describe(make_task(retry_count=0, max_retries=0), None) == (
        "failed for good after 1 attempt(s)"
    )
