"""Every TaskQueue call and its error cases, against real SQLite files."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import wait_until

from task_queue import (
    DatabaseBusyError,
    DuplicateTaskError,
    ManualClock,
    PayloadError,
    QueueClosedError,
    RetryPolicy,
    Task,
    TaskNotClaimedError,
    TaskNotFoundError,
    TaskPriority,
    TaskQueue,
    TaskStatus,
)

# The seed API's five, then "waiting" (tasks waiting for others, issue 10).
ALL_STATUSES = ("pending", "running", "completed", "failed", "cancelled", "waiting")


@pytest.fixture
def other(db_path: str, clock: ManualClock, clocked_queue: TaskQueue) -> Iterator[TaskQueue]:
    """A second TaskQueue object (own connection and thread) on the same file and clock."""
    q = TaskQueue(db_path, clock=clock)
    yield q
    q.close()


def raw_rows(db_path: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# -- open / close -----------------------------------------------------------------------


def test_context_manager_closes_and_closed_queue_refuses(db_path: str) -> None:
    with TaskQueue(db_path) as q:
        task_id = q.enqueue("a", "t")
    with pytest.raises(QueueClosedError):
        q.enqueue("b", "t")
    with pytest.raises(QueueClosedError):
        q.get_task(task_id)
    q.close()  # idempotent


def test_constructor_arguments_are_checked(db_path: str) -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        TaskQueue(db_path, lease_seconds=0)
    with pytest.raises(ValueError, match="busy_timeout"):
        TaskQueue(db_path, busy_timeout=-1)
    with pytest.raises(ValueError, match="synchronous"):
        TaskQueue(db_path, synchronous="OFF")


@pytest.mark.sqlite_only("SQLite pragmas")
@pytest.mark.parametrize(("asked", "level"), [("FULL", 2), ("NORMAL", 1)])
def test_wal_and_synchronous(db_path: str, asked: str, level: int) -> None:
    def unit(conn: sqlite3.Connection) -> tuple[str, int]:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return mode, conn.execute("PRAGMA synchronous").fetchone()[0]

    with TaskQueue(db_path, synchronous=asked) as q:
        engine = q.storage._engine  # type: ignore[attr-defined]
        assert engine.call(unit, readonly=True) == ("wal", level)


def test_default_path_is_seed_md_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with TaskQueue() as q:
        q.enqueue("a", "t")
    assert (tmp_path / "taskqueue.db").is_file()


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_returns_increasing_ids_and_stores_every_field(clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    now = q.clock.time()
    a = q.enqueue(
        name="Send welcome email",
        task_type="send_email",
        payload={"to": "user@example.com", "subject": "Welcome!"},
        priority=TaskPriority.HIGH,
    )
    b = q.enqueue("b", "t", [1, "two", None, 3.5, True], TaskPriority.LOW, None, 5)
    assert isinstance(a, int) and b > a
    task = q.get_task(a)
    assert isinstance(task, Task)
    assert task.id == a
    assert task.name == "Send welcome email"
    assert task.task_type == "send_email"
    assert task.payload == {"to": "user@example.com", "subject": "Welcome!"}
    assert task.priority is TaskPriority.HIGH
    assert task.status is TaskStatus.PENDING
    assert task.created_at == now and task.run_at == now
    assert task.scheduled_at is None and task.started_at is None and task.completed_at is None
    assert task.worker_id is None and task.result is None and task.error_message is None
    assert (task.max_retries, task.retry_count, task.attempts) == (3, 0, 0)
    other = q.get_task(b)
    assert other is not None
    assert other.payload == [1, "two", None, 3.5, True]
    assert other.max_retries == 5 and other.priority is TaskPriority.LOW


def test_enqueue_without_payload_and_with_falsy_payloads(queue: TaskQueue) -> None:
    ids = [queue.enqueue("n", "t"), queue.enqueue("z", "t", 0), queue.enqueue("e", "t", {})]
    assert [queue.get_task(i).payload for i in ids] == [None, 0, {}]  # type: ignore[union-attr]


@pytest.mark.sqlite_only("reads the file with sqlite3")
def test_enqueue_is_visible_to_another_connection_on_return(db_path: str, queue: TaskQueue) -> None:
    for i in range(20):
        task_id = queue.enqueue(f"t{i}", "t")
        assert raw_rows(db_path, "SELECT status FROM tasks WHERE id = ?", (task_id,)) == [
            ("pending",)
        ]


def test_enqueue_priority_by_int_and_name(queue: TaskQueue) -> None:
    a = queue.enqueue("a", "t", priority=4)
    b = queue.enqueue("b", "t", priority="low")
    assert queue.get_task(a).priority is TaskPriority.CRITICAL  # type: ignore[union-attr]
    assert queue.get_task(b).priority is TaskPriority.LOW  # type: ignore[union-attr]


def test_enqueue_many_in_one_transaction(queue: TaskQueue) -> None:
    ids = queue.enqueue_many(
        [{"name": f"t{i}", "task_type": "t", "payload": {"i": i}} for i in range(100)]
    )
    assert len(ids) == 100 and ids == sorted(ids)
    assert [queue.get_task(i).payload["i"] for i in ids] == list(range(100))  # type: ignore[union-attr]
    assert queue.enqueue_many([]) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "task_type": ""},
        {"name": "x", "task_type": "t", "payload": {1, 2}},
        {"name": "x", "task_type": "t", "priority": 101},  # -100..100 are priorities
        {"name": "x", "task_type": "t", "max_retries": -1},
        {"name": "x", "task_type": "t", "colour": "red"},
        "not a mapping",
    ],
)
def test_enqueue_many_is_all_or_nothing(queue: TaskQueue, bad: object) -> None:
    good = [{"name": f"g{i}", "task_type": "t"} for i in range(5)]
    with pytest.raises((TypeError, ValueError), match="task #5"):
        queue.enqueue_many([*good, bad])  # type: ignore[list-item]
    assert queue.get_queue_stats()["pending"] == 0


@pytest.mark.sqlite_only("a SQLite trigger refuses the write")
def test_enqueue_many_rolls_back_when_the_database_refuses(db_path: str) -> None:
    # A failure inside the transaction (here: a lock held past the budget)
    # leaves none of the batch behind.
    with TaskQueue(db_path, busy_timeout=0.2) as q:
        holder = sqlite3.connect(db_path, isolation_level=None, timeout=0)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(DatabaseBusyError):
                q.enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(10)])
            with pytest.raises(DatabaseBusyError):
                q.enqueue("one", "t")
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        assert q.get_queue_stats()["pending"] == 0
        assert q.enqueue("after", "t") > 0


# -- dequeue / claim --------------------------------------------------------------------------


def test_dequeue_claims_with_lease(clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    assert q.dequeue() is None
    task_id = q.enqueue("a", "t", {"k": 1})
    task = q.dequeue(worker_id="w-1")
    assert task is not None and task.id == task_id
    now = q.clock.time()
    assert task.status is TaskStatus.RUNNING
    assert task.worker_id == "w-1"
    assert task.started_at == now
    assert task.attempts == 1
    assert task.lease_expires_at == now + q.lease_seconds
    assert task.claim_token is not None
    assert q.get_task(task_id) == task
    assert q.dequeue() is None


def test_dequeue_default_worker_id_names_host_and_pid(queue: TaskQueue) -> None:
    queue.enqueue("a", "t")
    task = queue.dequeue()
    assert task is not None and task.worker_id is not None
    assert task.worker_id.endswith(f":{os.getpid()}")


def test_dequeue_by_task_types(queue: TaskQueue) -> None:
    a = queue.enqueue("a", "email")
    b = queue.enqueue("b", "report", priority=TaskPriority.CRITICAL)
    assert queue.dequeue(task_types=["email"]).id == a  # type: ignore[union-attr]
    assert queue.dequeue(task_types=["email"]) is None
    assert queue.dequeue(task_types=[]) is None
    with pytest.raises(TypeError):
        queue.dequeue(task_types="report")
    assert queue.dequeue(task_types=("report", "other")).id == b  # type: ignore[union-attr]


def test_claim_many_in_priority_order(queue: TaskQueue) -> None:
    low = queue.enqueue("low", "t", priority=TaskPriority.LOW)
    high = queue.enqueue("high", "t", priority=TaskPriority.HIGH)
    normal = queue.enqueue("normal", "t")
    tasks = queue.claim(2)
    assert [t.id for t in tasks] == [high, normal]
    assert len({t.claim_token for t in tasks}) == 1
    assert [t.id for t in queue.claim(10)] == [low]
    assert queue.claim(10) == []
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            queue.claim(bad)  # type: ignore[arg-type]


# -- complete / fencing -----------------------------------------------------------------------


def test_seed_call_shape_complete_task_by_id(clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    q.enqueue("a", "t", {"x": 1})
    task = q.dequeue()
    assert task is not None
    assert q.complete_task(task["id"], {"success": True, "data": [1, 2]}) is True
    done = q.get_task(task["id"])
    assert done is not None
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"success": True, "data": [1, 2]}
    assert done.completed_at == q.clock.time()
    assert done.lease_expires_at is None
    # A second completion by the same holder no longer holds anything:
    # False, as the README promises, not "never claimed" (regression: it
    # raised TaskNotClaimedError).
    assert q.complete_task(task["id"], "again") is False
    assert q.get_task(task["id"]).result == {"success": True, "data": [1, 2]}  # type: ignore[union-attr]


def test_complete_task_accepts_the_task_object_and_no_result(queue: TaskQueue) -> None:
    queue.enqueue("a", "t")
    task = queue.dequeue()
    assert task is not None
    assert queue.complete_task(task) is True
    assert queue.get_task(task.id).result is None  # type: ignore[union-attr]


def test_complete_task_from_another_thread_by_id(queue: TaskQueue) -> None:
    queue.enqueue("a", "t")
    task = queue.dequeue()
    assert task is not None
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(queue.complete_task(task.id, 1)))
    thread.start()
    thread.join(10)
    assert outcome == [True]


def test_complete_task_errors(queue: TaskQueue, db_path: str) -> None:
    with pytest.raises(TaskNotFoundError):
        queue.complete_task(12345, "x")
    task_id = queue.enqueue("a", "t")
    with pytest.raises(TaskNotClaimedError):
        queue.complete_task(task_id, "x")  # never claimed
    task = queue.dequeue()
    assert task is not None
    with pytest.raises(PayloadError):
        queue.complete_task(task, {"not": {1, 2}})
    with pytest.raises(TypeError):
        queue.complete_task("1", "x")  # type: ignore[arg-type]
    # The bad result wrote nothing; the holder can still complete.
    assert queue.get_task(task_id).status is TaskStatus.RUNNING  # type: ignore[union-attr]
    assert queue.complete_task(task, "ok") is True


def test_expired_holder_cannot_complete_or_fail_after_another_queue_claimed(
    clock: ManualClock, clocked_queue: TaskQueue, other: TaskQueue
) -> None:
    first = clocked_queue
    task_id = first.enqueue("a", "t")
    stale = first.dequeue(worker_id="first")
    assert stale is not None
    clock.advance(first.lease_seconds + 1)
    fresh = other.dequeue(worker_id="second")  # rescues the expired lease, then claims
    assert fresh is not None and fresh.id == task_id
    assert fresh.claim_token != stale.claim_token
    assert first.complete_task(task_id, "stale result") is False
    assert first.fail_task(stale, "stale failure") is False
    assert first.release_task(stale) is False
    current = first.get_task(task_id)
    assert current is not None
    assert current.status is TaskStatus.RUNNING and current.worker_id == "second"
    assert current.result is None
    assert other.complete_task(fresh["id"], "fresh result") is True
    assert first.get_task(task_id).result == "fresh result"  # type: ignore[union-attr]


def test_expired_holder_is_fenced_after_its_own_queue_reclaims(
    clock: ManualClock, clocked_queue: TaskQueue
) -> None:
    q = clocked_queue
    q.enqueue("a", "t")
    stale = q.dequeue()
    assert stale is not None
    clock.advance(q.lease_seconds + 1)
    fresh = q.dequeue()
    assert fresh is not None and fresh.id == stale.id
    # The stale Task object carries the old token: fenced out.
    assert q.complete_task(stale, "stale") is False
    assert q.complete_task(fresh, "fresh") is True


def test_token_keyword_overrides(queue: TaskQueue) -> None:
    queue.enqueue("a", "t")
    task = queue.dequeue()
    assert task is not None and task.claim_token is not None
    assert queue.complete_task(task.id, "x", token=task.claim_token + 1) is False
    assert queue.complete_task(task.id, "x", token=task.claim_token) is True


# -- fail ---------------------------------------------------------------------------------


def test_fail_task_retries_then_fails_keeping_error_and_traceback(
    clock: ManualClock, db_path: str
) -> None:
    policy = RetryPolicy(base=10.0, cap=1000.0, random=lambda: 0.5)
    with TaskQueue(db_path, clock=clock, retry_policy=policy) as q:
        task_id = q.enqueue("a", "t", max_retries=2)
        expected_backoff = [5.0, 10.0]
        for retry in range(2):
            task = q.dequeue()
            assert task is not None and task.id == task_id
            try:
                raise RuntimeError(f"boom {retry}")
            except RuntimeError as exc:
                assert q.fail_task(task["id"], str(exc)) is True
            pending = q.get_task(task_id)
            assert pending is not None
            assert pending.status is TaskStatus.PENDING
            assert pending.retry_count == retry + 1
            assert pending.error_message == f"boom {retry}"
            assert pending.error_traceback is not None
            assert "RuntimeError: boom" in pending.error_traceback
            assert pending.run_at == clock.time() + expected_backoff[retry]
            # Not claimable before its backoff has passed.
            clock.advance(expected_backoff[retry] - 0.001)
            assert q.dequeue() is None
            clock.advance(0.001)
        task = q.dequeue()
        assert task is not None and task.attempts == 3
        assert q.fail_task(task, ValueError("final")) is True
        failed = q.get_task(task_id)
        assert failed is not None
        assert failed.status is TaskStatus.FAILED
        assert failed.retry_count == 2
        assert failed.error_message == "ValueError: final"
        assert failed.error_traceback is not None and "ValueError: final" in failed.error_traceback
        assert failed.completed_at == clock.time()
        assert q.get_tasks_by_status(TaskStatus.FAILED)[0].id == task_id
        assert q.dequeue() is None


def test_fail_task_without_retries_fails_at_once(queue: TaskQueue) -> None:
    task_id = queue.enqueue("a", "t", max_retries=0)
    task = queue.dequeue()
    assert task is not None
    assert queue.fail_task(task, "plain text, no exception being handled") is True
    failed = queue.get_task(task_id)
    assert failed is not None and failed.status is TaskStatus.FAILED
    assert failed.error_message == "plain text, no exception being handled"
    assert failed.error_traceback is None


def test_fail_task_max_retries_override_and_errors(queue: TaskQueue) -> None:
    task_id = queue.enqueue("a", "t", max_retries=5)
    task = queue.dequeue()
    assert task is not None
    with pytest.raises(TypeError):
        queue.fail_task(task, 42)  # type: ignore[arg-type]
    assert queue.fail_task(task, "stop now", max_retries=0) is True
    assert queue.get_task(task_id).status is TaskStatus.FAILED  # type: ignore[union-attr]
    with pytest.raises(TaskNotFoundError):
        queue.fail_task(999, "x")
    other = queue.enqueue("b", "t")
    with pytest.raises(TaskNotClaimedError):
        queue.fail_task(other, "x")


# -- release / cancel / retry -----------------------------------------------------------------


def test_release_task_gives_it_back_without_using_a_retry(queue: TaskQueue) -> None:
    task_id = queue.enqueue("a", "t", max_retries=1)
    task = queue.dequeue()
    assert task is not None and task.attempts == 1
    assert queue.release_task(task) is True
    back = queue.get_task(task_id)
    assert back is not None
    assert back.status is TaskStatus.PENDING
    assert (back.attempts, back.retry_count) == (0, 0)
    assert back.worker_id is None and back.lease_expires_at is None
    again = queue.dequeue()
    assert again is not None and again.id == task_id
    assert queue.release_task(task) is False  # the old claim is gone
    assert queue.release_task(again) is True
    # Released: this queue holds no claim now, so False (it raised
    # TaskNotClaimedError, "not claimed through this TaskQueue": untrue).
    assert queue.release_task(task_id) is False


def test_cancel_task(queue: TaskQueue) -> None:
    pending = queue.enqueue("p", "t")
    assert queue.cancel_task(pending) is True
    cancelled = queue.get_task(pending)
    assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED
    assert cancelled.completed_at is not None
    assert queue.cancel_task(pending) is False
    assert queue.dequeue() is None  # a cancelled task is never claimed
    done = queue.enqueue("d", "t")
    task = queue.dequeue()
    assert task is not None
    queue.complete_task(task, "r")
    assert queue.cancel_task(done) is False
    assert queue.get_task(done).status is TaskStatus.COMPLETED  # type: ignore[union-attr]
    with pytest.raises(TaskNotFoundError):
        queue.cancel_task(10_000)
    with pytest.raises(TypeError):
        queue.cancel_task("1")  # type: ignore[arg-type]


def test_cancel_running_task_fences_out_its_late_outcome(queue: TaskQueue) -> None:
    task_id = queue.enqueue("r", "t")
    task = queue.dequeue()
    assert task is not None
    assert queue.cancel_task(task_id) is True
    assert queue.complete_task(task, "late") is False
    after = queue.get_task(task_id)
    assert after is not None and after.status is TaskStatus.CANCELLED and after.result is None


def test_retry_task(queue: TaskQueue) -> None:
    failed = queue.enqueue("f", "t", max_retries=0)
    task = queue.dequeue()
    assert task is not None
    queue.fail_task(task, "nope")
    assert queue.retry_task(failed) is True
    again = queue.get_task(failed)
    assert again is not None
    assert again.status is TaskStatus.PENDING and again.retry_count == 0
    assert again.completed_at is None
    assert queue.retry_task(failed) is False  # pending: nothing to retry
    cancelled = queue.enqueue("c", "t")
    queue.cancel_task(cancelled)
    assert queue.retry_task(cancelled) is True
    assert {t.id for t in queue.claim(10)} == {failed, cancelled}
    assert queue.retry_task(failed) is False  # running
    with pytest.raises(TaskNotFoundError):
        queue.retry_task(10_000)


def test_retry_task_refuses_to_clash_with_a_live_unique_key(queue: TaskQueue) -> None:
    first = queue.enqueue("a", "t", unique_key="k")
    queue.cancel_task(first)
    second = queue.enqueue("b", "t", unique_key="k")
    assert second != first
    with pytest.raises(DuplicateTaskError):
        queue.retry_task(first)


# -- reads -------------------------------------------------------------------------------------


def test_get_task_unknown_is_none(queue: TaskQueue) -> None:
    assert queue.get_task(424242) is None


def test_get_queue_stats_has_every_status_with_zeros(queue: TaskQueue) -> None:
    assert queue.get_queue_stats() == dict.fromkeys(ALL_STATUSES, 0)
    ids = [queue.enqueue(f"t{i}", "t", max_retries=0) for i in range(6)]
    for outcome in ("complete", "fail", "leave running"):
        task = queue.dequeue()
        assert task is not None
        if outcome == "complete":
            queue.complete_task(task, None)
        elif outcome == "fail":
            queue.fail_task(task, "x")
    queue.cancel_task(ids[-1])
    stats = queue.get_queue_stats()
    assert stats == {
        "pending": 2, "running": 1, "completed": 1, "failed": 1, "cancelled": 1, "waiting": 0,
    }  # fmt: skip
    assert (
        stats[TaskStatus.PENDING] == 2
    )  # TaskStatus is a str: the seed API's stats['pending'] too


def test_get_tasks_by_status_newest_first_with_limit(queue: TaskQueue) -> None:
    ids = [queue.enqueue(f"t{i}", "t") for i in range(15)]
    assert [t.id for t in queue.get_tasks_by_status(TaskStatus.PENDING)] == ids[::-1][:10]
    assert [t.id for t in queue.get_tasks_by_status("pending", limit=3)] == ids[::-1][:3]
    assert queue.get_tasks_by_status(TaskStatus.COMPLETED, limit=10) == []
    with pytest.raises(ValueError, match="unknown status"):
        queue.get_tasks_by_status("done")
    for bad in (0, -1, True):
        with pytest.raises(ValueError):
            queue.get_tasks_by_status(TaskStatus.PENDING, limit=bad)


# -- purge -------------------------------------------------------------------------------------


def test_purge_deletes_only_old_finished_tasks(
    clock: ManualClock, clocked_queue: TaskQueue
) -> None:
    q = clocked_queue
    done, failed, cancelled, pending = (q.enqueue(n, "t", max_retries=0) for n in "abcd")
    for task_id, outcome in ((done, "complete"), (failed, "fail")):
        task = q.dequeue()
        assert task is not None and task.id == task_id
        if outcome == "complete":
            q.complete_task(task, 1)
        else:
            q.fail_task(task, "x")
    q.cancel_task(cancelled)
    assert q.purge(older_than=60) == 0  # nothing finished a minute ago yet
    clock.advance(120)
    assert q.purge(older_than=dt.timedelta(minutes=1)) == 2  # completed + cancelled
    assert q.get_task(done) is None and q.get_task(cancelled) is None
    assert q.get_task(failed) is not None  # the dead-letter set is kept by default
    assert q.purge(older_than=60, statuses=[TaskStatus.FAILED]) == 1
    assert q.get_task(pending) is not None
    with pytest.raises(ValueError, match="finished"):
        q.purge(older_than=0, statuses=["pending"])
    with pytest.raises(ValueError):
        q.purge(older_than=-1)
    assert q.get_queue_stats() == {**dict.fromkeys(ALL_STATUSES, 0), "pending": 1}
    # Ids are never reused after a purge.
    assert q.enqueue("e", "t") > pending


# -- unique_key ---------------------------------------------------------------------------------


def test_unique_key_returns_existing_id_while_live(queue: TaskQueue) -> None:
    first = queue.enqueue("a", "t", unique_key="nightly")
    assert queue.enqueue("a again", "t", unique_key="nightly") == first
    assert queue.enqueue("other", "t", unique_key="other") != first
    task = queue.dequeue()
    assert task is not None and task.id == first
    assert queue.enqueue("while running", "t", unique_key="nightly") == first
    queue.complete_task(task, None)
    after = queue.enqueue("after completion", "t", unique_key="nightly")
    assert after != first
    assert queue.get_task(after).unique_key == "nightly"  # type: ignore[union-attr]
    ids = queue.enqueue_many(
        [{"name": "x", "task_type": "t", "unique_key": "batch"} for _ in range(3)]
    )
    assert len(set(ids)) == 1
    with pytest.raises(ValueError):
        queue.enqueue("bad", "t", unique_key="")


# -- rescue ----------------------------------------------------------------------------------


def test_rescue_expired_returns_task_to_pending(clock: ManualClock, db_path: str) -> None:
    with TaskQueue(db_path, clock=clock, lease_seconds=5) as q:
        task_id = q.enqueue("a", "t", max_retries=1)
        task = q.dequeue(worker_id="doomed")
        assert task is not None
        clock.advance(4)
        assert q.rescue_expired() == 0
        clock.advance(2)
        assert q.rescue_expired() == 1
        back = q.get_task(task_id)
        assert back is not None
        assert back.status is TaskStatus.PENDING
        assert back.retry_count == 1
        assert back.error_message is not None and "doomed" in back.error_message
        # The next crash uses up the last retry: failed, never running forever.
        assert q.dequeue() is not None
        clock.advance(6)
        assert q.rescue_expired() == 1
        final = q.get_task(task_id)
        assert final is not None and final.status is TaskStatus.FAILED
        assert final.attempts == 2


# -- durability ----------------------------------------------------------------------------


def test_reopening_the_file_keeps_every_task(db_path: str) -> None:
    with TaskQueue(db_path) as q:
        ids = q.enqueue_many(
            [{"name": f"t{i}", "task_type": "t", "payload": {"i": i}} for i in range(50)]
        )
        running = q.dequeue()
        completed = q.dequeue()
        assert running is not None and completed is not None
        q.complete_task(completed, {"done": True})
        cancelled = ids[-1]
        q.cancel_task(cancelled)
        before = {i: q.get_task(i) for i in ids}
        stats = q.get_queue_stats()
    with TaskQueue(db_path) as reopened:
        assert {i: reopened.get_task(i) for i in ids} == before
        assert reopened.get_queue_stats() == stats
        assert stats == {
            "pending": 47, "running": 1, "completed": 1, "failed": 0, "cancelled": 1, "waiting": 0,
        }  # fmt: skip
        assert reopened.get_task(completed.id).result == {"done": True}  # type: ignore[union-attr]
        # New ids continue after the old ones.
        assert reopened.enqueue("new", "t") > max(ids)


STALE_HOLDER = """
import sys
from task_queue import TaskQueue
with TaskQueue(sys.argv[1], lease_seconds=0.3) as q:
    task = q.dequeue(worker_id="stale-process")
    print(task["id"], flush=True)
    sys.stdin.readline()  # the parent has re-claimed the task by now
    print(q.complete_task(task["id"], "stale"), q.fail_task(task, "stale"), flush=True)
"""


def test_expired_holder_in_another_process_is_fenced_out(db_path: str) -> None:
    with TaskQueue(db_path, rescue_interval=0.01) as q:
        task_id = q.enqueue("a", "t")
        child = subprocess.Popen(
            [sys.executable, "-c", STALE_HOLDER, db_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            assert int(child.stdout.readline()) == task_id
            # The child is frozen, so its queue stops renewing the claim:
            # after its 0.3 s lease this process rescues and claims the task.
            os.kill(child.pid, signal.SIGSTOP)
            try:
                fresh = wait_until(q.dequeue, timeout=20)
            finally:
                os.kill(child.pid, signal.SIGCONT)
            assert fresh.id == task_id and fresh.retry_count == 1
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().split() == ["False", "False"]
            assert child.wait(20) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert q.complete_task(fresh, "fresh") is True
        done = q.get_task(task_id)
        assert done is not None and done.result == "fresh" and done.error_message is not None
