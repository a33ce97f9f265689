"""Contract: a listing's scan bound and its resume point (issue 11).

``list_tasks(where, limit, after, scan)`` examines at most ``scan`` rows of
its walk for a filter the backend cannot seek to. One task type is such a
filter on every backend (no index leads with the type: it was rejected for
what it costs every enqueue), alone (the walk of every task, newest first)
or with a finished status (the walk of that status in finish order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from support.contract import T0, claim, new_task

from task_queue.storage import scan as scan_module
from task_queue.storage.base import Completion, Listing, Position, Storage, TaskFilter
from task_queue.task import SearchedTasks


def enqueue_types(storage: Storage, types: Sequence[str]) -> list[int]:
    """One task per entry, of that type, in one batch; their ids."""
    made = storage.enqueue([new_task(name=f"t{i}", task_type=t) for i, t in enumerate(types)], T0)
    return [task_id for task_id, _ in made]


def resume(listing: Listing) -> Position:
    searched = listing.searched
    assert searched is not None
    return Position(searched.last_id, searched.last_finished_at)


@pytest.fixture(params=[3, scan_module.FIRST_WINDOW], ids=["first-window-3", "first-window"])
def first_window(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The bounded scan tries a small first window before the rest of the
    bound: both paths (a bound above and below it) must behave alike."""
    monkeypatch.setattr(scan_module, "FIRST_WINDOW", request.param)
    yield request.param


def test_a_bounded_listing_stops_at_the_bound_and_resumes_after_it(
    storage: Storage, first_window: int
) -> None:
    [match] = enqueue_types(storage, ["rare"])
    others = enqueue_types(storage, ["common"] * 25)  # newer than the match
    where = TaskFilter(task_type="rare")

    listing = storage.list_tasks(where, 5, scan=10)
    assert listing.tasks == []
    assert listing.searched == SearchedTasks(10, first_id=others[-1], last_id=others[-10])

    listing = storage.list_tasks(where, 5, resume(listing), scan=10)
    assert listing.tasks == []
    assert listing.searched == SearchedTasks(10, first_id=others[-11], last_id=others[-20])

    listing = storage.list_tasks(where, 5, resume(listing), scan=10)
    assert [t.id for t in listing.tasks] == [match]
    assert listing.searched is None  # the walk reached the oldest task
    # Without a bound, the same listing reads down to it at once.
    assert [t.id for t in storage.list_tasks(where, 5).tasks] == [match]


def test_matches_within_the_bound_are_returned_with_where_it_stopped(
    storage: Storage, first_window: int
) -> None:
    ids = enqueue_types(storage, ["rare", "common", "rare", "common", "common", "rare", "common"])
    where = TaskFilter(task_type="rare")
    listing = storage.list_tasks(where, 5, scan=4)  # ids[6] down to ids[3]
    assert [t.id for t in listing.tasks] == [ids[5]]
    assert listing.searched == SearchedTasks(4, first_id=ids[6], last_id=ids[3])
    listing = storage.list_tasks(where, 5, resume(listing), scan=4)
    assert [t.id for t in listing.tasks] == [ids[2], ids[0]]
    assert listing.searched is None


def test_a_page_filled_within_the_bound_is_not_cut(storage: Storage, first_window: int) -> None:
    ids = enqueue_types(storage, ["rare", "rare", "common", "rare", "rare"])
    listing = storage.list_tasks(TaskFilter(task_type="rare"), 2, scan=3)
    assert [t.id for t in listing.tasks] == [ids[4], ids[3]]
    assert listing.searched is None  # full: the caller goes on from its last task
    # A bound beyond the oldest task, a window ending exactly there: nothing to resume.
    for scan in (5, 50):
        listing = storage.list_tasks(TaskFilter(task_type="nothing"), 2, scan=scan)
        assert listing == Listing([], None)
    # Every row matches a listing without a filter: no bound applies.
    assert len(storage.list_tasks(TaskFilter(), 4, scan=1).tasks) == 4


def test_a_finished_status_is_searched_in_finish_order(storage: Storage, first_window: int) -> None:
    ids = enqueue_types(storage, ["rare", "common", "common", "rare", "common", "common"])
    held = {t.id: t for t in claim(storage, T0)}
    # Finished in an order unlike the ids: by finish time, newest first,
    # 3, 0, 5, 1, 4, 2 (the rare ones 3 and 0 among them).
    finish = [ids[2], ids[4], ids[1], ids[5], ids[0], ids[3]]
    for n, task_id in enumerate(finish):
        storage.complete([Completion(held[task_id].claim, None)], T0 + 1 + n)
    where = TaskFilter(status="completed", task_type="rare")

    listing = storage.list_tasks(where, 5, scan=1)  # 3 only
    assert [t.id for t in listing.tasks] == [ids[3]]
    assert listing.searched == SearchedTasks(1, ids[3], ids[3], T0 + 6, T0 + 6)
    listing = storage.list_tasks(where, 5, resume(listing), scan=2)  # 0, 5
    assert [t.id for t in listing.tasks] == [ids[0]]
    assert listing.searched == SearchedTasks(2, ids[0], ids[5], T0 + 5, T0 + 4)
    listing = storage.list_tasks(where, 5, resume(listing), scan=2)  # 1, 4
    assert listing.tasks == []
    assert listing.searched == SearchedTasks(2, ids[1], ids[4], T0 + 3, T0 + 2)
    listing = storage.list_tasks(where, 5, resume(listing), scan=2)  # 2, the last
    assert listing == Listing([], None)


@pytest.mark.parametrize("scan", [1, 2, 5, 7])
def test_following_the_resume_points_lists_every_match_once_in_order(
    storage: Storage, first_window: int, scan: int
) -> None:
    types = ["a" if i % 7 in (0, 3) else "b" for i in range(40)]
    enqueue_types(storage, types)
    running = claim(storage, T0, limit=30)
    for n, task in enumerate(sorted(running, key=lambda t: (t.id * 7) % 30)):
        storage.complete([Completion(task.claim, None)], T0 + 1 + n)
    for where in (TaskFilter(task_type="a"), TaskFilter(status="completed", task_type="a")):
        expected = [t.id for t in storage.list_tasks(where, 100).tasks]
        seen: list[int] = []
        after: Position | None = None
        for _ in range(100):
            listing = storage.list_tasks(where, 3, after, scan=scan)
            assert len(listing.tasks) <= 3
            seen += [t.id for t in listing.tasks]
            if len(listing.tasks) == 3:
                last = listing.tasks[-1]
                after = Position(last.id, last.completed_at)
            elif listing.searched is not None:
                assert listing.searched.examined == scan
                after = resume(listing)
            else:
                break
        assert seen == expected, where
        assert expected
