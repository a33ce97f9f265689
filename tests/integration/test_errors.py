"""One exception root and typed errors, each from the public call, nothing half-written.

Disk full, foreign files and read-only databases have their own modules in
tests/processes/; this one pins the tree and the errors any caller meets first:
busy beyond the retry budget, payload rejected, task not found, closed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import task_queue
from task_queue import (
    DatabaseBusyError,
    DatabaseOpenError,
    DiskFullError,
    DuplicateTaskError,
    NotAQueueDatabaseError,
    PayloadError,
    QueueClosedError,
    ReadOnlyDatabaseError,
    StorageError,
    TaskNotClaimedError,
    TaskNotFoundError,
    TaskQueue,
    TaskQueueError,
    TaskTimeout,
)
from task_queue.storage.sqlite import SqliteStorage
from task_queue.storage.sqlite.errors import translate

TYPED = [
    DatabaseBusyError,
    DatabaseOpenError,
    DiskFullError,
    DuplicateTaskError,
    NotAQueueDatabaseError,
    PayloadError,
    QueueClosedError,
    ReadOnlyDatabaseError,
    StorageError,
    TaskNotClaimedError,
    TaskNotFoundError,
    TaskTimeout,
]

pytestmark = pytest.mark.sqlite_only(
    "busy, locked and closed files of the SQLite engine, provoked through sqlite3"
)


def snapshot(db_path: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every task row and the sequence: "nothing half-written" means this is unchanged."""
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()
        seq = conn.execute("SELECT * FROM sqlite_sequence").fetchall()
        return rows, seq
    finally:
        conn.close()


# -- the tree ---------------------------------------------------------------------------------


@pytest.mark.parametrize("error", TYPED, ids=lambda e: e.__name__)
def test_every_typed_error_has_one_root_and_is_exported(error: type[Exception]) -> None:
    assert issubclass(error, TaskQueueError)
    assert error.__name__ in task_queue.__all__
    assert getattr(task_queue, error.__name__) is error


@pytest.mark.parametrize(
    "error",
    [
        DatabaseBusyError,
        DiskFullError,
        ReadOnlyDatabaseError,
        NotAQueueDatabaseError,
        DatabaseOpenError,
        QueueClosedError,
    ],
    ids=lambda e: e.__name__,
)
def test_storage_errors_share_a_base(error: type[Exception]) -> None:
    assert issubclass(error, StorageError)


def test_familiar_builtin_bases_are_kept() -> None:
    assert issubclass(PayloadError, TypeError)
    assert issubclass(TaskNotFoundError, KeyError)
    assert issubclass(TaskNotClaimedError, ValueError)
    # KeyError's str() is the repr of its argument; ours reads as a sentence.
    assert str(TaskNotFoundError("no task with id 7")) == "no task with id 7"


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("database is locked", 5, DatabaseBusyError),
        ("database table is locked", 6, DatabaseBusyError),
        ("database or disk is full", 13, DiskFullError),
        ("attempt to write a readonly database", 8, ReadOnlyDatabaseError),
        ("file is not a database", 26, NotAQueueDatabaseError),
        ("database disk image is malformed", 11, NotAQueueDatabaseError),
        ("unable to open database file", 14, DatabaseOpenError),
        ("disk I/O error", 10, StorageError),
    ],
)
def test_sqlite_errors_translate_by_code_and_by_message(
    message: str, code: int, expected: type[Exception]
) -> None:
    by_message = translate(sqlite3.OperationalError(message))
    assert type(by_message) is expected
    with_code = sqlite3.OperationalError("something else entirely")
    with_code.sqlite_errorcode = code | 0x100  # type: ignore[attr-defined]  # an extended code
    assert type(translate(with_code)) is expected
    assert isinstance(by_message.__cause__, sqlite3.OperationalError)


# -- busy beyond the retry budget -------------------------------------------------------------


class Locker:
    """A plain sqlite3 connection holding the write lock, as another process would."""

    def __init__(self, db_path: str) -> None:
        self.conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.close()


@pytest.fixture
def busy_queue(db_path: str) -> Iterator[TaskQueue]:
    q = TaskQueue(db_path, busy_timeout=0.2)
    yield q
    q.close()


