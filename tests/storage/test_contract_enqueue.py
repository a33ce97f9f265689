"""Storage contract: enqueue (what a row stores, ids, atomic batches) and
unique keys (one live task per key, in a batch too, across retry())."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from support.contract import (
    T0,
    Backend,
    claim,
    claim_one,
    enqueue,
    final_failure,
    get,
    new_task,
    status,
)

from task_queue.errors import DuplicateTaskError
from task_queue.storage.base import Completion, Storage
from task_queue.task import TaskPriority, TaskStatus


def test_enqueue_stores_the_row_as_encoded(storage: Storage) -> None:
    row = new_task(
        T0,
        name="resize",
        task_type="image",
        payload={"path": "/a.png", "sizes": [1, 2]},
        priority="HIGH",
        max_retries=5,
        delay=30.0,
        timeout=12.5,
        unique_key="img:/a.png",
    )
    [(task_id, created)] = storage.enqueue([row], T0)
    assert created
    task = get(storage, task_id)
    assert task.status is TaskStatus.PENDING
    assert (task.name, task.task_type) == ("resize", "image")
    assert task.payload == {"path": "/a.png", "sizes": [1, 2]}
    assert task.priority is TaskPriority.HIGH
    assert task.created_at == T0
    assert task.scheduled_at == T0 + 30.0
    assert task.run_at == T0 + 30.0
    assert task.max_retries == 5
    assert task.timeout == 12.5
    assert task.unique_key == "img:/a.png"
    assert (task.attempts, task.retry_count) == (0, 0)
    for unset in ("worker_id", "started_at", "completed_at", "lease_expires_at", "claim_token"):
        assert getattr(task, unset) is None, unset
    assert task.result is None and task.error_message is None


def test_no_payload_is_stored_as_none(storage: Storage) -> None:
    assert get(storage, enqueue(storage)).payload is None


def test_a_batch_returns_ids_in_order_all_created(storage: Storage) -> None:
    rows = [new_task(name=f"t{n}") for n in range(50)]
    stored = storage.enqueue(rows, T0)
    assert [created for _, created in stored] == [True] * 50
    ids = [task_id for task_id, _ in stored]
    assert ids == sorted(set(ids))
    assert [get(storage, i).name for i in ids] == [f"t{n}" for n in range(50)]


def test_an_empty_batch_inserts_nothing(storage: Storage) -> None:
    assert storage.enqueue([], T0) == []
    assert sum(storage.counts().values()) == 0


def test_ids_are_never_reused(storage: Storage) -> None:
    # Even after the highest id was purged: an id in a log always means
    # the same task.
    first = enqueue(storage)
    held = claim_one(storage)
    assert storage.complete([Completion(held.claim, None)], T0) == {held.claim}
    assert storage.purge(["completed"], T0 + 1, 10) == 1
    assert storage.get(first) is None
    assert enqueue(storage) > first


def test_get_of_an_unknown_id_is_none(storage: Storage) -> None:
    assert storage.get(12345) is None


# -- atomic batches ------------------------------------------------------------

# A row TaskSpec would refuse, built by hand: the storage must refuse it
# too (the schema's CHECK), and with it the whole batch.
BAD = dataclasses.replace(new_task(name="bad"), priority=101)


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(False, id="no-unique-keys"),
        pytest.param(True, id="with-unique-keys"),  # backends may take another path for these
    ],
)
def test_a_batch_with_one_bad_row_inserts_nothing(storage: Storage, keys: bool) -> None:
    before = enqueue(storage, name="before")
    good = [new_task(name=f"g{n}", unique_key=f"k{n}" if keys else None) for n in range(3)]
    with pytest.raises(Exception):  # noqa: B017 - which error is the backend's
        storage.enqueue([*good[:2], BAD, good[2]], T0)
    assert [t.id for t in storage.list_by_status("pending", 100)] == [before]
    assert storage.counts().get("pending") == 1
    # Nothing of the failed batch holds a unique key.
    if keys:
        assert all(created for _, created in storage.enqueue(good, T0))


def test_a_single_bad_row_inserts_nothing(storage: Storage) -> None:
    with pytest.raises(Exception):  # noqa: B017 - which error is the backend's
        storage.enqueue([BAD], T0)
    assert storage.list_by_status("pending", 100) == []
    assert storage.counts().get("pending", 0) == 0


# -- unique keys ---------------------------------------------------------------


def test_a_pending_holder_makes_a_second_insert_return_its_id(storage: Storage) -> None:
    holder = enqueue(storage, name="first", unique_key="k")
    stored = storage.enqueue([new_task(name="second", unique_key="k", priority=4)], T0 + 1)
    assert stored == [(holder, False)]
    # Nothing was inserted, and the holder was not changed.
    assert storage.counts().get("pending") == 1
    assert get(storage, holder).name == "first"
    assert get(storage, holder).priority is TaskPriority.NORMAL


def test_a_running_holder_counts_as_live(storage: Storage) -> None:
    holder = enqueue(storage, unique_key="k")
    claim_one(storage)
    assert storage.enqueue([new_task(unique_key="k")], T0) == [(holder, False)]


def test_a_key_repeated_within_one_batch(storage: Storage) -> None:
    stored = storage.enqueue(
        [
            new_task(name="a", unique_key="k1"),
            new_task(name="b", unique_key="k2"),
            new_task(name="c", unique_key="k1"),
            new_task(name="d"),
        ],
        T0,
    )
    (a, a_new), (b, b_new), (c, c_new), (d, d_new) = stored
    assert (a_new, b_new, c_new, d_new) == (True, True, False, True)
    assert c == a
    assert len({a, b, d}) == 3
    assert storage.counts().get("pending") == 3


def test_a_batch_mixing_new_and_held_keys(storage: Storage) -> None:
    holder = enqueue(storage, unique_key="held")
    stored = storage.enqueue([new_task(unique_key="new"), new_task(unique_key="held")], T0)
    assert stored[1] == (holder, False)
    assert stored[0][1] is True


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
def test_after_the_holder_finished_the_key_is_free(storage: Storage, outcome: str) -> None:
    holder = enqueue(storage, unique_key="k")
    held = claim_one(storage)
    if outcome == "completed":
        assert storage.complete([Completion(held.claim, None)], T0) == {held.claim}
    elif outcome == "failed":
        assert storage.fail(held.claim, final_failure(), T0)
    else:
        assert storage.cancel(holder, T0)
    [(task_id, created)] = storage.enqueue([new_task(unique_key="k")], T0 + 1)
    assert created
    assert task_id != holder
    assert status(storage, holder) == outcome


def test_a_failed_attempt_with_a_retry_keeps_holding_the_key(storage: Storage) -> None:
    holder = enqueue(storage, unique_key="k")
    held = claim_one(storage)
    assert storage.fail(held.claim, dataclasses.replace(final_failure(), retry_in=5.0), T0)
    assert storage.enqueue([new_task(unique_key="k")], T0) == [(holder, False)]


def test_retry_of_a_finished_task_whose_key_is_now_held_raises(storage: Storage) -> None:
    old = enqueue(storage, unique_key="k")
    assert storage.cancel(old, T0)
    new = enqueue(storage, unique_key="k")
    before = get(storage, old)
    with pytest.raises(DuplicateTaskError):
        storage.retry(old, T0 + 1)
    assert get(storage, old) == before
    assert status(storage, new) == "pending"
    # Once the new holder finished, the old task may be retried.
    assert storage.cancel(new, T0 + 2)
    assert storage.retry(old, T0 + 3)
    assert status(storage, old) == "pending"


def test_keys_are_independent(storage: Storage) -> None:
    a = enqueue(storage, unique_key="a")
    b = enqueue(storage, unique_key="b")
    assert a != b
    assert [t.id for t in claim(storage)] == [a, b]


def test_two_storage_objects_racing_on_one_key_create_one_task(backend: Backend) -> None:
    # The key is checked and taken in one atomic step across connections
    # (processes), not only within one storage object.
    racers = [backend.open() for _ in range(4)]
    start = threading.Barrier(len(racers))
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def race(storage: Storage, n: int) -> None:
        try:
            start.wait(timeout=10)
            results.extend(storage.enqueue([new_task(name=f"r{n}", unique_key="race")], T0))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=race, args=(s, n), daemon=True) for n, s in enumerate(racers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert len({task_id for task_id, _ in results}) == 1
    assert racers[0].counts().get("pending") == 1
