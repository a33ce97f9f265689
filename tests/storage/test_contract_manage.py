"""Storage contract: management operations (cancel, retry, purge) and reads
(list_by_status, counts, next_due, due_by_type)."""

from __future__ import annotations

from collections import Counter

import pytest
from support.contract import (
    T0,
    claim,
    claim_one,
    enqueue,
    final_failure,
    get,
    retry_failure,
    status,
)

from task_queue.errors import TaskNotFoundError
from task_queue.storage.base import Completion, Storage
from task_queue.task import TaskStatus


def finish(storage: Storage, task_id: int, outcome: str, now: float) -> None:
    """Bring a pending task ``task_id`` (due at ``now``) to a finished status."""
    if outcome == "cancelled":
        assert storage.cancel(task_id, now)
        return
    held = claim_one(storage, now, token=task_id)
    assert held.id == task_id, "finish() expects task_id to be the next task claimed"
    if outcome == "completed":
        assert storage.complete([Completion(held.claim, None)], now) == {held.claim}
    else:
        assert storage.fail(held.claim, final_failure(), now)


# -- cancel --------------------------------------------------------------------


@pytest.mark.parametrize("claimed", [False, True], ids=["pending", "running"])
def test_cancel_of_a_live_task(storage: Storage, claimed: bool) -> None:
    task_id = enqueue(storage)
    if claimed:
        claim_one(storage)
    assert storage.cancel(task_id, T0 + 5) is True
    after = get(storage, task_id)
    assert after.status is TaskStatus.CANCELLED
    assert after.completed_at == T0 + 5
    assert after.lease_expires_at is None
    assert claim(storage, T0 + 6, token=2) == []
    assert storage.expired(T0 + 1000) == []


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
def test_cancel_of_a_finished_task_is_false_and_changes_nothing(
    storage: Storage, outcome: str
) -> None:
    task_id = enqueue(storage)
    finish(storage, task_id, outcome, T0)
    before = get(storage, task_id)
    assert storage.cancel(task_id, T0 + 1) is False
    assert get(storage, task_id) == before


def test_cancel_of_an_unknown_id_raises(storage: Storage) -> None:
    with pytest.raises(TaskNotFoundError):
        storage.cancel(4711, T0)


# -- retry ---------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_retry_puts_the_task_back_with_a_fresh_budget(storage: Storage, outcome: str) -> None:
    task_id = enqueue(storage, max_retries=1)
    held = claim_one(storage, T0, token=1)
    # One retry used, then the outcome.
    assert storage.fail(held.claim, retry_failure(retry_in=0.0), T0)
    again = claim_one(storage, T0, token=2)
    if outcome == "failed":
        assert storage.fail(again.claim, final_failure(), T0 + 1)
    else:
        assert storage.cancel(task_id, T0 + 1)
    assert get(storage, task_id).retry_count == 1

    assert storage.retry(task_id, T0 + 10) is True
    after = get(storage, task_id)
    assert after.status is TaskStatus.PENDING
    assert after.retry_count == 0
    assert after.run_at == T0 + 10
    assert after.completed_at is None
    assert after.lease_expires_at is None
    assert claim_one(storage, T0 + 10, token=3).id == task_id


def test_retry_of_a_completed_task_is_false(storage: Storage) -> None:
    task_id = enqueue(storage)
    finish(storage, task_id, "completed", T0)
    before = get(storage, task_id)
    assert storage.retry(task_id, T0 + 1) is False
    assert get(storage, task_id) == before


@pytest.mark.parametrize("claimed", [False, True], ids=["pending", "running"])
def test_retry_of_a_live_task_is_false_and_changes_nothing(storage: Storage, claimed: bool) -> None:
    task_id = enqueue(storage)
    if claimed:
        claim_one(storage)
    before = get(storage, task_id)
    assert storage.retry(task_id, T0 + 1) is False
    assert get(storage, task_id) == before


