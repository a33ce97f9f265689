"""Listings of pending and running tasks read their own index when they are
few (issue 11: the dashboard's filters at a million tasks), and give the
same pages, in the same order, as the walk of the table they replace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from task_queue import ManualClock, TaskQueue
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


@pytest.mark.parametrize(
    "filters",
    [{"task_type": "a"}, {"queue_name": "q1"}, {"task_type": "b", "queue_name": "q2"}],
    ids=lambda f: ",".join(f.values()),
)
def test_failed_tasks_of_one_type_or_queue_page_in_failure_order(
    tmp_path: Path, filters: dict[str, str]
) -> None:
    clock = ManualClock(1_800_000_000.0)
    with TaskQueue(tmp_path / "q.db", clock=clock) as queue:
        for i in range(30):
            queue.enqueue(f"t{i}", "ab"[i % 2], max_retries=0, queue_name=f"q{i % 3}")
        order = [13, 2, 29, *range(30)]  # some fail out of id order
        failed: list[tuple[float, int]] = []
        for i in dict.fromkeys(order):
            task = queue.get_task(i + 1)
            claimed = queue.claim(1, task_types=[task.task_type], queues=[task.queue_name])
            clock.advance(1 if i % 5 else 0)  # ties in completed_at too
            queue.fail_task(claimed[0], "boom")
            failed.append((clock.time(), claimed[0].id))
        storage = queue.storage
        assert isinstance(storage, sqlite_storage.SqliteStorage)
        assert storage._listing_query(TaskFilter(status="failed", **filters)).startswith(
            "list_failed_"
        )
        tasks = {t.id: t for t in queue.get_tasks([i for _, i in failed])}
        expected = [
            i
            for _, i in sorted(failed, reverse=True)
            if all(getattr(tasks[i], k) == v for k, v in filters.items())
        ]
        pages = _pages(queue, status="failed", **filters)
        assert [i for page in pages for i in page] == expected