WRITES: dict[str, Callable[[TaskQueue, int], object]] = {
    "enqueue": lambda q, _: q.enqueue("new", "t", {"x": 1}),
    "enqueue_many": lambda q, _: q.enqueue_many([{"name": "m", "task_type": "t"}] * 3),
    "dequeue": lambda q, _: q.dequeue(),
    "cancel_task": lambda q, task_id: q.cancel_task(task_id),
    "rescue_expired": lambda q, _: q.rescue_expired(),
    "purge": lambda q, _: q.purge(0),
}


def _expire_a_claim(q: TaskQueue, db_path: str) -> None:
    """A running task whose lease ran out: rescue_expired() has a write to do
    (with nothing to rescue it only reads, and a writer elsewhere is no
    obstacle to that)."""
    q.enqueue("expired", "t")
    claimed = q.claim(1, remember=False)
    with sqlite3.connect(db_path, isolation_level=None) as conn:
        conn.execute("UPDATE tasks SET lease_expires_at = 0 WHERE id = ?", (claimed[0].id,))
    conn.close()


@pytest.mark.parametrize("call", list(WRITES), ids=str)
def test_busy_beyond_the_budget_is_typed_and_writes_nothing(
    busy_queue: TaskQueue, db_path: str, call: str
) -> None:
    task_id = busy_queue.enqueue("existing", "t")
    if call == "rescue_expired":
        _expire_a_claim(busy_queue, db_path)
    before = snapshot(db_path)
    locker = Locker(db_path)
    try:
        with pytest.raises(DatabaseBusyError, match="locked") as info:
            WRITES[call](busy_queue, task_id)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        # Readers are not blocked by a writer in WAL mode.
        assert busy_queue.get_queue_stats()["pending"] == 1
    finally:
        locker.release()
    assert snapshot(db_path) == before
    # The same TaskQueue works as soon as the lock is gone.
    WRITES[call](busy_queue, task_id)


def test_busy_complete_task_keeps_the_claim_for_a_later_try(
    busy_queue: TaskQueue, db_path: str
) -> None:
    busy_queue.enqueue("a", "t")
    task = busy_queue.dequeue()
    assert task is not None
    locker = Locker(db_path)
    try:
        with pytest.raises(DatabaseBusyError):
            busy_queue.complete_task(task.id, "done")
    finally:
        locker.release()
    assert busy_queue.get_task(task.id).status == "running"  # type: ignore[union-attr]
    assert busy_queue.complete_task(task.id, "done")  # the claim was not forgotten
    assert busy_queue.get_task(task.id).result == "done"  # type: ignore[union-attr]


def test_a_lock_released_within_the_budget_is_waited_for(db_path: str) -> None:
    q = TaskQueue(db_path, busy_timeout=30)
    try:
        locker = Locker(db_path)
        attempted = threading.Event()
        result: list[int] = []

        def enqueue() -> None:
            attempted.set()
            result.append(q.enqueue("waits", "t"))

        thread = threading.Thread(target=enqueue)
        thread.start()
        attempted.wait(5)
        locker.release()
        thread.join(30)
        assert not thread.is_alive()
        assert len(result) == 1 and q.get_task(result[0]) is not None
    finally:
        q.close()


def test_opening_while_another_connection_writes_takes_no_write_lock(db_path: str) -> None:
    """Opening a current queue needs no write lock (it used to take one,
    and raised DatabaseBusyError behind a long writer elsewhere)."""
    TaskQueue(db_path).close()
    locker = Locker(db_path)
    try:
        queue = TaskQueue(db_path, busy_timeout=0.2)
        assert queue.get_queue_stats()["pending"] == 0  # reads work meanwhile
        with pytest.raises(DatabaseBusyError):
            queue.enqueue("a", "t")  # writes still wait for the lock, then say so
        queue.close()
    finally:
        locker.release()
    TaskQueue(db_path).close()


