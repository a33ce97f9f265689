"""Files of the previous release (schema version 1) open and are migrated in
place, atomically, exactly once, with every task kept (issue 8).

The v1 files are built here from migration 1, which is kept as released,
with the v1 release's own insert statement.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from task_queue import StorageError, TaskQueue
from task_queue.storage.sqlite.schema import APPLICATION_ID, SCHEMA_VERSION
from task_queue.storage.sqlite.sql import MIGRATIONS, split_statements

# The v1 release's insert (queries.sql, insert_task, at task_queue 0.1).
V1_INSERT = """
INSERT INTO tasks (name, task_type, payload, priority, status, created_at, scheduled_at,
                   max_retries, run_at, timeout, unique_key)
VALUES (:name, :task_type, :payload, :priority, 'pending', :now, :scheduled_at,
        :max_retries, :run_at, :timeout, :unique_key)
"""

V1_COLUMNS = (
    "id", "name", "task_type", "payload", "priority", "status", "worker_id", "created_at",
    "scheduled_at", "started_at", "completed_at", "max_retries", "retry_count",
    "error_message", "result", "attempts", "run_at", "lease_expires_at", "claim_token",
    "timeout", "unique_key", "error_traceback", "owner_host", "owner_pid",
)  # fmt: skip


def make_v1_file(path: Path, n: int = 12) -> None:
    """A queue file as task_queue 0.1 left it: tasks in every state, the
    highest ids purged (so AUTOINCREMENT's mark is above max(id))."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in split_statements(MIGRATIONS[1]):
            conn.execute(statement)
        conn.execute("INSERT INTO task_queue_meta (key, value) VALUES ('schema_version', '1')")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for i in range(n + 2):
            conn.execute(
                V1_INSERT,
                {"name": f"task {i}", "task_type": "t", "payload": f'{{"i": {i}}}',
                 "priority": 1 + i % 4, "now": 1000.0 + i, "scheduled_at": None,
                 "max_retries": 3, "run_at": 1000.0 + i, "timeout": None,
                 "unique_key": f"key-{i}" if i % 3 == 0 else None},
            )  # fmt: skip
        conn.execute(
            "UPDATE tasks SET status = 'running', worker_id = 'w', claim_token = 7, attempts = 1, "
            "lease_expires_at = 5000, owner_host = 'h', owner_pid = 1 WHERE id % 5 = 1"
        )
        conn.execute(
            "UPDATE tasks SET status = 'completed', completed_at = 2000, result = '\"ok\"' "
            "WHERE id % 5 = 2"
        )
        conn.execute(
            "UPDATE tasks SET status = 'failed', completed_at = 2000, error_message = 'boom', "
            "error_traceback = 'Traceback...' WHERE id % 5 = 3"
        )
        conn.execute("UPDATE tasks SET status = 'cancelled', completed_at = 2000 WHERE id % 5 = 4")
        conn.execute("DELETE FROM tasks WHERE id > ?", (n,))  # purged: ids n+1, n+2 used
        conn.execute("COMMIT")
    finally:
        conn.close()


def rows(path: Path, columns: tuple[str, ...] = V1_COLUMNS) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {', '.join(columns)} FROM tasks ORDER BY id").fetchall()
    finally:
        conn.close()


def meta(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_v1_file_is_migrated_in_place_with_every_task_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path)
    before = rows(path)
    counts_before = dict(meta(path, "SELECT status, n FROM task_counts"))
    with TaskQueue(path) as queue:
        assert rows(path) == before
        assert {r[0] for r in meta(path, "SELECT queue_name FROM tasks")} == {"default"}
        stats = queue.get_queue_stats()
        assert stats == {s: counts_before.get(s, 0) for s in stats}
        assert queue.get_queue_stats("default") == stats
        # Ids are never reused: the next one is above the purged ones.
        assert queue.enqueue("new", "t") == 15
        # The migrated file works like a new one.
        running = queue.get_tasks_by_status("running", 100)
        assert {t.id for t in running} == {1, 6, 11}
        task = queue.dequeue()
        assert task is not None and task.queue_name == "default"
        assert queue.complete_task(task, "done")
        queue.enqueue("other queue", "t", queue_name="q2")
        assert queue.get_queue_stats("q2")["pending"] == 1
    assert meta(path, "SELECT value FROM task_queue_meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    assert [v for (v,) in meta(path, "SELECT version FROM task_queue_migrations")] == [2]
    assert meta(path, "PRAGMA integrity_check") == [("ok",)]


def test_a_new_file_records_every_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    TaskQueue(path).close()
    TaskQueue(path).close()
    versions = [v for (v,) in meta(path, "SELECT version FROM task_queue_migrations ORDER BY 1")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_a_migration_that_fails_leaves_the_v1_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE tasks_v2 (x)")  # in the way of the migration's rebuild
    conn.close()
    before = rows(path)
    with pytest.raises(StorageError, match="tasks_v2"):
        TaskQueue(path)
    assert rows(path) == before
    assert meta(path, "SELECT value FROM task_queue_meta WHERE key = 'schema_version'") == [("1",)]


OPENER = textwrap.dedent(
    """
    import os, sys, time
    from task_queue import TaskQueue
    path, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.001)
    with TaskQueue(path, busy_timeout=60) as q:
        print(sum(q.get_queue_stats().values()), flush=True)
    """
)


@pytest.mark.slow
def test_processes_opening_an_old_file_at_once_migrate_it_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path, n=50_000)  # large enough that the migration takes a while
    total = len(rows(path, ("id",)))
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(path), str(go)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    try:
        go.touch()
        outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert outputs == [str(total)] * 4
    assert [v for (v,) in meta(path, "SELECT version FROM task_queue_migrations")] == [2]
    assert meta(path, "PRAGMA integrity_check") == [("ok",)]
