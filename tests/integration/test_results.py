"""Waiting for outcomes: wait() and result() (issue 10, section 1)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from support import rawdb, wait_until

from task_queue import (
    QueueClosedError,
    RetryPolicy,
    TaskCancelled,
    TaskFailedError,
    TaskNotFoundError,
    TaskQueue,
    TaskStatus,
    Worker,
    waiting,
)


def test_result_of_a_task_finished_in_this_process(queue: TaskQueue) -> None:
    task_id = queue.enqueue("double", "double", 21)
    with Worker(queue, {"double": lambda n: n * 2}, concurrency=1):
        assert queue.result(task_id, timeout=10) == 42
    assert queue.wait(task_id).status == TaskStatus.COMPLETED  # already finished: at once


def test_a_waiter_is_woken_at_once_by_a_completion_through_the_same_queue(
    queue: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No polling to fall back on: only the completion's nudge can wake it.
    monkeypatch.setattr(waiting, "POLL_INTERVAL", 3600.0)
    task_id = queue.enqueue("a", "t")
    task = queue.dequeue()
    assert task is not None
    woke: list[TaskStatus] = []
    thread = threading.Thread(target=lambda: woke.append(queue.wait(task_id, timeout=30).status))
    thread.start()
    wait_until(lambda: [t for t in threading.enumerate() if t.name == "task_queue-waiters"])
    assert queue.complete_task(task, "ok")
    thread.join(20)
    assert woke == [TaskStatus.COMPLETED]


def test_result_raises_for_a_failed_and_a_cancelled_task(db_path: str) -> None:
    def boom(payload: Any) -> None:
        raise ValueError("no good")

    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0)) as queue:
        failing = queue.enqueue("f", "boom", max_retries=1)
        cancelled = queue.enqueue("c", "never")
        assert queue.cancel_task(cancelled)
        with (
            Worker(queue, {"boom": boom}, concurrency=1),
            pytest.raises(TaskFailedError, match="ValueError: no good") as info,
        ):
            queue.result(failing, timeout=10)
        assert "Traceback" in (info.value.traceback or "")
        assert info.value.task.id == failing  # type: ignore[attr-defined]
        with pytest.raises(TaskCancelled, match=f"task {cancelled} was cancelled"):
            queue.result(cancelled, timeout=1)


def test_wait_times_out_and_knows_unknown_ids(queue: TaskQueue) -> None:
    task_id = queue.enqueue("a", "t")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"task {task_id}"):
        queue.wait(task_id, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 5
    with pytest.raises(TaskNotFoundError):
        queue.wait(999)
    with pytest.raises(ValueError, match="timeout"):
        queue.wait(task_id, timeout=-1)


FINISHER = textwrap.dedent(
    """
    import sys, time
    from task_queue import TaskQueue
    with TaskQueue(sys.argv[1]) as q:
        for task_id in map(int, sys.argv[2:]):
            while True:
                task = q.dequeue()
                if task is not None:
                    break
                time.sleep(0.01)
            q.complete_task(task, {"by": "other process", "id": task.id})
    """
)


def test_a_task_finished_by_another_process_is_noticed(queue: TaskQueue, db_path: str) -> None:
    task_id = queue.enqueue("a", "t")
    other = subprocess.Popen([sys.executable, "-c", FINISHER, db_path, str(task_id)])
    try:
        assert queue.result(task_id, timeout=30) == {"by": "other process", "id": task_id}
    finally:
        other.wait(30)


def test_many_waiters_share_one_watcher(queue: TaskQueue, db_path: str) -> None:
    ids = queue.enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(500)])
    results: dict[int, Any] = {}
    lock = threading.Lock()

    def waiter(task_id: int) -> None:
        value = queue.result(task_id, timeout=60)
        with lock:
            results[task_id] = value

    threads = [threading.Thread(target=waiter, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    watchers = [t for t in threading.enumerate() if t.name == "task_queue-waiters"]
    assert len(watchers) == 1
    other = subprocess.Popen([sys.executable, "-c", FINISHER, db_path, *map(str, ids)])
    try:
        for thread in threads:
            thread.join(60)
    finally:
        other.wait(60)
    assert results == {i: {"by": "other process", "id": i} for i in ids}
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == "task_queue-waiters"])


def test_closing_the_queue_wakes_waiters_with_a_clear_error(db_path: str) -> None:
    queue = TaskQueue(db_path)
    task_id = queue.enqueue("a", "t")
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            queue.wait(task_id)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: [t for t in threading.enumerate() if t.name == "task_queue-waiters"])
    queue.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], QueueClosedError)


def test_a_purged_task_does_not_leave_its_waiter_hanging(db_path: str) -> None:
    with TaskQueue(db_path) as queue, TaskQueue(db_path) as other:
        task_id = queue.enqueue("a", "t")
        errors: list[BaseException] = []

        def waiter() -> None:
            try:
                queue.wait(task_id, timeout=20)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=waiter)
        thread.start()
        wait_until(lambda: [t for t in threading.enumerate() if t.name == "task_queue-waiters"])
        # Deleted behind its back (another connection: only the feed tells).
        with rawdb.connect(db_path) as conn:
            conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
            conn.announce()
        thread.join(20)
        assert errors and isinstance(errors[0], TaskNotFoundError)
        assert other.get_task(task_id) is None


class _DeafFeed:
    """A change feed that hears nothing: a push feed (PostgreSQL's NOTIFY)
    that missed the notification of a commit."""

    def changed(self) -> bool:
        return False


def test_a_waiter_notices_a_commit_its_change_feed_missed(db_path: str) -> None:
    with TaskQueue(db_path) as waiting, TaskQueue(db_path) as other:
        task_id = waiting.enqueue("a", "t")
        waiting.storage.change_feed = _DeafFeed  # type: ignore[method-assign]
        finisher = threading.Timer(
            0.3, lambda: other.complete_task(other.dequeue(), {"done": True})
        )
        finisher.start()
        try:
            # Read again at least every RECHECK_EVERY (1 s), whatever the feed says.
            assert waiting.result(task_id, timeout=10) == {"done": True}
        finally:
            finisher.join(10)