def test_retry_of_an_unknown_id_raises(storage: Storage) -> None:
    with pytest.raises(TaskNotFoundError):
        storage.retry(4711, T0)


# -- list_by_status --------------------------------------------------------------


def test_pending_and_running_are_listed_newest_first(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}", priority=1 + n % 4) for n in range(6)]
    running = [t.id for t in claim(storage, T0, limit=3)]
    pending = [i for i in ids if i not in running]
    assert [t.id for t in storage.list_by_status("pending", 100)] == sorted(pending, reverse=True)
    assert [t.id for t in storage.list_by_status("running", 100)] == sorted(running, reverse=True)
    assert [t.id for t in storage.list_by_status("pending", 2)] == sorted(pending, reverse=True)[:2]
    assert all(t.status is TaskStatus.RUNNING for t in storage.list_by_status("running", 100))


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
def test_finished_are_listed_most_recently_finished_first(storage: Storage, outcome: str) -> None:
    ids = [enqueue(storage, name=f"t{n}") for n in range(4)]
    held = {t.id: t for t in claim(storage, T0)}
    # Finished in an order unlike the ids: by finish time the list is 2, 0, 3, 1.
    for task_id, when in [(ids[1], T0 + 1), (ids[3], T0 + 2), (ids[0], T0 + 3), (ids[2], T0 + 4)]:
        claim_ = held[task_id].claim
        if outcome == "completed":
            assert storage.complete([Completion(claim_, None)], when) == {claim_}
        elif outcome == "failed":
            assert storage.fail(claim_, final_failure(), when)
        else:
            assert storage.cancel(task_id, when)
    listed = [t.id for t in storage.list_by_status(outcome, 100)]
    assert listed == [ids[2], ids[0], ids[3], ids[1]]
    assert [t.id for t in storage.list_by_status(outcome, 3)] == listed[:3]
    assert storage.list_by_status("running", 100) == []


def test_list_of_a_status_with_no_tasks_is_empty(storage: Storage) -> None:
    enqueue(storage)
    for name in ("running", "completed", "failed", "cancelled"):
        assert storage.list_by_status(name, 10) == []


# -- counts --------------------------------------------------------------------


def test_counts_follow_every_transition(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}") for n in range(6)]
    held = claim(storage, T0, limit=4)
    assert storage.complete([Completion(held[0].claim, None)], T0) == {held[0].claim}
    assert storage.fail(held[1].claim, final_failure(), T0)
    assert storage.fail(held[2].claim, retry_failure(), T0)
    assert storage.cancel(ids[5], T0)
    expected = {"pending": 2, "running": 1, "completed": 1, "failed": 1, "cancelled": 1}
    assert counts(storage) == expected
    assert counts(storage) == listed_counts(storage)
    assert storage.purge(["completed", "failed", "cancelled"], T0 + 1, 100) == 3
    assert counts(storage) == {"pending": 2, "running": 1}


def counts(storage: Storage) -> dict[str, int]:
    """counts() without the zero entries (a backend may leave them out)."""
    return {s: n for s, n in storage.counts().items() if n}


def listed_counts(storage: Storage) -> dict[str, int]:
    """The same, counted row by row through list_by_status."""
    tally = Counter(
        task.status.value for s in TaskStatus for task in storage.list_by_status(s.value, 10**6)
    )
    return dict(tally)


# -- next_due and due_by_type ------------------------------------------------------


def test_next_due_is_the_earliest_not_yet_due_pending_task(storage: Storage) -> None:
    assert storage.next_due(T0) is None
    enqueue(storage, name="due-now")
    assert storage.next_due(T0) is None  # everything pending is due already
    enqueue(storage, name="in-50", delay=50.0)
    enqueue(storage, name="in-20", delay=20.0)
    assert storage.next_due(T0) == T0 + 20.0
    # A task due exactly at ``now`` is due, not upcoming.
    assert storage.next_due(T0 + 20.0) == T0 + 50.0
    assert storage.next_due(T0 + 50.0) is None


