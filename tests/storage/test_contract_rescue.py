"""Storage contract: finding lost claims (expired leases, dead owners) and
giving them up, fenced by the claim *and* the lease the rescuer saw."""

from __future__ import annotations

from support.contract import LEASE, T0, claim, claim_one, enqueue, get, rescue_of

from task_queue.storage.base import Completion, Owner, Storage
from task_queue.task import TaskStatus

HOST = "host-a"


def test_expired_returns_exactly_the_running_tasks_whose_lease_ran_out(storage: Storage) -> None:
    short = enqueue(storage, name="short")
    long_ = enqueue(storage, name="long")
    done = enqueue(storage, name="done")
    pending = enqueue(storage, name="pending")
    claim_one(storage, T0, token=1, lease_seconds=10)
    claim_one(storage, T0, token=2, lease_seconds=100)
    finished = claim_one(storage, T0, token=3, lease_seconds=10)
    assert storage.complete([Completion(finished.claim, None)], T0 + 1) == {finished.claim}
    assert (get(storage, pending).status, get(storage, done).status) == (
        TaskStatus.PENDING,
        TaskStatus.COMPLETED,
    )

    assert storage.expired(T0 + 5) == []
    # Expired means lease < now: at the lease's own instant it still holds.
    assert storage.expired(T0 + 10) == []
    assert [t.id for t in storage.expired(T0 + 10.001)] == [short]
    assert sorted(t.id for t in storage.expired(T0 + 101)) == [short, long_]


def test_expired_tasks_are_returned_as_found_with_their_claim(storage: Storage) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage, T0, token=9)
    [found] = storage.expired(T0 + LEASE + 1)
    assert found == get(storage, task_id)
    assert found.claim == held.claim
    assert found.lease_expires_at == T0 + LEASE


def test_dead_owners_add_their_tasks_even_with_a_live_lease(storage: Storage) -> None:
    dead = Owner(HOST, 111)
    mine = [enqueue(storage, name=f"dead-{n}") for n in range(2)]
    alive_same_host = enqueue(storage, name="alive")
    other_host = enqueue(storage, name="other-host")
    expired_alive = enqueue(storage, name="expired")
    claim(storage, T0, token=1, owner=dead, limit=2)
    claim_one(storage, T0, token=2, owner=Owner(HOST, 222))
    claim_one(storage, T0, token=3, owner=Owner("host-b", 111))  # same pid, other host
    claim_one(storage, T0, token=4, owner=Owner(HOST, 333), lease_seconds=0.5)

    now = T0 + 1
    assert [t.id for t in storage.expired(now)] == [expired_alive]
    found = storage.expired(now, dead_owners=[dead])
    assert sorted(t.id for t in found) == sorted([*mine, expired_alive])
    assert alive_same_host not in {t.id for t in found}
    assert other_host not in {t.id for t in found}


def test_a_task_both_expired_and_of_a_dead_owner_is_found_once(storage: Storage) -> None:
    dead = Owner(HOST, 111)
    task_id = enqueue(storage)
    claim_one(storage, T0, owner=dead)
    found = storage.expired(T0 + LEASE + 1, dead_owners=[dead])
    assert [t.id for t in found] == [task_id]


def test_rescue_with_retries_left_makes_the_task_pending_again(storage: Storage) -> None:
    task_id = enqueue(storage, max_retries=2)
    claim_one(storage, T0)
    now = T0 + LEASE + 1
    [found] = storage.expired(now)
    assert storage.rescue([rescue_of(found, retry_in=3.0, error="claim lost")], now) == [
        (task_id, "pending")
    ]
    after = get(storage, task_id)
    assert after.status is TaskStatus.PENDING
    assert after.run_at == now + 3.0
    assert after.retry_count == 1  # the lost attempt counts as a retry
    assert after.attempts == 1
    assert after.error_message == "claim lost"
    assert after.lease_expires_at is None
    assert storage.expired(now + 1000) == []
    assert claim(storage, now + 2.9, token=2) == []
    assert claim_one(storage, now + 3.0, token=3).attempts == 2


def test_rescue_without_retries_left_fails_the_task_for_good(storage: Storage) -> None:
    task_id = enqueue(storage, max_retries=0)
    claim_one(storage, T0)
    now = T0 + LEASE + 1
    [found] = storage.expired(now)
    assert storage.rescue([rescue_of(found, retry_in=None, error="gone")], now) == [
        (task_id, "failed")
    ]
    after = get(storage, task_id)
    assert after.status is TaskStatus.FAILED
    assert after.completed_at == now
    assert after.error_message == "gone"
    assert after.lease_expires_at is None
    assert claim(storage, now + 1000, token=2) == []


def test_a_renewal_after_the_rescuer_looked_wins(storage: Storage) -> None:
    task_id = enqueue(storage)
    held = claim_one(storage, T0, token=1)
    now = T0 + LEASE + 1
    [found] = storage.expired(now)
    # The holder was only slow: its heartbeat lands before the rescue.
    assert storage.renew([held.claim], now, LEASE) == {held.claim}
    assert storage.rescue([rescue_of(found)], now) == []
    after = get(storage, task_id)
    assert after.status is TaskStatus.RUNNING
    assert after.claim == held.claim
    assert after.lease_expires_at == now + LEASE


def test_rescue_applies_only_the_rescues_still_valid(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}", max_retries=n) for n in range(4)]
    held = claim(storage, T0, token=1)
    now = T0 + LEASE + 1
    found = {t.id: t for t in storage.expired(now)}
    assert sorted(found) == ids
    # Between the look and the rescue: one completes, one is renewed.
    assert storage.complete([Completion(held[1].claim, None)], now) == {held[1].claim}
    assert storage.renew([held[2].claim], now, LEASE) == {held[2].claim}
    rescues = [rescue_of(found[i], retry_in=None if i == ids[0] else 0.0) for i in ids]
    applied = storage.rescue(rescues, now)
    assert sorted(applied) == [(ids[0], "failed"), (ids[3], "pending")]
    assert [get(storage, i).status for i in ids] == [
        TaskStatus.FAILED,
        TaskStatus.COMPLETED,
        TaskStatus.RUNNING,
        TaskStatus.PENDING,
    ]


def test_a_rescue_seen_twice_applies_once(storage: Storage) -> None:
    task_id = enqueue(storage)
    claim_one(storage, T0)
    now = T0 + LEASE + 1
    [found] = storage.expired(now)
    # Two rescuers (two processes) found the same lost claim.
    assert storage.rescue([rescue_of(found)], now) == [(task_id, "pending")]
    assert storage.rescue([rescue_of(found)], now) == []
    assert get(storage, task_id).retry_count == 1


def test_rescue_of_nothing_applies_nothing(storage: Storage) -> None:
    assert storage.rescue([], T0) == []


def test_claim_owners_lists_the_pids_holding_claims_on_a_host(storage: Storage) -> None:
    for n in range(5):
        enqueue(storage, name=f"t{n}")
    claim(storage, T0, token=1, owner=Owner(HOST, 10), limit=2)
    claim(storage, T0, token=2, owner=Owner(HOST, 20), limit=1)
    finished = claim_one(storage, T0, token=3, owner=Owner(HOST, 30))
    claim_one(storage, T0, token=4, owner=Owner("host-b", 40))
    assert storage.complete([Completion(finished.claim, None)], T0) == {finished.claim}

    assert sorted(storage.claim_owners(HOST)) == [10, 20]  # each pid once
    assert storage.claim_owners("host-b") == [40]
    assert storage.claim_owners("host-nobody") == []
