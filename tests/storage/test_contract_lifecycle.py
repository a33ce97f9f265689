"""Storage contract: the change feed, check_writable(), and close()."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support.contract import (
    LEASE,
    OWNER,
    T0,
    Backend,
    claim_one,
    claim_request,
    enqueue,
    final_failure,
    new_task,
    rescue_of,
)

from task_queue.errors import QueueClosedError
from task_queue.storage.base import Completion, Owner, Storage
from task_queue.task import Task

# -- change feed ---------------------------------------------------------------


def test_a_feed_reports_commits_of_another_storage_object_once(backend: Backend) -> None:
    mine, other = backend.open(), backend.open()
    feed = mine.change_feed()
    assert feed.changed() is True  # the first call: nothing seen yet
    assert feed.changed() is False
    assert feed.changed() is False
    enqueue(other)
    assert feed.changed() is True
    assert feed.changed() is False


def test_a_feed_does_not_report_its_own_storage_objects_commits(backend: Backend) -> None:
    # The queue wakes its own listeners for those; the feed is for others'.
    mine = backend.open()
    feed = mine.change_feed()
    feed.changed()
    task_id = enqueue(mine)
    held = claim_one(mine)
    assert mine.complete([Completion(held.claim, None)], T0) == {held.claim}
    assert mine.get(task_id) is not None
    assert feed.changed() is False


def test_feeds_are_independent(backend: Backend) -> None:
    mine, other = backend.open(), backend.open()
    first, second = mine.change_feed(), mine.change_feed()
    first.changed()
    second.changed()
    enqueue(other)
    assert first.changed() is True
    assert first.changed() is False
    # What the first feed consumed is still news to the second.
    assert second.changed() is True


def test_reads_and_refused_writes_of_another_object_are_not_changes(backend: Backend) -> None:
    mine, other = backend.open(), backend.open()
    task_id = enqueue(other)
    feed = mine.change_feed()
    feed.changed()
    other.get(task_id)
    other.counts()
    other.list_by_status("pending", 10)
    other.check_writable()
    assert other.retry(task_id, T0) is False  # pending: nothing to do
    assert feed.changed() is False


# -- check_writable --------------------------------------------------------------


def test_check_writable_passes_on_a_writable_database_and_writes_nothing(
    storage: Storage,
) -> None:
    task_id = enqueue(storage)
    before = (storage.counts(), storage.get(task_id))
    storage.check_writable()
    assert (storage.counts(), storage.get(task_id)) == before


# -- close ---------------------------------------------------------------------

# Every operation, with arguments that would make it do something: the
# task held (claimed before the close) and its claim.
CALLS: dict[str, Callable[[Storage, Task], Any]] = {
    "enqueue": lambda s, t: s.enqueue([new_task()], T0),
    "claim": lambda s, t: s.claim(claim_request(2), T0),
    "claim-with-completions": lambda s, t: s.claim(
        claim_request(2), T0, [Completion(t.claim, None)]
    ),
    "complete": lambda s, t: s.complete([Completion(t.claim, None)], T0),
    "fail": lambda s, t: s.fail(t.claim, final_failure(), T0),
    "release": lambda s, t: s.release([t.claim]),
    "renew": lambda s, t: s.renew([t.claim], T0, LEASE),
    "rescue": lambda s, t: s.rescue([rescue_of(t)], T0),
    "cancel": lambda s, t: s.cancel(t.id, T0),
    "retry": lambda s, t: s.retry(t.id, T0),
    "purge": lambda s, t: s.purge(["completed"], T0, 10),
    "get": lambda s, t: s.get(t.id),
    "list_by_status": lambda s, t: s.list_by_status("running", 10),
    "counts": lambda s, t: s.counts(),
    "next_due": lambda s, t: s.next_due(T0),
    "due_by_type": lambda s, t: s.due_by_type(T0),
    "expired": lambda s, t: s.expired(T0 + 1000, dead_owners=[Owner("h", 1)]),
    "claim_owners": lambda s, t: s.claim_owners(OWNER.host),
    "check_writable": lambda s, t: s.check_writable(),
    "change_feed": lambda s, t: s.change_feed().changed(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_after_close_every_call_raises_queue_closed(storage: Storage, call: str) -> None:
    enqueue(storage)
    held = claim_one(storage)
    storage.close()
    with pytest.raises(QueueClosedError):
        CALLS[call](storage, held)


# The same with nothing to do. A backend may well answer these without
# touching the database, but the contract says "later calls raise".
NOTHING_TO_DO: dict[str, Callable[[Storage], Any]] = {
    "complete": lambda s: s.complete([], T0),
    "release": lambda s: s.release([]),
    "renew": lambda s: s.renew([], T0, LEASE),
    "rescue": lambda s: s.rescue([], T0),
    "change_feed": lambda s: s.change_feed(),  # the feed only fails when asked
}


@pytest.mark.parametrize("call", sorted(NOTHING_TO_DO))
def test_after_close_calls_with_nothing_to_do_raise_queue_closed(
    backend: Backend, call: str
) -> None:
    """Regression: the SQLite backend answered these after close() (it
    returned early, before looking at the engine)."""
    storage = backend.open()
    storage.close()
    with pytest.raises(QueueClosedError):
        NOTHING_TO_DO[call](storage)


def test_close_twice_is_harmless(storage: Storage) -> None:
    storage.close()
    storage.close()
    with pytest.raises(QueueClosedError):
        storage.counts()


def test_close_keeps_what_was_committed(backend: Backend) -> None:
    first = backend.open()
    task_id = enqueue(first)
    first.close()
    second = backend.open()
    assert second.get(task_id) is not None
