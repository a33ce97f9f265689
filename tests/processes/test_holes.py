"""Holes found by trying to break the library from outside (issue 14), in
the Worker and the queue; each test failed before its fix."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from typing import Any

import pytest
from support import wait_until

from task_queue import (
    HandlerRegistry,
    RetryPolicy,
    TaskNotClaimedError,
    TaskQueue,
    Worker,
    current_task,
)


class SkewedClock:
    """Real time, with a wall clock an operator can set (jump): the
    monotonic clock does not move with it, as on a real machine."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def jump(self, seconds: float) -> None:
        self.offset += seconds


def _status(queue: TaskQueue, task_id: int) -> str:
    task = queue.get_task(task_id)
    assert task is not None
    return task.status.value


# -- 3: the same task twice in one Worker --------------------------------------------------


def test_an_old_attempt_ending_does_not_clobber_the_newer_attempt_in_the_same_worker(
    db_path: str,
) -> None:
    """cancel_task() then retry_task() while the handler still runs: the
    retry starts in the same Worker; the old attempt's end used to remove
    the new attempt's record (tracked by task id), so the new result was
    thrown away and the task sat running until its lease expired."""
    gates = {1: threading.Event(), 2: threading.Event()}
    started: list[int] = []

    def work(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        attempt = ctx.task.attempts
        started.append(attempt)
        gates[attempt].wait(30)  # the first one ignores its cancellation
        return f"attempt {attempt}"

    with TaskQueue(db_path, lease_seconds=30) as queue:
        task_id = queue.enqueue("twice", "work")
        worker = Worker(queue, {"work": work}, concurrency=2, heartbeat_interval=0.05).start()
        try:
            wait_until(lambda: started == [1])
            assert queue.cancel_task(task_id)
            assert queue.retry_task(task_id)
            wait_until(lambda: started == [1, 2])
            gates[1].set()  # the old attempt returns first: discarded
            wait_until(lambda: worker.in_flight == 1)
            gates[2].set()
            wait_until(lambda: _status(queue, task_id) == "completed", timeout=10)
            done = queue.get_task(task_id)
            assert done is not None and done.result == "attempt 2"
        finally:
            for gate in gates.values():
                gate.set()
            worker.stop(10)
        assert _status(queue, task_id) == "completed"


# -- 4: one outcome's error never affects another's -----------------------------------------


def test_a_purged_running_task_does_not_drop_the_other_failures_of_its_batch(
    db_path: str,
) -> None:
    gate = threading.Event()
    registry = HandlerRegistry()

    @registry.handler("fail", max_retries=0)
    def fail(payload: Any) -> None:
        gate.wait(30)
        raise RuntimeError(f"failure {payload}")

    with TaskQueue(db_path) as queue:
        doomed = queue.enqueue("doomed", "fail", 0)
        others = [queue.enqueue(f"other {i}", "fail", i) for i in range(1, 8)]
        worker = Worker(queue, registry, concurrency=8, prefetch=0).start()
        try:
            wait_until(lambda: queue.get_queue_stats()["running"] == 8)
            # Cancelled while its handler runs, then purged: its failure
            # will find no row.
            assert queue.cancel_task(doomed)
            assert queue.purge(0, ["cancelled"]) == 1
            gate.set()
            wait_until(
                lambda: all(_status(queue, i) == "failed" for i in others), timeout=10
            )  # well within the 30 s lease: recorded, not rescued
        finally:
            gate.set()
            worker.stop(10)
        assert queue.get_task(doomed) is None
        assert queue.get_queue_stats()["running"] == 0


# -- 5: clock jumps ------------------------------------------------------------------------


def test_a_forward_jump_of_the_wall_clock_does_not_rescue_live_tasks(db_path: str) -> None:
    """A jump past the lease made every live, heartbeating task look
    expired: a max_retries=0 task failed with "worker died", others ran
    twice at once."""
    clock = SkewedClock()
    runs: list[int] = []
    jumped = threading.Event()

    def slow(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        runs.append(ctx.task.id)
        jumped.wait(30)
        ctx.wait(1.0)  # keeps running well past the jump
        return "done"

    with (
        TaskQueue(db_path, lease_seconds=2.0, clock=clock) as mine,
        TaskQueue(  # type: ignore[arg-type]
            db_path,
            lease_seconds=2.0,
            clock=clock,
            rescue_interval=0.01,  # type: ignore[arg-type]
        ) as other,
    ):
        ids = [mine.enqueue(f"live {i}", "slow", max_retries=0) for i in range(2)]
        worker = Worker(mine, {"slow": slow}, concurrency=2, prefetch=0).start()
        rescuer = Worker(other, {"slow": slow}, concurrency=1, rescue_interval=0.01).start()
        try:
            wait_until(lambda: sorted(runs) == ids)
            other.rescue_expired()  # the rescuer's baseline reading
            clock.jump(60.0)  # far past every lease
            jumped.set()
            wait_until(lambda: all(_status(mine, i) == "completed" for i in ids), timeout=20)
        finally:
            jumped.set()
            rescuer.stop(10)
            worker.stop(10)
        assert sorted(runs) == ids  # each ran once
        for task_id in ids:
            task = mine.get_task(task_id)
            assert task is not None and task.retry_count == 0 and task.attempts == 1


def test_a_backward_jump_does_not_stop_a_hand_driven_loop_from_rescuing(db_path: str) -> None:
    """dequeue()'s rescue rate limit used wall time: after the clock was set
    back an hour it rescued nothing for an hour."""
    clock = SkewedClock()
    with TaskQueue(db_path, lease_seconds=0.2, clock=clock, rescue_interval=0.05) as q:  # type: ignore[arg-type]
        assert q.dequeue() is None  # the rate limit's first run
        clock.jump(-3600.0)
        task_id = q.enqueue("lost", "t")
        lost = q.claim(1, remember=False)  # held by nobody who renews it
        assert lost and lost[0].id == task_id
        # Its lease runs out 0.2 s later on the new clock: the loop rescues it.
        again = wait_until(q.dequeue, timeout=5)
        assert again.id == task_id and again.retry_count == 1
        assert q.complete_task(again, "ok")


# -- 6: fork ---------------------------------------------------------------------------------


def test_a_forked_child_stopping_an_inherited_worker_leaves_the_parents_claims(
    db_path: str,
) -> None:
    """The child's stop() released the parent's claims: the running task
    went back to pending and ran three times."""
    gate = threading.Event()
    runs: list[int] = []

    def hold(payload: Any) -> str:
        runs.append(os.getpid())
        gate.wait(30)
        return "done"

    with TaskQueue(db_path) as queue:
        task_id = queue.enqueue("held", "hold")
        worker = Worker(queue, {"hold": hold}, concurrency=1).start()
        try:
            wait_until(lambda: runs == [os.getpid()])
            pid = os.fork()
            if pid == 0:  # the child: stop what it inherited, then leave
                code = 0
                try:
                    worker.stop(1)
                except BaseException:
                    code = 3
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert _status(queue, task_id) == "running"  # still the parent's
            gate.set()
            wait_until(lambda: _status(queue, task_id) == "completed")
        finally:
            gate.set()
            worker.stop(10)
        assert runs == [os.getpid()]


# -- 10, 11: stop during start; close under a running worker ---------------------------------


def test_stop_while_start_waits_on_a_busy_database(db_path: str) -> None:
    """stop() returned at once and the worker then ran anyway; a later stop
    raised RuntimeError("cannot join thread before it is started") and a
    second one hung."""
    TaskQueue(db_path).close()
    queue = TaskQueue(db_path, busy_timeout=10)
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # start() will wait for this lock
    worker = Worker(queue, {"t": lambda p: None}, concurrency=1, name="late")
    starting = threading.Thread(target=worker.start)
    try:
        starting.start()
        time.sleep(0.2)  # let start() reach the lock (nothing to wait on)
        stopping = threading.Thread(target=worker.stop)
        stopping.start()
        time.sleep(0.2)
        assert stopping.is_alive()  # it waits for start() to finish
        locker.execute("ROLLBACK")
        starting.join(10)
        stopping.join(10)
        assert not starting.is_alive() and not stopping.is_alive()
        assert not any(t.name.startswith("late-") for t in threading.enumerate())
        assert worker.join(0)
        worker.stop()  # again: returns at once
        task_id = queue.enqueue("unclaimed", "t")
        assert _status(queue, task_id) == "pending"
    finally:
        locker.close()
        queue.close()


def test_closing_the_queue_under_a_running_worker_stops_it(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """stop() without a timeout hung forever and the Worker retried the
    closed queue forever (closed was treated as transient)."""
    queue = TaskQueue(db_path)
    queue.enqueue("a", "t")
    worker = Worker(queue, {"t": lambda p: "ok"}, concurrency=2, name="orphan").start()
    wait_until(lambda: queue.get_queue_stats()["completed"] == 1)
    with caplog.at_level(logging.ERROR, logger="task_queue"):
        queue.close()
        assert worker.join(10), "the worker did not notice its queue was closed"
        stopper = threading.Thread(target=worker.stop)
        stopper.start()
        stopper.join(10)
        assert not stopper.is_alive()
    wait_until(lambda: not any(t.name.startswith("orphan-") for t in threading.enumerate()))
    assert any(
        "cannot be used any more (the TaskQueue is closed)" in r.getMessage()
        for r in caplog.records
    )


# -- 16: misleading or untyped errors ----------------------------------------------------------


def test_errors_say_what_is_wrong(db_path: str) -> None:
    with TaskQueue(db_path) as queue:
        with pytest.raises(ValueError, match="max_retries"):
            queue.enqueue("a", "t", max_retries=2**64)  # was OverflowError
        assert queue.purge(0, statuses="completed") == 0  # was "'c' is not a valid TaskStatus"
        with pytest.raises(ValueError, match="unknown status 'done'"):
            queue.purge(0, statuses=["done"])
    with pytest.raises(ValueError, match="busy_timeout"):
        TaskQueue(db_path, busy_timeout=float("nan"))  # was accepted


def test_complete_task_of_its_own_task_inside_a_handler_says_why(db_path: str) -> None:
    """It said "not claimed through this TaskQueue", which was untrue."""
    seen: list[BaseException] = []

    def selfish(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None
        try:
            queue.complete_task(ctx.task.id, "by hand")
        except TaskNotClaimedError as exc:
            seen.append(exc)

    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0)) as queue:
        task_id = queue.enqueue("self", "selfish")
        with Worker(queue, {"selfish": selfish}, concurrency=1):
            wait_until(lambda: _status(queue, task_id) == "completed")
    assert seen and "held by the Worker running this handler" in str(seen[0])


def test_purge_reports_progress_batch_by_batch(db_path: str) -> None:
    with TaskQueue(db_path) as queue:
        ids = queue.enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(2500)])
        for task_id in ids:
            assert queue.cancel_task(task_id)
        seen: list[int] = []
        assert queue.purge(0, ["cancelled"], on_progress=seen.append) == 2500
        assert seen == [1000, 2000, 2500]


