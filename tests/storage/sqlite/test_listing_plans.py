"""Listings of pending and running tasks read their own index when they are
few (issue 11: the dashboard's filters at a million tasks), and give the
same pages, in the same order, as the walk of the table they replace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from task_queue import TaskQueue
from task_queue.storage.base import TaskFilter
from task_queue.storage.sqlite import storage as sqlite_storage


def _pages(queue: TaskQueue, **filters: str) -> list[list[int]]:
    pages = []
    after = None
    while True:
        page = queue.list_tasks(limit=3, after=after, **filters)  # type: ignore[arg-type]
        pages.append([t.id for t in page.tasks])
        if page.next is None:
            return pages
        after = page.next


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[TaskQueue]:
    queue = TaskQueue(tmp_path / "q.db")
    # Old pending tasks (one scheduled ahead) behind many newer finished ones,
    # some running, over two queues and two types.
    queue.enqueue("old", "a", queue_name="q1", delay=3600)
    queue.enqueue_many(
        [{"name": f"t{i}", "task_type": "ab"[i % 2], "queue_name": f"q{i % 3}"} for i in range(40)]
    )
    for _ in range(12):
        task = queue.dequeue(task_types=["b"])
        assert task is not None
        queue.complete_task(task, None)
    for _ in range(5):
        assert queue.dequeue() is not None  # running
    yield queue
    queue.close()


FILTERS = [
    {"status": "pending"},
    {"status": "pending", "queue_name": "q1"},
    {"status": "pending", "task_type": "a"},
    {"status": "pending", "queue_name": "q2", "task_type": "b"},
    {"status": "running"},
    {"status": "running", "queue_name": "q0", "task_type": "a"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f.values()))
def test_the_index_plans_page_like_the_walk(
    mixed: TaskQueue, monkeypatch: pytest.MonkeyPatch, filters: dict[str, str]
) -> None:
    by_index = _pages(mixed, **filters)
    monkeypatch.setattr(sqlite_storage, "LIVE_INDEX_MAX", -1)  # always the walk
    by_walk = _pages(mixed, **filters)
    assert by_index == by_walk
    assert sum(map(len, by_index)) > 0


def test_the_plan_follows_the_counts(mixed: TaskQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = mixed.storage
    assert isinstance(storage, sqlite_storage.SqliteStorage)
    choose = storage._listing_query
    assert choose(TaskFilter(status="pending")) == "list_pending"
    assert choose(TaskFilter(status="pending", queue_name="q1")) == "list_pending_in_queue"
    assert choose(TaskFilter(status="running")) == "list_running"
    assert choose(TaskFilter(status="completed")) == "list_finished"
    assert choose(TaskFilter(task_type="a")) == "list_newest"
    monkeypatch.setattr(sqlite_storage, "LIVE_INDEX_MAX", 3)  # more pending than that
    assert choose(TaskFilter(status="pending")) == "list_newest"
    assert choose(TaskFilter(status="pending", queue_name="nowhere")) == "list_pending_in_queue"
