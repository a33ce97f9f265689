"""Files that are not ours are refused and left byte-for-byte unchanged.

Not SQLite at all, SQLite belonging to another application (its own tables,
its own application_id, a ``tasks`` table of its own), and corrupt files (a
valid header over garbage pages, a truncated file). TaskQueue must raise
NotAQueueDatabaseError without writing a byte, and leave no -wal or -shm
file behind. New database files are created readable by their owner only.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from task_queue import NotAQueueDatabaseError, TaskQueue, Worker


def _fingerprint(path: Path) -> tuple[str, int, int]:
    info = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), info.st_size, info.st_mtime_ns


def _sqlite_app(path: Path, *, wal: bool = False, app_id: int = 0, table: str = "users") -> None:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    if app_id:
        conn.execute(f"PRAGMA application_id = {app_id}")
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, status TEXT)")
    conn.executemany(
        f"INSERT INTO {table} (name, status) VALUES (?, ?)",
        [(f"row {i}", "pending") for i in range(200)],
    )
    conn.commit()
    conn.close()


def _text(path: Path) -> None:
    path.write_text("name,status\nnot,a database\n" * 100)


def _binary(path: Path) -> None:
    path.write_bytes(bytes(random.Random(1).getrandbits(8) for _ in range(8192)))


def _short_header(path: Path) -> None:
    path.write_bytes(b"SQLite for")


def _garbage_after_header(path: Path) -> None:
    rng = random.Random(2)
    path.write_bytes(b"SQLite format 3\x00" + bytes(rng.getrandbits(8) for _ in range(4 * 4096)))


def _garbage_pages(path: Path) -> None:
    """A real database whose pages after the 100-byte header are garbage."""
    _sqlite_app(path)
    data = bytearray(path.read_bytes())
    rng = random.Random(3)
    data[100:] = bytes(rng.getrandbits(8) for _ in range(len(data) - 100))
    path.write_bytes(bytes(data))


def _truncated(path: Path) -> None:
    _sqlite_app(path)
    path.write_bytes(path.read_bytes()[:100])


def _newer_schema(path: Path) -> None:
    """Our own file, from a future version of the library."""
    TaskQueue(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE task_queue_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


def _our_app_id_without_meta(path: Path) -> None:
    """Regression: a file with our application_id but not our tables was
    switched to WAL mode (its header rewritten) before being refused."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1414624613")  # b"TQue": claims to be ours
    conn.execute("CREATE TABLE something (x)")
    conn.commit()
    conn.close()


MAKERS: dict[str, Callable[[Path], None]] = {
    "text-file": _text,
    "binary-file": _binary,
    "short-header": _short_header,
    "foreign-app-tables": _sqlite_app,
    "foreign-app-wal": lambda p: _sqlite_app(p, wal=True),
    "foreign-application-id": lambda p: _sqlite_app(p, app_id=0x1234ABCD),
    "conflicting-tasks-table": lambda p: _sqlite_app(p, table="tasks"),
    "conflicting-tasks-table-wal": lambda p: _sqlite_app(p, wal=True, table="tasks"),
    "header-then-garbage": _garbage_after_header,
    "garbage-pages": _garbage_pages,
    "truncated": _truncated,
    "newer-schema": _newer_schema,
    "our-id-but-no-meta": _our_app_id_without_meta,
}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_file_that_is_not_ours_is_refused_and_untouched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "app.db"
    MAKERS[kind](path)
    before = _fingerprint(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    for _ in range(2):  # and again: the first refusal changed nothing either
        with pytest.raises(NotAQueueDatabaseError) as info:
            TaskQueue(str(path))
        assert (
            "untouched" in str(info.value)
            or "schema version" in str(info.value)
            or ("damaged" in str(info.value))
        )
        assert _fingerprint(path) == before
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal, no -shm


def test_refusal_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _sqlite_app(path, table="tasks")
    with pytest.raises(NotAQueueDatabaseError, match=r"another application.*tasks"):
        TaskQueue(str(path))
    _text(path)
    with pytest.raises(NotAQueueDatabaseError, match="not a SQLite database"):
        TaskQueue(str(path))


def test_worker_cannot_be_built_on_a_refused_file(tmp_path: Path) -> None:
    """There is no TaskQueue to give a Worker: the refusal comes first."""
    path = tmp_path / "app.db"
    _sqlite_app(path)
    with pytest.raises(NotAQueueDatabaseError):
        Worker(TaskQueue(str(path)), {"t": lambda p: None})


def test_an_empty_file_is_adopted(tmp_path: Path) -> None:
    """A zero-byte file holds nothing to lose: it becomes a queue (touch-then-open)."""
    path = tmp_path / "queue.db"
    path.touch()
    with TaskQueue(str(path)) as q:
        assert q.get_task(q.enqueue("a", "t")) is not None


def test_new_database_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        q = TaskQueue(str(path))
        try:
            q.enqueue("a", "t")  # the -wal and -shm files exist now
            for name in ("queue.db", "queue.db-wal", "queue.db-shm"):
                file = tmp_path / name
                if file.exists():
                    assert stat.S_IMODE(file.stat().st_mode) == 0o600, name
            assert (tmp_path / "queue.db-wal").exists()
        finally:
            q.close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_queue_keeps_its_mode(tmp_path: Path) -> None:
    """We restrict files we create, not files an operator chose to share."""
    path = tmp_path / "queue.db"
    TaskQueue(str(path)).close()
    path.chmod(0o640)
    with TaskQueue(str(path)) as q:
        q.enqueue("a", "t")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    from task_queue import DatabaseOpenError

    with pytest.raises(DatabaseOpenError, match="directory"):
        TaskQueue(str(tmp_path))
    with pytest.raises(DatabaseOpenError, match="does not exist"):
        TaskQueue(str(tmp_path / "missing" / "queue.db"))
    assert list(tmp_path.iterdir()) == []
