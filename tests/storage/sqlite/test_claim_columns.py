"""The claim returns exactly the columns rows.py maps (CLAIMED_COLUMNS), in
that order; what it leaves out is what the claimer knows."""

from __future__ import annotations

import re
from pathlib import Path

from task_queue import TaskQueue
from task_queue.storage.rows import CLAIMED_COLUMNS
from task_queue.storage.sqlite.sql import QUERIES


def test_the_claim_returns_the_claimed_columns() -> None:
    returning = QUERIES["claim"].rsplit("RETURNING", 1)[1]
    columns = tuple(re.findall(r"[a-z_]+", returning))
    assert columns == CLAIMED_COLUMNS


def test_a_claimed_task_equals_the_row_as_stored(tmp_path: Path) -> None:
    with TaskQueue(tmp_path / "q.db") as queue:
        queue.enqueue("a", "t", {"x": 1}, priority="high", queue_name="q", unique_key="k")
        claimed = queue.dequeue()
        assert claimed is not None
        assert queue.get_task(claimed.id) == claimed
