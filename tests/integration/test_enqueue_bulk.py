"""enqueue_many's one-statement path must store exactly what the row-by-row
path stores, in order, and fall back to it where it cannot."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from task_queue import TaskQueue


def _spec(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"task {i} é 😀",
        "task_type": "t",
        "payload": {"i": i, "text": "a\x00b\n", "f": 0.1 + i} if i % 2 else None,
        "priority": 1 + i % 4,
        "max_retries": i % 5,
        "timeout": 0.25 if i % 3 else None,
        "scheduled_at": dt.datetime(2030, 1, 1, 12, 0, 0, 123456) if i % 7 == 0 else None,
        **extra,
    }


def _stored(queue: TaskQueue, task_id: int) -> tuple[Any, ...]:
    t = queue.get_task(task_id)
    assert t is not None
    return (t.name, t.task_type, t.payload, int(t.priority), t.max_retries, t.timeout,
            t.scheduled_at)  # fmt: skip


@pytest.mark.parametrize(
    "variant",
    ["bulk", "with_unique_key", "with_nul_in_name"],
)
def test_batch_paths_store_the_same_rows_in_order(tmp_path: Any, variant: str) -> None:
    specs = [_spec(i) for i in range(40)]
    if variant == "with_unique_key":
        specs[5]["unique_key"] = "k"
    if variant == "with_nul_in_name":
        specs[5]["name"] = "nul\x00name"
    batch = TaskQueue(str(tmp_path / "batch.db"))
    single = TaskQueue(str(tmp_path / "single.db"))
    try:
        ids = batch.enqueue_many(specs)
        one_by_one = [single.enqueue(**spec) for spec in specs]
        assert ids == one_by_one == list(range(1, 41))
        for a, b in zip(ids, one_by_one, strict=True):
            assert _stored(batch, a) == _stored(single, b)
    finally:
        batch.close()
        single.close()
