"""A queue in a directory another user can write (like /tmp).

SQLite adopts a ``-wal`` or ``-shm`` file it finds beside the database,
whoever made it, and fills an empty database file whoever created it. So
another user could plant a ``-wal`` of mode 0666 (and read every payload
written), or create the empty database file beforehand. Found by a hostile
tester: both were adopted silently. The rules are in
``task_queue/storage/sqlite/files.py``.

Root ignores file modes, and the hostile user must be someone else: the
hostile steps run in a forked child that switched to ``nobody`` (as
test_readonly.py does); the victim is this process.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.users import non_root_user, run_as

from task_queue import StorageError, TaskQueue, UnsafeDatabaseFileError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def hostile() -> pwd.struct_passwd:
    user = non_root_user()
    if user is None or user.pw_uid == os.geteuid():
        pytest.skip("needs root and another user (nobody) to play the other user")
    return user


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """World-writable and sticky, like /tmp."""
    path = Path(tempfile.mkdtemp(prefix="tq-shared-"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def plant(user: pwd.struct_passwd, path: Path, mode: int, content: bytes = b"") -> None:
    """As ``user``: create ``path`` with ``mode``."""

    def scenario() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, content)
        finally:
            os.close(fd)

    run_as(user, scenario)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(directory: Path) -> dict[str, tuple[int, int, int]]:
    return {
        p.name: (p.stat().st_uid, stat.S_IMODE(p.stat().st_mode), p.stat().st_size)
        for p in directory.iterdir()
    }


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_planted_sidecar_is_refused_before_the_queue_is_created(
    hostile: pwd.struct_passwd, shared_dir: Path, suffix: str
) -> None:
    db = shared_dir / "queue.db"
    plant(hostile, Path(f"{db}{suffix}"), 0o666)
    before = listing(shared_dir)
    with pytest.raises(UnsafeDatabaseFileError, match=f"uid {hostile.pw_uid}") as info:
        TaskQueue(str(db))
    assert isinstance(info.value, StorageError)
    assert "nothing was written" in str(info.value)
    assert listing(shared_dir) == before  # no database file created, the plant untouched


def test_an_empty_database_file_made_by_someone_else_is_refused(
    hostile: pwd.struct_passwd, shared_dir: Path
) -> None:
    db = shared_dir / "queue.db"
    plant(hostile, db, 0o666)
    with pytest.raises(UnsafeDatabaseFileError, match="not to you"):
        TaskQueue(str(db))
    assert db.stat().st_size == 0
    assert sorted(p.name for p in shared_dir.iterdir()) == ["queue.db"]


def test_an_empty_sqlite_database_made_by_someone_else_is_refused(
    hostile: pwd.struct_passwd, shared_dir: Path
) -> None:
    """Not empty bytes but an empty SQLite database (a header, no tables)."""
    db = shared_dir / "queue.db"

    def make() -> None:
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA user_version = 1")
        conn.close()
        db.chmod(0o666)

    run_as(hostile, make)
    before = digest(db)
    with pytest.raises(UnsafeDatabaseFileError, match="not to you"):
        TaskQueue(str(db))
    assert digest(db) == before


def test_a_wal_planted_beside_an_existing_queue_is_refused(
    hostile: pwd.struct_passwd, shared_dir: Path
) -> None:
    db = shared_dir / "queue.db"
    with TaskQueue(str(db)) as q:
        q.enqueue("secret", "t", {"card": "4111 1111 1111 1111"})
    before = digest(db)
    plant(hostile, Path(f"{db}-wal"), 0o666)
    with pytest.raises(UnsafeDatabaseFileError, match="-wal"):
        TaskQueue(str(db))
    assert digest(db) == before
    assert Path(f"{db}-wal").stat().st_size == 0  # nothing went to the plant


def test_our_own_too_open_files_are_tightened(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    db.touch()
    db.chmod(0o666)
    wal = Path(f"{db}-wal")
    wal.touch()
    wal.chmod(0o644)
    with TaskQueue(str(db)) as q:
        q.enqueue("a", "t")
        for path in (db, wal, Path(f"{db}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_symlinked_sidecar_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    Path(f"{db}-wal").symlink_to(target)
    with pytest.raises(UnsafeDatabaseFileError, match="not a regular file"):
        TaskQueue(str(db))
    assert target.read_bytes() == b""


def _open_as(user: pwd.struct_passwd, db: Path, body: Callable[[TaskQueue], None]) -> None:
    def scenario() -> None:
        with TaskQueue(str(db)) as q:
            body(q)

    run_as(user, scenario)


def test_a_queue_shared_on_purpose_works_for_both_users(
    hostile: pwd.struct_passwd, shared_dir: Path
) -> None:
    """The documented way to share: create the queue, then open it to others."""
    db = shared_dir / "queue.db"
    with TaskQueue(str(db)) as q:
        q.enqueue("from the creator", "t")
    db.chmod(0o666)
    with TaskQueue(str(db)) as q:
        # While the creator has it open, the other user opens it too (its
        # -wal and -shm, created by the creator, are 0666 like the file).
        _open_as(hostile, db, lambda other: other.enqueue("from the other user", "t"))
        assert q.get_queue_stats()["pending"] == 2

    # And the other way round: the other user's -wal, left by a crash (its
    # connection never closed), is accepted beside a file open to everyone.
    def crash_with_wal_open() -> None:
        q = TaskQueue(str(db))
        q.enqueue("left in the WAL", "t")
        os._exit(0)  # no close: the -wal stays, owned by this user

    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(hostile.pw_gid)
            os.setuid(hostile.pw_uid)
            crash_with_wal_open()
        finally:
            os._exit(1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert Path(f"{db}-wal").stat().st_uid == hostile.pw_uid
    with TaskQueue(str(db)) as q:
        assert q.get_queue_stats()["pending"] == 3