# -- 7: a huge listing does not starve the heartbeats ---------------------------------------


def _finished_rows(db_path: str, n: int) -> None:
    """n completed tasks, written directly (fast) as an old queue would hold them."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO tasks (name, task_type, priority, status, created_at, max_retries, "
            "run_at, completed_at, result) VALUES (?, 'old', 2, 'completed', 1, 3, 1, ?, '1')",
            ((f"old {i}", 1_000.0 + i) for i in range(n)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.mark.slow
def test_listing_a_million_tasks_does_not_starve_the_heartbeats(db_path: str) -> None:
    """get_tasks_by_status(limit=1_000_000) built every Task inside the
    engine thread that serves every caller of the queue: it blocked 13 s,
    the heartbeats starved, and with a short lease a live task was run
    again elsewhere."""
    TaskQueue(db_path).close()
    _finished_rows(db_path, 300_000)
    runs: list[str] = []

    def slow(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        runs.append(payload)
        ctx.wait(3.0)
        return "done"

    with (
        TaskQueue(db_path, lease_seconds=1.0) as mine,
        TaskQueue(db_path, lease_seconds=1.0, rescue_interval=0.05) as other,
    ):
        task_id = mine.enqueue("live", "slow", "mine", max_retries=0)
        stop = threading.Event()

        def thief() -> None:
            while not stop.is_set():
                stolen = other.dequeue(task_types=["slow"])
                if stolen is not None:
                    runs.append("stolen")
                    other.complete_task(stolen, "stolen")
                time.sleep(0.02)

        with Worker(mine, {"slow": slow}, concurrency=1):
            wait_until(lambda: runs == ["mine"])
            robber = threading.Thread(target=thief)
            robber.start()
            try:
                listed = mine.get_tasks_by_status("completed", limit=1_000_000)
                assert len(listed) == 300_000
                assert listed[0].completed_at > listed[-1].completed_at  # newest first
                wait_until(lambda: _status(mine, task_id) == "completed", timeout=20)
            finally:
                stop.set()
                robber.join()
        done = mine.get_task(task_id)
        assert done is not None and done.result == "done" and done.retry_count == 0
        assert runs == ["mine"]


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM")
def test_a_signal_handler_that_enqueues_does_not_deadlock_the_wake_ups(db_path: str) -> None:
    """Enqueue wakes every listener (a Worker's dispatcher) and hook: a signal
    handler that enqueues while the main thread is doing the same must not
    deadlock on a lock the main thread holds (threading.Event's is not
    re-entrant)."""
    with TaskQueue(db_path) as queue:
        calls: list[int] = []
        queue.add_hook(lambda event: calls.append(event.task_id))
        done: list[int] = []
        with Worker(queue, {"other": lambda p: None}, concurrency=1):  # a listener
            previous = signal.signal(
                signal.SIGALRM, lambda s, f: done.append(queue.enqueue("s", "t"))
            )
            try:
                signal.setitimer(signal.ITIMER_REAL, 0.002, 0.01)
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    queue.enqueue("main", "t")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0, 0)
                signal.signal(signal.SIGALRM, previous)
        assert done
        assert queue.get_queue_stats()["pending"] == len(calls)
