"""The SQLite backend releases and cancels dependents set-based: one
statement per task depended on, however many wait for it (issue 10)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from task_queue import TaskQueue, TaskStatus


def _trace(queue: TaskQueue, statements: list[str]) -> None:
    def install(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.append)

    queue.storage._engine.call(install, readonly=True, savepoint=False)  # type: ignore[attr-defined]


def test_ten_thousand_dependents_are_released_by_one_statement(tmp_path: Path) -> None:
    with TaskQueue(tmp_path / "q.db") as queue:
        parent = queue.enqueue("p", "t")
        children = queue.enqueue_many(
            [{"name": f"c{i}", "task_type": "t", "depends_on": [parent]} for i in range(10_000)]
        )
        assert queue.get_queue_stats()["waiting"] == 10_000
        task = queue.dequeue()
        assert task is not None and task.id == parent
        statements: list[str] = []
        _trace(queue, statements)
        assert queue.complete_task(task, "done")
        # Distinct statements: the trace repeats one for each step of the
        # count triggers it fires, row by row, inside it.
        releases = {s for s in statements if "waiting_on = waiting_on - 1" in s}
        assert len(releases) == 1
        assert len(set(statements)) < 10  # nothing per dependent
        stats = queue.get_queue_stats()
        assert stats["pending"] == 10_000 and stats["waiting"] == 0
        assert queue.get_task(children[-1]).status == TaskStatus.PENDING  # type: ignore[union-attr]


def test_a_failure_cancels_a_deep_chain_level_by_level(tmp_path: Path) -> None:
    """No depth limit (a recursive trigger would stop at 1,000 levels)."""
    with TaskQueue(tmp_path / "q.db") as queue:
        first = queue.enqueue("p", "t", max_retries=0)
        ids = [first]
        for i in range(1_500):
            ids.append(queue.enqueue(f"c{i}", "t", depends_on=[ids[-1]]))
        task = queue.dequeue()
        assert task is not None and queue.fail_task(task, "boom")
        last = queue.get_task(ids[-1])
        assert last is not None and last.status == TaskStatus.CANCELLED
        assert queue.get_queue_stats()["cancelled"] == 1_500
