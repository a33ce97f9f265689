"""The in-flight ledger on its own, with hand-made Tasks and a ManualClock.

No database and no Worker: the ledger is the only state a Worker's threads
share, so each transition (offer, take, finish, hand over, lose, stop) is
pinned here. Only the blocking take() uses a thread, synchronised with
deadlines.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest

from task_queue import ManualClock
from task_queue.context import TaskContext
from task_queue.task import Claim, Task, TaskPriority, TaskStatus
from task_queue.worker.ledger import Attempt, InFlight, Slot


def task(task_id: int, token: int = 1) -> Task:
    return Task(
        id=task_id, name=f"t{task_id}", task_type="job", payload=None,
        priority=TaskPriority.NORMAL, status=TaskStatus.RUNNING, worker_id="w",
        created_at=0.0, scheduled_at=None, started_at=0.0, completed_at=None, max_retries=3,
        retry_count=0, error_message=None, result=None, attempts=1, claim_token=token,
    )  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(clock: ManualClock) -> InFlight:
    return InFlight(clock.monotonic)


def starter(clock: ManualClock) -> Callable[[Task, Slot], Attempt]:
    """The ``start`` callable take() wants, as the executors build it."""

    def start(t: Task, slot: Slot) -> Attempt:
        return Attempt(t, TaskContext(t, None, clock.monotonic), slot, None)

    return start


def take(ledger: InFlight, clock: ManualClock, index: int = 0) -> Attempt:
    """Take from a non-empty buffer (never blocks)."""
    assert ledger.buffered, "take() would block on an empty buffer"
    attempt = ledger.take(Slot(index), starter(clock))
    assert attempt is not None
    return attempt


LONG = 1e9  # a lease that outlasts the test


def test_offer_buffers_the_tasks(ledger: InFlight) -> None:
    tasks = [task(1), task(2)]
    assert ledger.idle()
    assert ledger.offer(tasks, LONG) == []
    assert (ledger.buffered, ledger.running) == (2, 0)
    assert not ledger.idle()
    assert ledger.held() == [Claim(1, 1), Claim(2, 1)]


def test_take_moves_the_oldest_buffered_task_to_running(
    ledger: InFlight, clock: ManualClock
) -> None:
    ledger.offer([task(1), task(2)], LONG)
    attempt = take(ledger, clock)
    assert attempt.task.id == 1
    assert attempt.ctx.reason is None and not attempt.ctx.cancelled
    assert (ledger.buffered, ledger.running) == (1, 1)
    # Held either way: the heartbeat renews buffered and running alike.
    assert sorted(ledger.held()) == [Claim(1, 1), Claim(2, 1)]


def test_finish_hands_the_attempt_over_until_handed_over(
    ledger: InFlight, clock: ManualClock
) -> None:
    ledger.offer([task(1)], LONG)
    attempt = take(ledger, clock)
    assert ledger.finish(attempt, 0.5) is True
    assert (ledger.buffered, ledger.running) == (0, 0)
    assert ledger.held() == []
    # Handing over (the outcome not yet queued to the recorder): stop()
    # waits for these; there is no public count, so read the ledger's own.
    assert ledger._handing_over == 1
    ledger.handed_over()
    assert ledger._handing_over == 0
    assert ledger.idle()


def test_finish_keeps_a_moving_average_of_durations(ledger: InFlight, clock: ManualClock) -> None:
    assert ledger.avg_duration is None
    ledger.offer([task(1), task(2)], LONG)
    ledger.finish(take(ledger, clock), 1.0)
    assert ledger.avg_duration == 1.0
    ledger.finish(take(ledger, clock), 2.0)
    assert ledger.avg_duration == pytest.approx(0.8 * 1.0 + 0.2 * 2.0)


def test_attempts_are_keyed_by_claim_not_by_task_id(ledger: InFlight, clock: ManualClock) -> None:
    # A timed-out attempt (token 1) still runs when the retry of the same
    # task (token 2) starts here: the old one's end must not touch the new.
    old_task = task(7, token=1)
    new_task = dataclasses.replace(old_task, claim_token=2, attempts=2)
    ledger.offer([old_task], LONG)
    old = take(ledger, clock, index=0)
    ledger.offer([new_task], LONG)
    new = take(ledger, clock, index=1)
    assert ledger.running == 2
    assert ledger.finish(old, 3.0) is True
    assert ledger.running == 1
    assert ledger.held() == [Claim(7, 2)]
    # Finishing the old one again changes nothing; the new one finishes as usual.
    assert ledger.finish(old, 3.0) is False
    assert ledger.held() == [Claim(7, 2)]
    assert ledger.finish(new, 1.0) is True
    assert ledger.idle()


def test_an_abandoned_attempt_is_no_longer_this_workers_to_settle(
    ledger: InFlight, clock: ManualClock
) -> None:
    ledger.offer([task(1)], LONG)
    attempt = take(ledger, clock)
    ledger.add_slot(attempt.slot)
    assert ledger.abandon(attempt) is True
    assert attempt.slot.abandoned
    assert ledger.slots() == []
    assert ledger.running == 0
    assert ledger.abandon(attempt) is False
    # The handler returns late: the timekeeper settled it already.
    assert ledger.finish(attempt, 10.0) is False


def test_drop_removes_a_running_attempt(ledger: InFlight, clock: ManualClock) -> None:
    ledger.offer([task(1)], LONG)
    attempt = take(ledger, clock)
    assert ledger.drop(attempt) is True
    assert ledger.drop(attempt) is False
    assert ledger.idle()


def test_lose_drops_lost_buffered_tasks_and_reports_lost_running_ones(
    ledger: InFlight, clock: ManualClock
) -> None:
    ledger.offer([task(1), task(2), task(3)], LONG)
    running = take(ledger, clock)  # task 1
    attempts, dropped = ledger.lose({Claim(1, 1), Claim(3, 1), Claim(99, 1)})
    assert attempts == [running]
    assert [t.id for t in dropped] == [3]
    # Buffered: only task 2 is left. The lost running attempt stays until
    # its handler returns (the caller flags it to stop).
    assert take(ledger, clock).task.id == 2
    assert ledger.running == 2
    assert ledger.buffered == 0


def test_lose_of_claims_no_longer_here_is_nothing(ledger: InFlight, clock: ManualClock) -> None:
    ledger.offer([task(1)], LONG)
    ledger.finish(take(ledger, clock), 0.1)
    assert ledger.lose({Claim(1, 1)}) == ([], [])


def test_stop_taking_returns_the_buffered_tasks(ledger: InFlight, clock: ManualClock) -> None:
    ledger.offer([task(1), task(2), task(3)], LONG)
    take(ledger, clock)
    already, buffered = ledger.stop_taking()
    assert already is False
    assert [t.id for t in buffered] == [2, 3]
    assert ledger.buffered == 0
    assert ledger.stopping
    assert ledger.stop_taking() == (True, [])


def test_after_stop_taking_offers_are_refused_and_take_returns_none(
    ledger: InFlight, clock: ManualClock
) -> None:
    ledger.stop_taking()
    late = [task(1)]
    assert ledger.offer(late, LONG) == late  # the caller gives them back
    assert ledger.buffered == 0
    assert ledger.take(Slot(0), starter(clock)) is None


def test_take_blocks_until_a_task_is_offered(ledger: InFlight, clock: ManualClock) -> None:
    got: list[Attempt | None] = []
    taker = threading.Thread(
        target=lambda: got.append(ledger.take(Slot(0), starter(clock))), daemon=True
    )
    taker.start()
    ledger.offer([task(1)], LONG)
    taker.join(timeout=10)
    assert not taker.is_alive()
    assert [a.task.id for a in got if a is not None] == [1]


def test_a_blocked_take_returns_none_when_the_worker_stops(
    ledger: InFlight, clock: ManualClock
) -> None:
    got: list[Attempt | None] = []
    taker = threading.Thread(
        target=lambda: got.append(ledger.take(Slot(0), starter(clock))), daemon=True
    )
    taker.start()
    ledger.stop_taking()
    taker.join(timeout=10)
    assert not taker.is_alive()
    assert got == [None]


def test_a_buffered_task_whose_lease_ran_out_is_flagged_expired_when_taken(
    ledger: InFlight, clock: ManualClock
) -> None:
    now = clock.monotonic()
    ledger.offer([task(1), task(2)], now + 10)
    fresh = take(ledger, clock)
    assert fresh.ctx.reason is None
    clock.advance(10)  # the process was frozen past the lease
    stale = take(ledger, clock)
    assert stale.ctx.cancelled
    assert stale.ctx.reason == "expired"
    assert ledger.running == 2  # running until the executor gives it back


def test_a_renewal_keeps_a_buffered_task_valid(ledger: InFlight, clock: ManualClock) -> None:
    now = clock.monotonic()
    ledger.offer([task(1), task(2)], now + 10)
    ledger.renewed({Claim(1, 1)}, now + 100)
    clock.advance(50)
    assert take(ledger, clock).ctx.reason is None
    assert take(ledger, clock).ctx.reason == "expired"


def test_give_up_running_flags_and_returns_what_still_runs(
    ledger: InFlight, clock: ManualClock
) -> None:
    ledger.offer([task(1), task(2)], LONG)
    first, second = take(ledger, clock, 0), take(ledger, clock, 1)
    leftover = ledger.give_up_running()
    assert leftover == [first, second]
    assert all(a.ctx.reason == "shutdown" and a.slot.abandoned for a in leftover)
    assert ledger.running == 0
    assert ledger.finish(first, 1.0) is False


def test_wait_running_returns_at_its_deadline_or_when_forced(
    ledger: InFlight, clock: ManualClock
) -> None:
    ledger.offer([task(1)], LONG)
    take(ledger, clock)
    ledger.wait_running(clock.monotonic(), lambda: False)  # deadline now: at once
    ledger.wait_running(None, lambda: True)  # forced: at once
    assert ledger.running == 1
