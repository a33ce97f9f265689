"""The WAL shrinks back once a long reader lets go.

A reader holding a snapshot keeps SQLite from resetting the WAL, so it grows
with every commit (measured by a hostile tester: 170 MB during 50,000
tasks). Once the reader let go it shrank only to journal_size_limit (then 64
MiB, 67 MB measured), and only when a writer came along, until every
connection closed. Now the engine, idle for a moment with a large WAL,
truncates it with a checkpoint that never waits for anyone.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from support import wait_until

from task_queue import TaskQueue

SMALL = 1 << 20


def wal_size(db: Path) -> int:
    try:
        return os.stat(f"{db}-wal").st_size
    except FileNotFoundError:
        return 0


def test_the_wal_returns_to_a_small_size_after_a_long_reader(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    with TaskQueue(str(db), synchronous="NORMAL") as q:
        q.enqueue("warm", "t")
        reader = sqlite3.connect(db, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM tasks").fetchone()  # holds a snapshot
            for _ in range(20):
                q.enqueue_many(
                    [{"name": "t", "task_type": "t", "payload": {"pad": "x" * 800}}] * 100
                )
                for task in q.claim(100, task_types=["t"]):
                    q.complete_task(task, {"pad": "y" * 200})
            grown = wal_size(db)
            assert grown > 8 * SMALL, f"the reader did not make the WAL grow ({grown} bytes)"
            # While the reader holds on, the idle engine's checkpoint cannot
            # complete; it does not wait for it either.
            assert q.get_queue_stats()["completed"] >= 2000
            reader.execute("COMMIT")
        finally:
            reader.close()
        # Nothing else is written: the engine shrinks the WAL on its own.
        wait_until(lambda: wal_size(db) < SMALL, timeout=10)
        # And the queue works on.
        q.enqueue("after", "t")
        assert q.get_queue_stats()["pending"] >= 1
