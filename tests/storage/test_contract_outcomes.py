"""Storage contract: outcomes of a claim (complete, fail, release, renew,
rescue) and their fencing.

Fencing is one rule for every operation on a claim: it applies only while
the task is still running under that claim's token. So the same scenarios
(a token never issued, the task cancelled, the task rescued and claimed
again) are run through each operation, and each must change nothing and
report the claim as not recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from support.contract import (
    LEASE,
    T0,
    claim,
    claim_one,
    enqueue,
    final_failure,
    get,
    rescue_of,
    retry_failure,
)

from task_queue.storage.base import Completion, Storage
from task_queue.task import Claim, Task, TaskStatus

# Each operation on a claim, as "was it recorded?". They take the task as
# its holder knows it (the claim and the lease it last saw) and a time.
Operation = Callable[[Storage, Task, float], bool]


def _complete(storage: Storage, task: Task, now: float) -> bool:
    return task.claim in storage.complete([Completion(task.claim, '"done"')], now)


def _fail_retry(storage: Storage, task: Task, now: float) -> bool:
    return storage.fail(task.claim, retry_failure(), now)


def _fail_final(storage: Storage, task: Task, now: float) -> bool:
    return storage.fail(task.claim, final_failure(), now)


def _release(storage: Storage, task: Task, now: float) -> bool:
    return task.claim in storage.release([task.claim])


def _renew(storage: Storage, task: Task, now: float) -> bool:
    return task.claim in storage.renew([task.claim], now, LEASE)


def _rescue(storage: Storage, task: Task, now: float) -> bool:
    applied = storage.rescue([rescue_of(task)], now)
    assert applied in ([], [(task.id, "pending")])
    return bool(applied)


OPERATIONS: dict[str, Operation] = {
    "complete": _complete,
    "fail-retry": _fail_retry,
    "fail-final": _fail_final,
    "release": _release,
    "renew": _renew,
    "rescue": _rescue,
}
# What each operation leaves when it applies.
APPLIED_STATUS = {
    "complete": TaskStatus.COMPLETED,
    "fail-retry": TaskStatus.PENDING,
    "fail-final": TaskStatus.FAILED,
    "release": TaskStatus.PENDING,
    "renew": TaskStatus.RUNNING,
    "rescue": TaskStatus.PENDING,
}
operations = pytest.mark.parametrize("operation", sorted(OPERATIONS))


@operations
def test_with_the_claim_held_each_operation_applies(storage: Storage, operation: str) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage, T0, token=1)
    assert OPERATIONS[operation](storage, held, T0 + 1)
    assert get(storage, task_id).status is APPLIED_STATUS[operation]


@operations
def test_a_token_never_issued_changes_nothing(storage: Storage, operation: str) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage, T0, token=1)
    before = get(storage, task_id)
    impostor = dataclasses.replace(held, claim_token=2)
    assert not OPERATIONS[operation](storage, impostor, T0 + 1)
    assert get(storage, task_id) == before


@operations
def test_after_the_task_was_cancelled_nothing_changes(storage: Storage, operation: str) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage, T0, token=1)
    assert storage.cancel(task_id, T0 + 1)
    before = get(storage, task_id)
    assert not OPERATIONS[operation](storage, held, T0 + 2)
    assert get(storage, task_id) == before
    assert before.status is TaskStatus.CANCELLED


@operations
def test_after_a_rescue_and_a_new_claim_the_old_holder_changes_nothing(
    storage: Storage, operation: str
) -> None:
    task_id = enqueue(storage)
    old = claim_one(storage, T0, token=1)
    # Its lease ran out; a rescuer gave it up and another worker claimed it.
    assert storage.rescue([rescue_of(old)], T0 + LEASE + 1) == [(task_id, "pending")]
    new = claim_one(storage, T0 + LEASE + 2, token=2)
    before = get(storage, task_id)
    assert not OPERATIONS[operation](storage, old, T0 + LEASE + 3)
    assert get(storage, task_id) == before
    # The new holder is untouched by all that and still holds its claim.
    assert OPERATIONS[operation](storage, new, T0 + LEASE + 4)


@operations
def test_after_the_outcome_was_recorded_a_second_one_changes_nothing(
    storage: Storage, operation: str
) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage, T0, token=1)
    assert storage.complete([Completion(held.claim, "1")], T0 + 1) == {held.claim}
    before = get(storage, task_id)
    assert not OPERATIONS[operation](storage, held, T0 + 2)
    assert get(storage, task_id) == before


# -- complete ------------------------------------------------------------------


def test_complete_records_result_and_finish_time(storage: Storage) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage, T0)
    assert storage.complete([Completion(held.claim, '{"answer": [4, 2]}')], T0 + 3) == {held.claim}
    done = get(storage, task_id)
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"answer": [4, 2]}
    assert done.completed_at == T0 + 3
    assert done.lease_expires_at is None
    assert done.attempts == 1


def test_complete_many_returns_only_the_claims_still_held(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}") for n in range(3)]
    tasks = claim(storage, T0, token=5)
    assert storage.cancel(ids[1], T0 + 1)
    completions = [Completion(t.claim, str(t.id)) for t in tasks]
    completions.append(Completion(Claim(ids[2], 6), "0"))  # wrong token for a held task
    recorded = storage.complete(completions, T0 + 2)
    assert recorded == {tasks[0].claim, tasks[2].claim}
    assert [get(storage, i).status for i in ids] == [
        TaskStatus.COMPLETED,
        TaskStatus.CANCELLED,
        TaskStatus.COMPLETED,
    ]
    assert get(storage, ids[2]).result == ids[2]


def test_complete_with_no_result_stores_none(storage: Storage) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage)
    assert storage.complete([Completion(held.claim, None)], T0 + 1) == {held.claim}
    assert get(storage, task_id).result is None


def test_complete_of_nothing_records_nothing(storage: Storage) -> None:
    assert storage.complete([], T0) == set()


# -- fail ----------------------------------------------------------------------


def test_fail_with_a_retry_makes_the_task_pending_again_after_the_delay(storage: Storage) -> None:
    task_id = enqueue(storage, max_retries=3)
    held = claim_one(storage, T0)
    failure = retry_failure(retry_in=7.5, error="ValueError: nope")
    assert storage.fail(held.claim, failure, T0 + 2)
    after = get(storage, task_id)
    assert after.status is TaskStatus.PENDING
    assert after.run_at == T0 + 2 + 7.5
    assert after.retry_count == 1
    assert after.error_message == "ValueError: nope"
    assert after.error_traceback == "Traceback: boom"
    assert after.completed_at is None
    assert after.lease_expires_at is None
    # Not due before its backoff ran out; due at that very time.
    assert claim(storage, T0 + 9.4, token=2) == []
    again = claim_one(storage, T0 + 9.5, token=3)
    assert (again.id, again.attempts, again.retry_count) == (task_id, 2, 1)


def test_fail_for_good_is_the_dead_letter_state(storage: Storage) -> None:
    task_id = enqueue(storage, max_retries=0)
    held = claim_one(storage, T0)
    assert storage.fail(held.claim, final_failure("KeyError: 'x'"), T0 + 4)
    after = get(storage, task_id)
    assert after.status is TaskStatus.FAILED
    assert after.completed_at == T0 + 4
    assert after.error_message == "KeyError: 'x'"
    assert after.error_traceback == "Traceback: boom"
    assert after.retry_count == 0
    assert after.lease_expires_at is None
    assert claim(storage, T0 + 1000, token=2) == []


def test_fail_records_the_decision_it_is_given(storage: Storage) -> None:
    # The queue decides retry or dead letter (retry.decide); the storage
    # records the decision even against the task's own budget.
    task_id = enqueue(storage, max_retries=0)
    held = claim_one(storage, T0)
    assert storage.fail(held.claim, retry_failure(retry_in=1.0), T0)
    assert get(storage, task_id).status is TaskStatus.PENDING


def test_fail_without_traceback(storage: Storage) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage)
    failure = dataclasses.replace(final_failure(), traceback=None)
    assert storage.fail(held.claim, failure, T0 + 1)
    assert get(storage, task_id).error_traceback is None


# -- release -------------------------------------------------------------------


def test_release_gives_the_task_back_without_using_a_retry(storage: Storage) -> None:
    task_id = enqueue(storage, max_retries=2)
    held = claim_one(storage, T0, token=1)
    assert storage.release([held.claim]) == [held.claim]
    after = get(storage, task_id)
    assert after.status is TaskStatus.PENDING
    assert after.attempts == 0
    assert after.retry_count == 0
    assert after.lease_expires_at is None
    # Due again at once, and the next claim is attempt 1 again.
    again = claim_one(storage, T0, token=2)
    assert (again.id, again.attempts) == (task_id, 1)


def test_release_returns_only_the_claims_still_held(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}") for n in range(3)]
    tasks = claim(storage, T0, token=1)
    assert storage.cancel(ids[0], T0)
    released = storage.release([t.claim for t in tasks] + [Claim(ids[1], 2)])
    assert sorted(released) == sorted([tasks[1].claim, tasks[2].claim])
    assert get(storage, ids[0]).status is TaskStatus.CANCELLED


def test_release_of_nothing_releases_nothing(storage: Storage) -> None:
    assert storage.release([]) == []


# -- renew ---------------------------------------------------------------------


def test_renew_extends_the_lease_of_held_claims_only(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}") for n in range(3)]
    tasks = claim(storage, T0, token=1)
    assert storage.complete([Completion(tasks[2].claim, None)], T0 + 1) == {tasks[2].claim}
    claims = [t.claim for t in tasks] + [Claim(ids[1], 99)]
    renewed = storage.renew(claims, T0 + 20, 45.0)
    assert renewed == {tasks[0].claim, tasks[1].claim}
    assert get(storage, ids[0]).lease_expires_at == T0 + 20 + 45.0
    assert get(storage, ids[1]).lease_expires_at == T0 + 20 + 45.0
    assert get(storage, ids[2]).lease_expires_at is None
    assert get(storage, ids[2]).status is TaskStatus.COMPLETED


def test_renew_of_an_expired_lease_not_yet_rescued_still_holds(storage: Storage) -> None:
    # Expiry makes a claim *rescuable*; until a rescue applies, it is held.
    task_id = enqueue(storage)
    held = claim_one(storage, T0)
    assert storage.renew([held.claim], T0 + LEASE + 5, LEASE) == {held.claim}
    assert get(storage, task_id).lease_expires_at == T0 + 2 * LEASE + 5
    assert storage.expired(T0 + LEASE + 6) == []


def test_renew_does_not_revive_a_cancelled_task(storage: Storage) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage)
    assert storage.cancel(task_id, T0 + 1)
    assert storage.renew([held.claim], T0 + 2, LEASE) == set()
    assert get(storage, task_id).status is TaskStatus.CANCELLED
    assert get(storage, task_id).lease_expires_at is None


def test_renew_of_nothing_renews_nothing(storage: Storage) -> None:
    assert storage.renew([], T0, LEASE) == set()
