"""Storage contract: claims (order, limit, due time, type filter, what a
claim records, no task claimed twice) and claims that carry completions.

Written only against the Storage protocol; runs once per backend
(``tests/storage/conftest.py``).
"""

from __future__ import annotations

import threading

from support.contract import (
    T0,
    Backend,
    claim,
    claim_one,
    claim_request,
    enqueue,
    get,
    new_task,
    retry_failure,
)

from task_queue.storage.base import Completion, Owner, Storage
from task_queue.task import Claim, TaskStatus


def test_claim_takes_highest_priority_then_earliest_due_then_lowest_id(storage: Storage) -> None:
    # Enqueued in an order that matches none of the three keys, so each
    # key has to decide somewhere.
    specs = [
        ("low-early", {"priority": "LOW", "scheduled_at": T0 - 50}),
        ("normal-late", {"priority": "NORMAL", "scheduled_at": T0 - 10}),
        ("critical", {"priority": "CRITICAL", "scheduled_at": T0 - 1}),
        ("normal-early", {"priority": "NORMAL", "scheduled_at": T0 - 30}),
        ("normal-late-2", {"priority": "NORMAL", "scheduled_at": T0 - 10}),
        ("high", {"priority": "HIGH"}),
    ]
    ids = {name: enqueue(storage, name=name, **fields) for name, fields in specs}
    expected = ["critical", "high", "normal-early", "normal-late", "normal-late-2", "low-early"]

    # One at a time: the order in which tasks are *selected*...
    taken = [claim_one(storage, T0, token=n).id for n in range(1, len(specs) + 1)]
    assert taken == [ids[name] for name in expected]


def test_one_claim_returns_its_tasks_in_claim_order(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}", priority=p) for n, p in enumerate([1, 4, 2, 4, 3])]
    tasks = claim(storage, T0)
    # ...and the order a batch comes back in.
    assert [t.id for t in tasks] == [ids[1], ids[3], ids[4], ids[2], ids[0]]


def test_limit_caps_each_claim_and_leaves_the_rest_pending(storage: Storage) -> None:
    ids = [enqueue(storage, name=f"t{n}") for n in range(5)]
    first = claim(storage, T0, token=1, limit=2)
    second = claim(storage, T0, token=2, limit=2)
    third = claim(storage, T0, token=3, limit=2)
    assert [t.id for t in first] == ids[:2]
    assert [t.id for t in second] == ids[2:4]
    assert [t.id for t in third] == ids[4:]
    assert claim(storage, T0, token=4, limit=2) == []


def test_only_due_tasks_are_claimed(storage: Storage) -> None:
    later = enqueue(storage, name="later", delay=10.0)
    assert claim(storage, T0) == []
    assert claim(storage, T0 + 9.999) == []
    # Due means run_at <= now: at exactly its time it is claimable.
    assert [t.id for t in claim(storage, T0 + 10.0)] == [later]


def test_a_task_scheduled_in_the_past_is_due_at_once(storage: Storage) -> None:
    overdue = enqueue(storage, scheduled_at=T0 - 3600)
    assert [t.id for t in claim(storage, T0)] == [overdue]


def test_task_types_filter(storage: Storage) -> None:
    a = enqueue(storage, task_type="a")
    b = enqueue(storage, task_type="b")
    c = enqueue(storage, task_type="c")
    assert [t.id for t in claim(storage, T0, token=1, task_types=["b"])] == [b]
    assert claim(storage, T0, token=2, task_types=["missing"]) == []
    assert [t.id for t in claim(storage, T0, token=3, task_types=["c", "a"])] == [a, c]


def test_task_types_none_claims_any_type(storage: Storage) -> None:
    ids = [enqueue(storage, task_type=kind) for kind in ("a", "b", "c")]
    assert [t.id for t in claim(storage, T0, task_types=None)] == ids


def test_a_claimed_task_carries_the_request_claim(storage: Storage) -> None:
    task_id = enqueue(storage)
    owner = Owner("host-z", 4242)
    now = T0 + 5
    [task] = claim(
        storage, now, token=77, worker_id="w-seven", owner=owner, lease_seconds=12.5, limit=1
    )
    for seen in (task, get(storage, task_id)):  # as returned, and as stored
        assert seen.id == task_id
        assert seen.status is TaskStatus.RUNNING
        assert seen.claim_token == 77
        assert seen.claim == Claim(task_id, 77)
        assert seen.worker_id == "w-seven"
        assert (seen.owner_host, seen.owner_pid) == ("host-z", 4242)
        assert seen.lease_expires_at == now + 12.5
        assert seen.started_at == now
        assert seen.attempts == 1
        assert seen.retry_count == 0


