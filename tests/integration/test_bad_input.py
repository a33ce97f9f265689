"""Bad input raises clearly, with nothing written (and foreign files left untouched)."""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from task_queue import (
    DatabaseOpenError,
    NotAQueueDatabaseError,
    PayloadError,
    StorageError,
    TaskPriority,
    TaskQueue,
)


def assert_empty(q: TaskQueue) -> None:
    assert set(q.get_queue_stats().values()) == {0}


def snapshot(path: Path) -> tuple[bytes, int, set[str]]:
    """Content, mtime (ns) and the directory listing next to the file."""
    return path.read_bytes(), path.stat().st_mtime_ns, set(os.listdir(path.parent))


# -- payloads -------------------------------------------------------------------------------


class Opaque:
    pass


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


BAD_PAYLOADS: dict[str, Any] = {
    "set": {1, 2, 3},
    "object": Opaque(),
    "nan": float("nan"),
    "infinity": float("inf"),
    "-infinity": {"x": [-math.inf]},
    "nested nan": {"a": [1, {"b": float("nan")}]},
    "tuple": (1, 2),
    "nested tuple": {"pair": (1, 2)},
    "int key": {1: "one"},
    "tuple key": {(1, 2): "pair"},
    "none key": {None: 1},
    "bytes": b"raw",
    "decimal": Decimal("1.5"),
    "function": print,
    "lone surrogate": "\ud800",
    "too deep": nested(300),
}


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_non_json_payload_is_refused_before_anything_is_written(
    queue: TaskQueue, payload: Any
) -> None:
    with pytest.raises(PayloadError) as info:
        queue.enqueue("bad", "t", payload)
    assert isinstance(info.value, TypeError)  # PayloadError is also a TypeError
    assert "payload" in str(info.value)
    with pytest.raises(PayloadError):
        queue.enqueue_many([{"name": "good", "task_type": "t"}, {"name": "bad",
                            "task_type": "t", "payload": payload}])  # fmt: skip
    assert_empty(queue)


def test_payload_size_limit(db_path: str) -> None:
    with TaskQueue(db_path, max_payload_bytes=100) as q:
        with pytest.raises(PayloadError, match="limit"):
            q.enqueue("big", "t", "x" * 200)
        assert_empty(q)
        assert q.enqueue("small", "t", "x" * 50)


def test_json_values_round_trip_exactly(queue: TaskQueue) -> None:
    payload = {
        "s": "héllo ✓ \u0000",
        "i": 2**62,
        "f": 0.1,
        "neg": -1.5e-300,
        "b": [True, False, None],
        "nested": {"list": [[], {}, [1, [2, [3]]]]},
    }
    task_id = queue.enqueue("ok", "t", payload)
    assert queue.get_task(task_id).payload == payload  # type: ignore[union-attr]


# -- other arguments --------------------------------------------------------------------------


# 0, 5 and -1 used to be here: any int from -100 to 100 is a priority now
# (Django's range); the out-of-range ones take their place.
@pytest.mark.parametrize("priority", [101, -101, 10**6, "urgent", True, False, 2.5, None])
def test_bad_priority(queue: TaskQueue, priority: Any) -> None:
    with pytest.raises(ValueError, match="priority"):
        queue.enqueue("x", "t", priority=priority)
    assert_empty(queue)


@pytest.mark.parametrize("max_retries", [-1, 1.5, "3", True, None])
def test_bad_max_retries(queue: TaskQueue, max_retries: Any) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        queue.enqueue("x", "t", max_retries=max_retries)
    assert_empty(queue)


@pytest.mark.parametrize("task_type", ["", None, 3])
def test_bad_task_type(queue: TaskQueue, task_type: Any) -> None:
    with pytest.raises(ValueError, match="task_type"):
        queue.enqueue("x", task_type)
    assert_empty(queue)


def test_bad_name_and_timeout(queue: TaskQueue) -> None:
    with pytest.raises(TypeError, match="name"):
        queue.enqueue(None, "t")  # type: ignore[arg-type]
    for timeout in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(ValueError, match="timeout"):
            queue.enqueue("x", "t", timeout=timeout)  # type: ignore[arg-type]
    assert_empty(queue)


def test_good_edge_values_are_accepted(queue: TaskQueue) -> None:
    assert queue.enqueue("", "t", max_retries=0, priority=TaskPriority.LOW)
    assert queue.enqueue("x", "t", priority=1)


# -- paths and files ------------------------------------------------------------------------------


def test_path_in_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(DatabaseOpenError, match="does not exist"):
        TaskQueue(missing / "queue.db")
    assert not (tmp_path / "no").exists()


def test_a_directory_as_path(tmp_path: Path) -> None:
    before = set(os.listdir(tmp_path))
    with pytest.raises(DatabaseOpenError, match="directory"):
        TaskQueue(tmp_path)
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(
    "content",
    [
        b"hello, I am a text file\n" * 100,
        b"\x00" * 4096,
        b"SQLite format 2\x00" + b"\x00" * 1000,
        b"x",
    ],
    ids=["text", "zeros", "almost-header", "one-byte"],
)
def test_a_file_that_is_not_sqlite_is_left_byte_for_byte_untouched(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = snapshot(path)
    with pytest.raises(NotAQueueDatabaseError, match="not a SQLite database"):
        TaskQueue(path)
    assert snapshot(path) == before


def test_a_corrupt_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = snapshot(path)
    with pytest.raises(NotAQueueDatabaseError):
        TaskQueue(path)
    assert snapshot(path) == before


def _foreign_database(path: Path, application_id: int = 0) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")
    if application_id:
        conn.execute(f"PRAGMA application_id = {application_id}")
    conn.commit()
    conn.close()
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))


@pytest.mark.parametrize("application_id", [0, 0x12345678])
def test_another_application_s_sqlite_file_is_refused_untouched(
    tmp_path: Path, application_id: int
) -> None:
    path = tmp_path / "app.db"
    _foreign_database(path, application_id)
    before = snapshot(path)
    with pytest.raises(NotAQueueDatabaseError, match="another application"):
        TaskQueue(path)
    assert snapshot(path) == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT email FROM users").fetchall() == [("a@example.com",)]
    finally:
        conn.close()


def test_an_empty_existing_file_becomes_a_queue(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with TaskQueue(path) as q:
        assert q.enqueue("a", "t")
    with TaskQueue(path) as q:
        assert q.get_queue_stats()["pending"] == 1


@pytest.mark.sqlite_only("file modes")
def test_a_new_file_is_private(db_path: str) -> None:
    with TaskQueue(db_path):
        pass
    assert os.stat(db_path).st_mode & 0o077 == 0


@pytest.mark.sqlite_only("SQLite schema versions (PostgreSQL: tests/storage/postgres)")
def test_a_newer_schema_version_is_refused(db_path: str) -> None:
    with TaskQueue(db_path) as q:
        q.enqueue("a", "t")
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE task_queue_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(NotAQueueDatabaseError, match="newer"):
        TaskQueue(db_path)


def test_open_errors_are_storage_errors_and_leave_no_threads(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    for target in (tmp_path / "missing" / "q.db", tmp_path):
        with pytest.raises(StorageError):
            TaskQueue(target)
    path = tmp_path / "text.db"
    path.write_text("plain text")
    with pytest.raises(StorageError):
        TaskQueue(path)
    app = tmp_path / "app.db"
    _foreign_database(app)
    with pytest.raises(StorageError):
        TaskQueue(app)
    assert {t for t in threading.enumerate() if t.is_alive()} - before == set()
