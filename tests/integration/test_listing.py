"""Listing tasks page by page with filters, and retrying the dead-letter set."""

from __future__ import annotations

import pytest

from task_queue import RetryPolicy, SearchedTasks, TaskPage, TaskQueue, TaskStatus


def _fail(queue: TaskQueue, n: int, **fields: object) -> list[int]:
    ids = queue.enqueue_many([{"name": f"f{i}", "max_retries": 0, **fields} for i in range(n)])  # type: ignore[misc]
    for _ in ids:
        task = queue.dequeue()
        assert task is not None
        assert queue.fail_task(task, "boom")
    return ids


def test_pages_cover_everything_once_newest_first(queue: TaskQueue) -> None:
    ids = queue.enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(25)])
    seen: list[int] = []
    after = None
    while True:
        page = queue.list_tasks(limit=10, after=after)
        seen += [t.id for t in page.tasks]
        if page.next is None:
            break
        after = page.next
    assert seen == sorted(ids, reverse=True)


def test_filters_combine(queue: TaskQueue) -> None:
    a = queue.enqueue("a", "x", queue_name="q1")
    queue.enqueue("b", "y", queue_name="q1")
    c = queue.enqueue("c", "x", queue_name="q2")
    assert [t.id for t in queue.list_tasks(task_type="x").tasks] == [c, a]
    assert [t.id for t in queue.list_tasks(task_type="x", queue_name="q1").tasks] == [a]
    assert [t.id for t in queue.list_tasks(status="running").tasks] == []
    assert len(queue.list_tasks(status=TaskStatus.PENDING).tasks) == 3


def test_finished_tasks_are_listed_most_recently_finished_first(clocked_queue: TaskQueue) -> None:
    q = clocked_queue
    ids = q.enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(5)])
    done = []
    for _ in ids:
        task = q.dequeue()
        assert task is not None
        q.clock.advance(1)  # type: ignore[attr-defined]
        q.complete_task(task, "ok")
        done.append(task.id)
    first = q.list_tasks(status="completed", limit=2)
    assert [t.id for t in first.tasks] == done[::-1][:2]
    assert first.next is not None and "/" in first.next
    rest = q.list_tasks(status="completed", limit=10, after=first.next)
    assert [t.id for t in rest.tasks] == done[::-1][2:] and rest.next is None


def test_a_bounded_listing_says_what_it_searched_and_resumes_there(
    clocked_queue: TaskQueue,
) -> None:
    q = clocked_queue
    needle = q.enqueue("needle", "rare")
    hay = q.enqueue_many([{"name": f"h{i}", "task_type": "common"} for i in range(8)])
    page = q.list_tasks(task_type="rare", scan=5)
    assert page == TaskPage([], str(hay[-5]), SearchedTasks(5, hay[-1], hay[-5]))
    page = q.list_tasks(task_type="rare", scan=5, after=page.next)
    assert page == TaskPage([q.get_task(needle)], None)  # type: ignore[list-item]
    # In finish order, the cursor of the stop point carries its finish time.
    while (task := q.dequeue()) is not None:
        q.clock.advance(1)  # type: ignore[attr-defined]
        q.complete_task(task, None)
    page = q.list_tasks(status="completed", task_type="rare", scan=3)
    assert page.tasks == [] and page.searched is not None
    stop = q.get_task(page.searched.last_id)
    assert stop is not None and page.next == f"{stop.completed_at!r}/{stop.id}"
    assert page.searched.last_finished_at == stop.completed_at
    seen = []
    while page.next is not None:
        page = q.list_tasks(status="completed", task_type="rare", scan=3, after=page.next)
        seen += [t.id for t in page.tasks]
    assert seen == [needle]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"status": "done"}, "unknown status"),
        ({"task_type": ""}, "task_type"),
        ({"queue_name": "no spaces"}, "queue name"),
        ({"limit": 0}, "limit"),
        ({"after": "nonsense"}, "cursor"),
        ({"after": "inf/3"}, "cursor"),
        ({"scan": 0}, "scan"),
        ({"scan": True}, "scan"),
    ],
)
def test_bad_listing_arguments_are_clear_errors(
    queue: TaskQueue, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        queue.list_tasks(**kwargs)  # type: ignore[arg-type]


def test_retry_failed_puts_the_dead_letter_set_back(db_path: str) -> None:
    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0)) as queue:
        xs = _fail(queue, 3, task_type="x")
        ys = _fail(queue, 2, task_type="y")
        assert queue.retry_failed(task_type="x") == 3
        assert all(queue.get_task(i).status == TaskStatus.PENDING for i in xs)  # type: ignore[union-attr]
        assert all(queue.get_task(i).status == TaskStatus.FAILED for i in ys)  # type: ignore[union-attr]
        progress: list[int] = []
        assert queue.retry_failed(on_progress=progress.append) == 2
        assert progress == [2]
        assert queue.get_queue_stats()["failed"] == 0


def test_retry_failed_skips_a_task_whose_unique_key_is_taken(db_path: str) -> None:
    with TaskQueue(db_path) as queue:
        [failed] = _fail(queue, 1, task_type="x", unique_key="k")
        holder = queue.enqueue("new holder", "x", unique_key="k")
        assert queue.retry_failed() == 0
        assert queue.get_task(failed).status == TaskStatus.FAILED  # type: ignore[union-attr]
        assert queue.get_task(holder).status == TaskStatus.PENDING  # type: ignore[union-attr]
