"""The dispatcher driven by hand: ``Dispatcher.step(now)`` on a ManualClock,
with no thread started.

The parts are wired the way ``task_queue/worker/worker.py`` wires them (a
real TaskQueue on a tmp file, the in-flight ledger, a Recorder that is never
started, a RescueService), so each step's effect is read back from the
queue itself. Time moves only through ``clock.advance()``, which moves the
wall clock (due times, leases) and the monotonic one (intervals) together.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from task_queue import HandlerRegistry, ManualClock, StorageError, TaskQueue, WorkerOptions
from task_queue.context import TaskContext
from task_queue.maintenance import RescueService
from task_queue.task import Task, TaskStatus
from task_queue.worker.dispatcher import Dispatcher
from task_queue.worker.ledger import Attempt, InFlight, Slot
from task_queue.worker.recorder import Outcome, Recorder

LEASE = 30.0


@dataclasses.dataclass
class Parts:
    clock: ManualClock
    queue: TaskQueue
    ledger: InFlight
    recorder: Recorder
    rescue: RescueService
    dispatcher: Dispatcher

    def now(self) -> float:
        return self.clock.monotonic()

    def settle(self) -> float:
        """Step at the current time until the dispatcher wants to wait (a
        step that claimed returns ``now``: re-evaluate at once); returns
        when it wants to step next."""
        now = self.now()
        for _ in range(20):
            next_at = self.dispatcher.step(now)
            if next_at > now:
                return next_at
        raise AssertionError("the dispatcher kept asking to step again at once")

    def advance(self, seconds: float) -> float:
        self.clock.advance(seconds)
        return self.settle()

    def start_next(self) -> Attempt:
        """An executor takes the next buffered task (its handler now runs)."""
        assert self.ledger.buffered, "nothing buffered to start"
        attempt = self.ledger.take(Slot(0), self._start)
        assert attempt is not None
        return attempt

    def run(self, elapsed: float) -> Attempt:
        """An executor runs the next buffered task, whose handler returns
        after ``elapsed`` seconds (the ledger learns the duration)."""
        attempt = self.start_next()
        assert self.ledger.finish(attempt, elapsed)
        self.ledger.handed_over()
        return attempt

    def _start(self, task: Task, slot: Slot) -> Attempt:
        return Attempt(task, TaskContext(task, None, self.clock.monotonic), slot, None)

    def buffered_ids(self) -> list[int]:
        return sorted(claim.task_id for claim in self.ledger.held())


@pytest.fixture
def make_parts(db_path: str) -> Iterator[Any]:
    queues: list[TaskQueue] = []

    def make(
        handled: tuple[str, ...] = ("job",),
        on_closed: Callable[[StorageError], None] = lambda error: None,
        busy_timeout: float = 30.0,
        **options: Any,
    ) -> Parts:
        clock = ManualClock()
        queue = TaskQueue(db_path, clock=clock, lease_seconds=LEASE, busy_timeout=busy_timeout)
        queues.append(queue)
        handlers = HandlerRegistry()
        for task_type in handled:
            handlers[task_type] = lambda payload: None
        opts = WorkerOptions(**{"concurrency": 2, "name": "W", **options})
        ledger = InFlight(clock.monotonic)
        recorder = Recorder(queue, "W")  # never started: the dispatcher only borrows from it
        rescue = RescueService(queue, opts.rescue(queue.lease_seconds))
        dispatcher = Dispatcher(
            name="W",
            worker_id="host:1:W",
            queue=queue,
            handlers=handlers,
            options=opts,
            ledger=ledger,
            recorder=recorder,
            services=[rescue],
            on_closed=on_closed,
        )
        return Parts(clock, queue, ledger, recorder, rescue, dispatcher)

    yield make
    for queue in queues:
        queue.close()


def test_a_step_with_free_capacity_claims_due_tasks_into_the_buffer(make_parts: Any) -> None:
    parts = make_parts(concurrency=2)
    queue = parts.queue
    low = queue.enqueue("low", "job", priority="LOW")
    high = queue.enqueue("high", "job", priority="HIGH")
    normal = queue.enqueue("normal", "job")
    unhandled = queue.enqueue("other", "not-a-handled-type", priority="CRITICAL")

    parts.settle()
    # Capacity 2 (no prefetch until a duration is known): the two best of
    # the types this worker handles.
    assert parts.ledger.buffered == 2
    assert parts.buffered_ids() == sorted([high, normal])
    for claim in parts.ledger.held():
        stored = queue.get_task(claim.task_id)
        assert stored is not None
        assert stored.status is TaskStatus.RUNNING
        assert stored.claim_token == claim.token
        assert stored.worker_id == "host:1:W"
    assert queue.get_task(low).status is TaskStatus.PENDING  # type: ignore[union-attr]
    assert queue.get_task(unhandled).status is TaskStatus.PENDING  # type: ignore[union-attr]

    # Full: a later step claims nothing more.
    parts.clock.advance(2.0)
    parts.dispatcher.step(parts.now())
    assert parts.ledger.buffered == 2
    assert queue.get_task(low).status is TaskStatus.PENDING  # type: ignore[union-attr]


def test_a_step_with_nothing_due_claims_nothing(make_parts: Any) -> None:
    parts = make_parts()
    next_at = parts.settle()
    assert parts.ledger.idle()
    assert next_at > parts.now()


def test_a_scheduled_task_is_claimed_once_the_clock_passes_its_time(make_parts: Any) -> None:
    parts = make_parts(heartbeat_interval=100.0, rescue_interval=100.0)
    later = parts.queue.enqueue("later", "job", delay=10.0)

    next_at = parts.settle()
    assert parts.ledger.idle()
    # It wakes no later than the task falls due (0 + 10 on the monotonic clock).
    assert parts.now() < next_at <= parts.now() + 10.0

    next_at = parts.advance(6.0)  # the sweep claims every second: still nothing due
    assert parts.ledger.idle()
    assert next_at <= parts.now() + 4.0

    parts.advance(4.0)
    assert parts.buffered_ids() == [later]
    assert parts.queue.get_task(later).status is TaskStatus.RUNNING  # type: ignore[union-attr]


def test_the_heartbeat_extends_the_leases_when_its_interval_has_passed(make_parts: Any) -> None:
    parts = make_parts(heartbeat_interval=5.0)
    queue = parts.queue
    task_id = queue.enqueue("t", "job")
    start = queue.clock.time()
    next_at = parts.settle()
    assert parts.buffered_ids() == [task_id]
    assert next_at <= parts.now() + 5.0  # it wakes for the heartbeat
    assert queue.get_task(task_id).lease_expires_at == start + LEASE  # type: ignore[union-attr]

    parts.advance(4.0)  # not yet
    assert queue.get_task(task_id).lease_expires_at == start + LEASE  # type: ignore[union-attr]

    parts.advance(1.0)
    assert queue.get_task(task_id).lease_expires_at == start + 5.0 + LEASE  # type: ignore[union-attr]
    parts.advance(5.0)
    assert queue.get_task(task_id).lease_expires_at == start + 10.0 + LEASE  # type: ignore[union-attr]


def test_the_heartbeat_drops_a_buffered_task_that_was_cancelled(make_parts: Any) -> None:
    parts = make_parts(heartbeat_interval=5.0)
    kept = parts.queue.enqueue("kept", "job")
    cancelled = parts.queue.enqueue("cancelled", "job")
    parts.settle()
    assert parts.buffered_ids() == [kept, cancelled]
    assert parts.queue.cancel_task(cancelled)

    parts.advance(5.0)
    assert parts.buffered_ids() == [kept]
    after = parts.queue.get_task(cancelled)
    assert after is not None and after.status is TaskStatus.CANCELLED


def test_rescue_runs_on_its_interval(make_parts: Any) -> None:
    parts = make_parts(rescue_interval=60.0, heartbeat_interval=100.0)
    queue = parts.queue
    # Another worker claimed a task (of a type this one does not handle,
    # so a rescued task stays visible as pending) and then stopped renewing.
    lost_id = queue.enqueue("lost", "elsewhere", max_retries=2)
    [lost] = queue.complete_and_claim((), 1, worker_id="gone", task_types=["elsewhere"])
    assert lost.id == lost_id

    parts.settle()  # the first rescue runs at once: nothing has expired yet
    assert parts.rescue.last_rescued == 0

    next_at = parts.advance(LEASE + 1)  # expired now, but the rescue is not due again
    after = queue.get_task(lost_id)
    assert after is not None and after.status is TaskStatus.RUNNING
    assert next_at <= 60.0  # it wakes for the rescue

    parts.advance(60.0 - parts.now())
    assert parts.rescue.last_rescued == 1
    after = queue.get_task(lost_id)
    assert after is not None
    assert after.status is TaskStatus.PENDING
    assert after.retry_count == 1
    assert "claim lost" in (after.error_message or "")


def test_a_claim_takes_waiting_completions_along(make_parts: Any) -> None:
    parts = make_parts(concurrency=1)
    first = parts.queue.enqueue("first", "job")
    parts.settle()
    attempt = parts.run(elapsed=2.0)
    parts.recorder.add(Outcome(attempt.task, result='"done"'))
    second = parts.queue.enqueue("second", "job")

    # What the Worker's enqueue listener does; the recorder thread never ran.
    parts.dispatcher.hint()
    parts.settle()
    done = parts.queue.get_task(first)
    assert done is not None and done.status is TaskStatus.COMPLETED
    assert done.result == "done"
    assert parts.recorder.held() == []
    assert parts.buffered_ids() == [second]


# Regressions: each made the dispatcher thread spin (Dispatcher.run waits
# max(0, next_at - now) between steps, so a step that keeps answering "now"
# or a time already past is a busy loop holding the GIL; measured ~200,000
# steps/s, a full core).


def test_a_full_worker_waits_instead_of_stepping_again_at_once(make_parts: Any) -> None:
    parts = make_parts(concurrency=1, prefetch=0)
    parts.queue.enqueue("long", "job")
    parts.settle()
    parts.start_next()  # the only thread runs it, for longer than the sweep interval
    parts.clock.advance(2.0)
    now = parts.now()
    next_at = parts.dispatcher.step(now)
    assert next_at > now


def test_a_worker_without_handlers_waits_instead_of_stepping_again_at_once(
    make_parts: Any,
) -> None:
    parts = make_parts(handled=())
    parts.queue.enqueue("t", "job")
    parts.settle()  # raises if it never asks to wait


# -- prefetch sizing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("avg_duration", "capacity"),
    [
        (None, 2),  # unknown yet: no further ahead than the threads
        (5.0, 2),
        (0.2, 2),  # longer than the 0.1 s each thread may hold: nothing extra
        (0.1, 4),  # one each
        (0.01, 22),  # 10 each: 0.1 s of work
        (0.001, 2 + 2 * 100),
        (0.0005, 2 + 2 * 128),  # at most 128 each, however short
        (0.00001, 2 + 2 * 128),
    ],
)
def test_capacity_adapts_to_the_average_duration(
    make_parts: Any, avg_duration: float | None, capacity: int
) -> None:
    parts = make_parts(concurrency=2, prefetch=None)
    parts.ledger.avg_duration = avg_duration
    assert parts.dispatcher.capacity() == capacity


@pytest.mark.parametrize("prefetch", [0, 3])
def test_a_set_prefetch_is_kept_whatever_the_durations(make_parts: Any, prefetch: int) -> None:
    parts = make_parts(concurrency=2, prefetch=prefetch)
    for avg in (None, 5.0, 0.0001):
        parts.ledger.avg_duration = avg
        assert parts.dispatcher.capacity() == 2 + prefetch


def test_short_tasks_make_the_next_claim_reach_further_ahead(make_parts: Any) -> None:
    parts = make_parts(concurrency=1, prefetch=None)
    parts.queue.enqueue_many([{"name": f"t{n}", "task_type": "job"} for n in range(40)])
    parts.settle()
    assert (parts.ledger.buffered, parts.ledger.running) == (1, 0)

    parts.run(elapsed=0.0001)  # one very short task: prefetch up to 128 per thread
    parts.dispatcher.room()  # what the executor signals after a task
    parts.settle()
    assert parts.ledger.buffered == 39  # every task left (1 + 128 would be room)


# -- storage errors ----------------------------------------------------------------


def test_storage_errors_are_waited_out_with_growing_backoff(make_parts: Any) -> None:
    parts = make_parts(heartbeat_interval=1.0, busy_timeout=0.01)
    parts.queue.enqueue("t", "job")
    parts.settle()
    # Another process holds the write lock: every write raises
    # DatabaseBusyError, a passing fault the dispatcher waits out.
    locker = sqlite3.connect(parts.queue.path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        parts.clock.advance(1.0)
        now = parts.now()
        delays = [parts.dispatcher.step(now) - now for _ in range(9)]
    finally:
        locker.close()
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])


def test_a_closed_queue_stops_the_dispatcher_instead_of_retrying(make_parts: Any) -> None:
    """Closed is permanent: retrying it spun forever (issue 14)."""
    closed: list[bool] = []
    parts = make_parts(heartbeat_interval=1.0, on_closed=lambda error: closed.append(True))
    parts.queue.enqueue("t", "job")
    parts.settle()
    parts.queue.close()
    parts.clock.advance(1.0)
    now = parts.now()
    assert parts.dispatcher.step(now) >= now + 60
    assert parts.dispatcher.step(now) >= now + 60
    assert closed == [True]
