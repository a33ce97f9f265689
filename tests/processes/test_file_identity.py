"""The queue's file must be the one file at its one path.

* Hard links: SQLite names the WAL after the path it was opened by, so two
  processes opening two names of one file got two WALs: 1,500 of 3,000
  acknowledged tasks lost and the index corrupted, silently. A file with
  more than one name is refused at open, before anything is written.
* Deleted or replaced while open: the connection kept writing into the
  unlinked file and every later task was gone. The path is checked before
  each batch (and after each write batch's COMMIT): DatabaseReplacedError,
  nothing written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from task_queue import (
    DatabaseReplacedError,
    StorageError,
    TaskQueue,
    UnsafeDatabaseFileError,
)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_tasks(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])
    finally:
        conn.close()


OPEN_IN_ANOTHER_PROCESS = """
import json, sys
from task_queue import TaskQueue, UnsafeDatabaseFileError
try:
    TaskQueue(sys.argv[1]).close()
except UnsafeDatabaseFileError as exc:
    print(json.dumps({"refused": str(exc)}))
else:
    print(json.dumps({"refused": None}))
"""


def open_elsewhere(path: Path) -> str | None:
    done = subprocess.run(
        [sys.executable, "-c", OPEN_IN_ANOTHER_PROCESS, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    refused: str | None = json.loads(done.stdout)["refused"]
    return refused


def test_a_hard_linked_queue_is_refused_and_left_untouched(tmp_path: Path) -> None:
    first = tmp_path / "queue.db"
    with TaskQueue(str(first)) as q:
        for i in range(5):
            q.enqueue(f"t{i}", "t")
    second = tmp_path / "alias.db"
    os.link(first, second)
    before = digest(first)

    with pytest.raises(UnsafeDatabaseFileError, match=r"hard links.*two WALs") as info:
        TaskQueue(str(second))
    assert isinstance(info.value, StorageError)
    # Either name: the link count belongs to the file.
    with pytest.raises(UnsafeDatabaseFileError):
        TaskQueue(str(first))
    refused = open_elsewhere(second)
    assert refused is not None and "2 names" in refused

    assert digest(first) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.db", "queue.db"]
    second.unlink()
    with TaskQueue(str(first)) as q:  # one name again: fine
        assert q.get_queue_stats()["pending"] == 5


def test_a_link_made_while_a_queue_is_open_stops_a_second_opener(tmp_path: Path) -> None:
    first = tmp_path / "queue.db"
    with TaskQueue(str(first)) as q:
        q.enqueue("before", "t")
        second = tmp_path / "alias.db"
        os.link(first, second)
        assert open_elsewhere(second) is not None
        # The queue already open keeps working through its one name.
        q.enqueue("after", "t")
        assert q.get_queue_stats()["pending"] == 2


def test_deleting_the_file_under_an_open_queue_fails_the_next_enqueue(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    with TaskQueue(str(path)) as q:
        q.enqueue("kept", "t")
        for name in ("queue.db", "queue.db-wal", "queue.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        with pytest.raises(DatabaseReplacedError, match=r"was deleted.*nothing was written"):
            q.enqueue("lost before the fix", "t")
        with pytest.raises(DatabaseReplacedError):
            q.enqueue_many([{"name": "a", "task_type": "t"}, {"name": "b", "task_type": "t"}])
        # Reads too: they would show a file no one else can see any more.
        with pytest.raises(DatabaseReplacedError):
            q.get_queue_stats()


def test_a_file_renamed_over_an_open_queue_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    other = tmp_path / "other.db"
    with TaskQueue(str(other)) as q2:
        q2.enqueue("the other queue's", "t")
    with TaskQueue(str(path)) as q:
        q.enqueue("in the first file", "t")
        os.replace(other, path)
        with pytest.raises(DatabaseReplacedError, match="replaced by another file"):
            q.enqueue("would vanish", "t")
    # The file now at the path is the other queue, with its one task only.
    assert count_tasks(path) == 1
    with TaskQueue(str(path)) as q:  # reopened: the new file works
        assert q.get_queue_stats()["pending"] == 1
        q.enqueue("now it lands", "t")
    assert count_tasks(path) == 2


def test_a_relative_path_keeps_naming_the_same_file_after_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    with TaskQueue("queue.db") as q:
        q.enqueue("one", "t")
        monkeypatch.chdir(tmp_path / "b")  # "queue.db" here names nothing
        q.enqueue("two", "t")
    assert count_tasks(tmp_path / "a" / "queue.db") == 2
