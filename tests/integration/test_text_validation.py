"""Regression: text that SQLite cannot store is refused up front, typed."""

from __future__ import annotations

import pytest

from task_queue import TaskQueue


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "bad \udc00", "task_type": "t"},
        {"name": "n", "task_type": "t\ud800"},
        {"name": "n", "task_type": "t", "unique_key": "k\udfff"},
    ],
)
def test_lone_surrogates_raise_value_error_and_write_nothing(
    queue: TaskQueue, kwargs: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        queue.enqueue(**kwargs)
    assert sum(queue.get_queue_stats().values()) == 0


def test_worker_id_with_lone_surrogate_is_refused(queue: TaskQueue) -> None:
    queue.enqueue("n", "t")
    with pytest.raises(ValueError, match="worker_id"):
        queue.dequeue(worker_id="w\udc00")
    assert queue.get_queue_stats()["pending"] == 1


@pytest.mark.parametrize("limit", [2**63, 2**70])
def test_huge_limits_are_value_errors_not_overflow(queue: TaskQueue, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        queue.get_tasks_by_status("pending", limit=limit)
    with pytest.raises(ValueError, match="limit"):
        queue.claim(limit)