def test_opening_a_new_file_while_another_process_converts_it_is_busy_not_foreign(
    db_path: str,
) -> None:
    """Regression: an error reading the schema at open was always reported as
    NotAQueueDatabaseError ("not ours"), even SQLITE_BUSY from another
    connection holding an exclusive lock; and it was not retried."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA user_version = 0")
        conn.execute("BEGIN EXCLUSIVE")  # rollback-journal file: readers are locked out
        with pytest.raises(DatabaseBusyError):
            TaskQueue(db_path, busy_timeout=0.2)
        conn.execute("COMMIT")
    finally:
        conn.close()
    q = TaskQueue(db_path)
    q.enqueue("a", "t")
    q.close()


# -- payload rejected -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        float("nan"),
        {"x": float("inf")},
        {1: "int key"},
        (1, 2),
        {"s": {1, 2}},
        b"bytes",
        "\ud800",
        10**5000,
        object(),
    ],
    ids=["nan", "inf", "int-key", "tuple", "set", "bytes", "surrogate", "huge-int", "object"],
)
def test_bad_payload_is_payload_error_and_writes_nothing(
    queue: TaskQueue, db_path: str, payload: object
) -> None:
    queue.enqueue("before", "t")
    before = snapshot(db_path)
    with pytest.raises(PayloadError):
        queue.enqueue("bad", "t", payload)
    with pytest.raises(PayloadError):
        queue.enqueue_many(
            [
                {"name": "ok", "task_type": "t"},
                {"name": "bad", "task_type": "t", "payload": payload},
            ]
        )
    assert snapshot(db_path) == before


def test_oversized_payload_is_payload_error(db_path: str) -> None:
    q = TaskQueue(db_path, max_payload_bytes=1000)
    try:
        with pytest.raises(PayloadError, match="limit"):
            q.enqueue("big", "t", "x" * 2000)
        assert q.get_queue_stats()["pending"] == 0
    finally:
        q.close()


def test_bad_result_is_payload_error_and_the_claim_is_kept(queue: TaskQueue, db_path: str) -> None:
    queue.enqueue("a", "t")
    task = queue.dequeue()
    assert task is not None
    before = snapshot(db_path)
    with pytest.raises(PayloadError):
        queue.complete_task(task, {"nan": float("nan")})
    assert snapshot(db_path) == before
    assert queue.complete_task(task, {"ok": True})


# -- task not found ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda q: q.cancel_task(999),
        lambda q: q.retry_task(999),
        lambda q: q.complete_task(999),
        lambda q: q.fail_task(999, "x"),
        lambda q: q.release_task(999),
    ],
    ids=["cancel", "retry", "complete", "fail", "release"],
)
def test_unknown_task_is_task_not_found(
    queue: TaskQueue, db_path: str, call: Callable[[TaskQueue], object]
) -> None:
    queue.enqueue("a", "t")
    before = snapshot(db_path)
    with pytest.raises(TaskNotFoundError, match="999"):
        call(queue)
    assert snapshot(db_path) == before
    assert queue.get_task(999) is None  # a lookup, not an operation: None


def test_unknown_task_with_a_token_is_task_not_found(queue: TaskQueue) -> None:
    with pytest.raises(TaskNotFoundError):
        queue.complete_task(999, token=12345)
    with pytest.raises(TaskNotFoundError):
        queue.fail_task(999, "x", token=12345)


# -- closed, and nothing leaks as sqlite3.Error ----------------------------------------------


def test_closed_queue_raises_queue_closed(db_path: str) -> None:
    q = TaskQueue(db_path)
    q.close()
    for call in (lambda: q.enqueue("a", "t"), q.dequeue, q.get_queue_stats):
        with pytest.raises(QueueClosedError):
            call()


def test_set_max_size_validates(db_path: str) -> None:
    with pytest.raises(ValueError, match="max_size_bytes"):
        SqliteStorage(db_path, max_size_bytes=-1)
    storage = SqliteStorage(db_path)
    try:
        with pytest.raises(ValueError, match="max_size_bytes"):
            storage.set_max_size(True)
    finally:
        storage.close()


def test_a_shm_file_that_cannot_grow_is_disk_full() -> None:
    """SQLITE_IOERR_SHMSIZE: on a full file system the -shm file cannot be
    created or grown; SQLite says "disk I/O error" (regression: that was a
    plain StorageError). Other I/O errors stay StorageError."""
    shm = sqlite3.OperationalError("disk I/O error")
    shm.sqlite_errorcode = 4874  # type: ignore[attr-defined]
    assert type(translate(shm)) is DiskFullError
    read = sqlite3.OperationalError("disk I/O error")
    read.sqlite_errorcode = 266  # type: ignore[attr-defined]  # SQLITE_IOERR_READ
    assert type(translate(read)) is StorageError