def test_each_claim_counts_an_attempt(storage: Storage) -> None:
    task_id = enqueue(storage)
    first = claim_one(storage, T0, token=1)
    # A failed attempt with a retry due at once: the next claim is attempt 2.
    assert storage.fail(first.claim, retry_failure(retry_in=0.0), T0 + 1)
    second = claim_one(storage, T0 + 1, token=2)
    assert second.id == task_id
    assert second.attempts == 2


def test_a_claimed_task_is_not_claimed_again(storage: Storage) -> None:
    enqueue(storage)
    claim_one(storage, T0, token=1)
    assert claim(storage, T0 + 1, token=2) == []


def test_claiming_nothing_changes_nothing(storage: Storage) -> None:
    task_id = enqueue(storage, delay=60.0)
    before = get(storage, task_id)
    assert claim(storage, T0) == []
    assert get(storage, task_id) == before


def test_two_storage_objects_claiming_at_once_never_share_a_task(backend: Backend) -> None:
    # Two objects on one database: two connections, as two processes
    # would have. Each claims in a loop until nothing is left; the backend
    # must hand every task to exactly one of them.
    first, second = backend.open(), backend.open()
    total = 300
    rows = [new_task(name=f"t{n}", priority=1 + n % 4) for n in range(total)]
    ids = [task_id for task_id, _ in first.enqueue(rows, T0)]
    start = threading.Barrier(2)
    taken: dict[int, list[tuple[int, int | None]]] = {1: [], 2: []}
    errors: list[BaseException] = []

    def claimer(storage: Storage, token: int) -> None:
        try:
            start.wait(timeout=10)
            while True:
                _, tasks = storage.claim(claim_request(token, limit=3), T0)
                if not tasks:
                    return
                taken[token] += [(t.id, t.claim_token) for t in tasks]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=claimer, args=(storage, token), daemon=True)
        for storage, token in ((first, 1), (second, 2))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a claimer did not finish"
    assert errors == []
    claimed = [task_id for pairs in taken.values() for task_id, _ in pairs]
    assert len(claimed) == len(set(claimed)), "a task was claimed twice"
    assert sorted(claimed) == ids
    # Each task carries the token of the claim that returned it.
    for token, pairs in taken.items():
        assert all(claim_token == token for _, claim_token in pairs)
        assert all(get(first, task_id).claim_token == token for task_id, _ in pairs)


# -- claims with completions ---------------------------------------------------


def test_claim_records_its_completions_and_claims_in_one_call(storage: Storage) -> None:
    a = enqueue(storage, name="a")
    b = enqueue(storage, name="b")
    held = claim_one(storage, T0, token=1)
    assert held.id == a
    now = T0 + 2
    recorded, tasks = storage.claim(claim_request(2), now, [Completion(held.claim, '{"ok": 1}')])
    assert recorded == {held.claim}
    assert [t.id for t in tasks] == [b]
    done = get(storage, a)
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"ok": 1}
    assert done.completed_at == now
    assert done.lease_expires_at is None


def test_a_fenced_out_completion_is_not_recorded_and_does_not_stop_the_claim(
    storage: Storage,
) -> None:
    a = enqueue(storage, name="a")
    b = enqueue(storage, name="b")
    c = enqueue(storage, name="c")
    gone = claim_one(storage, T0, token=1)
    kept = claim_one(storage, T0, token=2)
    assert (gone.id, kept.id) == (a, b)
    assert storage.cancel(a, T0 + 1)
    stale = Claim(b, 999)  # a token b was never claimed with
    completions = [
        Completion(gone.claim, '"late"'),
        Completion(stale, '"wrong"'),
        Completion(kept.claim, "1"),
    ]
    recorded, tasks = storage.claim(claim_request(3), T0 + 2, completions)
    assert recorded == {kept.claim}
    assert [t.id for t in tasks] == [c]
    assert get(storage, a).status is TaskStatus.CANCELLED
    assert get(storage, a).result is None
    assert get(storage, b).status is TaskStatus.COMPLETED
    assert get(storage, b).result == 1


def test_a_claim_with_completions_and_nothing_due_still_records_them(storage: Storage) -> None:
    enqueue(storage)
    held = claim_one(storage, T0, token=1)
    recorded, tasks = storage.claim(claim_request(2), T0 + 1, [Completion(held.claim, None)])
    assert recorded == {held.claim}
    assert tasks == []
    assert get(storage, held.id).status is TaskStatus.COMPLETED
    assert get(storage, held.id).result is None
