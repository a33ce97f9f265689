"""cancel_task() on a running task (issue 3, section 2)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import wait_until

from task_queue import TaskCancelled, TaskContext, TaskQueue, TaskStatus, Worker, current_task

LEASE = 0.6  # heartbeat every 0.2 s


@pytest.fixture
def cq(db_path: str) -> Iterator[TaskQueue]:
    q = TaskQueue(db_path, lease_seconds=LEASE)
    yield q
    q.close()


class Probe:
    """A handler that records its context and what it saw."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.ctx: TaskContext | None = None
        self.started = threading.Event()
        self.saw_cancel_at: float | None = None
        self.finished = threading.Event()
        self.release = threading.Event()

    def __call__(self, payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        self.ctx = ctx
        self.started.set()
        try:
            if self.mode == "ignore":  # pays no attention; finishes when told
                self.release.wait(20)
                return "late result"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.mode == "check":
                    ctx.check()  # raises TaskCancelled
                elif ctx.cancelled:
                    break
                time.sleep(0.01)
            self.saw_cancel_at = time.monotonic()
            return "stopped early"
        except TaskCancelled:
            self.saw_cancel_at = time.monotonic()
            raise
        finally:
            self.finished.set()


@pytest.mark.parametrize("mode", ["poll", "check", "ignore"])
def test_cancel_running_task(cq: TaskQueue, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="task_queue")
    probe = Probe(mode)
    with Worker(cq, {"probe": probe, "ok": lambda p: p}, concurrency=1) as worker:
        assert worker.heartbeat_interval == pytest.approx(LEASE / 3)
        tid = cq.enqueue("p", "probe", max_retries=3)
        assert probe.started.wait(10)
        assert cq.get_task(tid).status == TaskStatus.RUNNING  # type: ignore[union-attr]
        cancelled_at = time.monotonic()
        assert cq.cancel_task(tid) is True
        task = cq.get_task(tid)
        assert task is not None
        assert task.status == TaskStatus.CANCELLED
        assert task.completed_at is not None
        assert cq.cancel_task(tid) is False  # already cancelled

        assert probe.ctx is not None
        wait_until(lambda: probe.ctx.cancelled, timeout=5)  # type: ignore[union-attr]
        seen_after = time.monotonic() - cancelled_at
        assert probe.ctx.reason == "cancelled"
        # Within about a heartbeat (0.2 s); generous for a loaded machine.
        assert seen_after < 3.0
        probe.release.set()
        assert probe.finished.wait(10)
        wait_until(
            lambda: any(
                "cancelled or lost its claim; outcome discarded" in r.getMessage()
                or "not recorded" in r.getMessage()
                for r in caplog.records
            )
        )
        # The worker carries on with other work.
        other = cq.enqueue("ok", "ok", 7)
        wait_until(lambda: cq.get_task(other).status == TaskStatus.COMPLETED)  # type: ignore[union-attr]
    task = cq.get_task(tid)
    assert task is not None
    # The late outcome (result or TaskCancelled) did not overwrite it, nor
    # was the cancellation treated as a failure to retry.
    assert task.status == TaskStatus.CANCELLED
    assert task.result is None
    assert task.retry_count == 0
    assert task.attempts == 1


def test_late_completion_after_cancel_without_worker(cq: TaskQueue) -> None:
    """The seed API's style: dequeue, get cancelled meanwhile, complete_task() -> False."""
    tid = cq.enqueue("t", "plain")
    task = cq.dequeue()
    assert task is not None and task.id == tid
    assert cq.cancel_task(tid) is True
    assert cq.complete_task(task, {"late": True}) is False
    assert cq.fail_task(task, "late failure") is False
    after = cq.get_task(tid)
    assert after is not None
    assert (after.status, after.result, after.error_message) == (TaskStatus.CANCELLED, None, None)
    # Cancelled tasks can be retried explicitly.
    assert cq.retry_task(tid) is True
    again = cq.dequeue()
    assert again is not None and again.id == tid
    assert cq.complete_task(again, "second life") is True
    assert cq.get_task(tid).result == "second life"  # type: ignore[union-attr]


def test_cancel_finished_task_returns_false(cq: TaskQueue) -> None:
    tid = cq.enqueue("t", "plain")
    task = cq.dequeue()
    assert task is not None
    assert cq.complete_task(task, 1) is True
    assert cq.cancel_task(tid) is False
    assert cq.get_task(tid).status == TaskStatus.COMPLETED  # type: ignore[union-attr]


def test_cancel_from_another_queue_object(db_path: str, cq: TaskQueue) -> None:
    """The canceller need not be the worker's TaskQueue (another process would
    use its own): the worker learns it from the database at its heartbeat."""
    probe = Probe("poll")
    with Worker(cq, {"probe": probe}, concurrency=1):
        tid = cq.enqueue("p", "probe")
        assert probe.started.wait(10)
        with TaskQueue(db_path) as other:
            assert other.cancel_task(tid) is True
        wait_until(lambda: probe.finished.is_set(), timeout=5)
        assert probe.ctx is not None and probe.ctx.reason == "cancelled"
    task = cq.get_task(tid)
    assert task is not None
    assert (task.status, task.result) == (TaskStatus.CANCELLED, None)
