"""A read-only database: typed errors, reads still work, workers refuse to start.

Root ignores file modes, so the scenario runs as a non-root user: when the
tests run as root, a forked child switches to the ``nobody`` user (os.setuid)
before touching the files; otherwise the child keeps the current user.
Everything the child needs is imported before the fork (after setuid it may
not be able to read the interpreter's own directories).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.users import non_root_user, run_as

from task_queue import (
    DatabaseOpenError,
    ReadOnlyDatabaseError,
    StorageError,
    TaskQueue,
    TaskStatus,
    Worker,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def user_dir() -> Iterator[tuple[pwd.struct_passwd, Path]]:
    """A directory the non-root user owns (tmp_path is root's, mode 0700)."""
    user = non_root_user()
    if user is None:
        pytest.skip("running as root and no unprivileged user (nobody) to switch to")
    path = Path(tempfile.mkdtemp(prefix="tq-readonly-"))
    os.chown(path, user.pw_uid, user.pw_gid)
    try:
        yield user, path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_queue(db: Path, n: int = 3) -> None:
    with TaskQueue(str(db)) as q:
        for i in range(n):
            q.enqueue(f"t{i}", "t", {"i": i})
    # Closing the last connection checkpointed and removed the WAL.
    assert not Path(f"{db}-wal").exists()


def test_read_only_file_reads_work_writes_are_typed_and_workers_refuse(
    user_dir: tuple[pwd.struct_passwd, Path],
) -> None:
    user, directory = user_dir
    db = directory / "queue.db"

    def scenario() -> None:
        _make_queue(db)
        db.chmod(0o400)
        digest = _digest(db)
        # Writing really is impossible for this user (root would succeed).
        probe = sqlite3.connect(db)
        try:
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                probe.execute("DELETE FROM tasks")
        finally:
            probe.close()

        q = TaskQueue(str(db))
        try:
            # Reading is fine: monitoring a read-only copy works.
            assert q.get_queue_stats()["pending"] == 3
            first = q.get_task(1)
            assert first is not None and first.payload == {"i": 0}
            assert [t.id for t in q.get_tasks_by_status(TaskStatus.PENDING)] == [3, 2, 1]

            writes: dict[str, Callable[[], object]] = {
                "enqueue": lambda: q.enqueue("new", "t"),
                "enqueue_many": lambda: q.enqueue_many([{"name": "n", "task_type": "t"}]),
                "dequeue": q.dequeue,
                "cancel_task": lambda: q.cancel_task(1),
                "purge": lambda: q.purge(0),
                "check_writable": q.check_writable,
            }
            for name, call in writes.items():
                with pytest.raises(ReadOnlyDatabaseError, match="cannot be written"):
                    call()
                assert q.get_queue_stats()["pending"] == 3, name
            # With nothing to rescue, rescue_expired() only reads.
            assert q.rescue_expired() == 0

            ran: list[object] = []
            before = {t.name for t in threading.enumerate()}
            worker = Worker(q, {"t": ran.append}, concurrency=2, name="ro-worker")
            with pytest.raises(ReadOnlyDatabaseError):
                worker.start()
            # Refused, not looping: no thread of it runs, nothing was claimed.
            started = {t.name for t in threading.enumerate()} - before
            assert not any(n.startswith("ro-worker") for n in started), started
            assert not ran
            worker.stop()  # harmless on a worker that never started
        finally:
            q.close()
        assert _digest(db) == digest

    run_as(user, scenario)


def test_read_only_directory_and_file_refuse_at_open(
    user_dir: tuple[pwd.struct_passwd, Path],
) -> None:
    """WAL needs a -shm file beside the database; when it cannot be created
    the queue cannot even be read: a typed error at open, nothing changed."""
    user, directory = user_dir
    db = directory / "queue.db"

    def scenario() -> None:
        _make_queue(db)
        db.chmod(0o400)
        directory.chmod(0o500)
        try:
            digest = _digest(db)
            with pytest.raises(ReadOnlyDatabaseError):
                TaskQueue(str(db))
            assert _digest(db) == digest
            assert sorted(p.name for p in directory.iterdir()) == ["queue.db"]
        finally:
            directory.chmod(0o700)

    run_as(user, scenario)


def test_new_queue_in_a_read_only_directory_is_a_typed_error(
    user_dir: tuple[pwd.struct_passwd, Path],
) -> None:
    user, directory = user_dir

    def scenario() -> None:
        directory.chmod(0o500)
        try:
            with pytest.raises(StorageError) as info:
                TaskQueue(str(directory / "queue.db"))
            assert isinstance(info.value, (DatabaseOpenError, ReadOnlyDatabaseError))
            assert list(directory.iterdir()) == []
        finally:
            directory.chmod(0o700)

    run_as(user, scenario)