def test_next_due_ignores_tasks_that_are_not_pending(storage: Storage) -> None:
    soon = enqueue(storage, delay=5.0)
    later = enqueue(storage, delay=60.0)
    assert storage.cancel(soon, T0)
    assert storage.next_due(T0) == T0 + 60.0
    claim_one(storage, T0 + 60.0)
    assert get(storage, later).status is TaskStatus.RUNNING
    assert storage.next_due(T0) is None


def test_next_due_includes_retry_backoff(storage: Storage) -> None:
    enqueue(storage)
    held = claim_one(storage)
    assert storage.fail(held.claim, retry_failure(retry_in=9.0), T0 + 1)
    assert storage.next_due(T0 + 1) == T0 + 10.0


def test_due_by_type_counts_due_pending_tasks_per_type(storage: Storage) -> None:
    assert storage.due_by_type(T0) == {}
    for kind, delay in [("a", None), ("a", None), ("b", None), ("b", 30.0), ("c", 30.0)]:
        enqueue(storage, task_type=kind, delay=delay)
    running = enqueue(storage, task_type="d")
    assert claim_one(storage, T0, task_types=["d"]).id == running
    assert storage.due_by_type(T0) == {"a": 2, "b": 1}
    assert storage.due_by_type(T0 + 30.0) == {"a": 2, "b": 2, "c": 1}


# -- purge ---------------------------------------------------------------------


def test_purge_deletes_only_finished_tasks_of_those_statuses_finished_before(
    storage: Storage,
) -> None:
    ids = {}
    for outcome in ("completed", "failed", "cancelled"):
        for when in (T0 + 1, T0 + 2):
            ids[outcome, when] = task_id = enqueue(storage, name=f"{outcome}@{when}")
            finish(storage, task_id, outcome, when)
    live_pending = enqueue(storage, name="pending")
    live_running = enqueue(storage, name="running")
    held = claim(storage, T0 + 3)
    assert [t.id for t in held] == [live_pending, live_running]
    assert storage.release([held[0].claim]) == [held[0].claim]

    # Finished strictly before ``before``: T0 + 2 is not before T0 + 2.
    assert storage.purge(["completed", "cancelled"], T0 + 2, 100) == 2
    assert storage.get(ids["completed", T0 + 1]) is None
    assert storage.get(ids["cancelled", T0 + 1]) is None
    for key in [("completed", T0 + 2), ("cancelled", T0 + 2), ("failed", T0 + 1)]:
        assert storage.get(ids[key]) is not None, key

    assert storage.purge(["failed"], T0 + 100, 100) == 2
    # Live tasks are never purged, even when asked for.
    assert storage.purge(["pending", "running"], T0 + 100, 100) == 0
    assert storage.get(live_pending) is not None
    assert storage.get(live_running) is not None
    assert sorted(t.id for t in storage.list_by_status("completed", 10)) == [
        ids["completed", T0 + 2]
    ]


def test_purge_deletes_at_most_limit_and_reports_how_many(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}") for n in range(7)]
    for task_id in ids:
        assert storage.cancel(task_id, T0)
    assert storage.purge(["cancelled"], T0 + 1, 3) == 3
    assert storage.purge(["cancelled"], T0 + 1, 3) == 3
    # Fewer than the limit: none are left.
    assert storage.purge(["cancelled"], T0 + 1, 3) == 1
    assert storage.purge(["cancelled"], T0 + 1, 3) == 0
    assert storage.counts().get("cancelled", 0) == 0


def test_a_purged_task_is_gone_from_every_read(storage: Storage) -> None:
    task_id = enqueue(storage, unique_key="k")
    assert storage.cancel(task_id, T0)
    assert storage.purge(["cancelled"], T0 + 1, 10) == 1
    assert storage.get(task_id) is None
    assert storage.list_by_status("cancelled", 10) == []
    with pytest.raises(TaskNotFoundError):
        storage.retry(task_id, T0 + 2)
    assert status(storage, enqueue(storage, unique_key="k")) == "pending"
