"""The SQLite backend: each domain operation as a unit run by the Engine."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from ...errors import DuplicateTaskError, QueueClosedError, TaskNotFoundError
from ...owner import host_id, pid_alive
from ...payload import decode
from ...task import Task, TaskPriority, TaskStatus
from ..base import Claim, Failure, NewTask
from .engine import Engine
from .schema import open_database, prepare_file
from .sql import QUERIES

Q = QUERIES


# Dict lookups: calling the Enum classes costs several times more, on the
# claim path, once per task.
_PRIORITY = {p.value: p for p in TaskPriority}
_STATUS = {s.value: s for s in TaskStatus}


def task_from_row(row: Sequence[Any]) -> Task:
    """The one place a row becomes a Task (column order: TASK_COLUMNS)."""
    (id_, name, task_type, payload, priority, status, worker_id, created_at, scheduled_at,
     started_at, completed_at, max_retries, retry_count, error_message, result, attempts,
     run_at, lease_expires_at, claim_token, timeout, unique_key, error_traceback, owner_host,
     owner_pid) = row  # fmt: skip
    return Task(
        id=id_, name=name, task_type=task_type, payload=decode(payload),
        priority=_PRIORITY[priority], status=_STATUS[status], worker_id=worker_id,
        created_at=created_at, scheduled_at=scheduled_at, started_at=started_at,
        completed_at=completed_at, max_retries=max_retries, retry_count=retry_count,
        error_message=error_message, result=decode(result), attempts=attempts,
        run_at=run_at, lease_expires_at=lease_expires_at, claim_token=claim_token,
        timeout=timeout, unique_key=unique_key, error_traceback=error_traceback,
        owner_host=owner_host, owner_pid=owner_pid,
    )  # fmt: skip


# -- units: each runs in the engine thread inside the batch's transaction ------


def _enqueue(conn: sqlite3.Connection, tasks: Sequence[NewTask], now: float) -> list[int]:
    if len(tasks) > 1 and all(t.unique_key is None and "\x00" not in t.name for t in tasks):
        return _enqueue_bulk(conn, tasks, now)
    ids: list[int] = []
    for t in tasks:
        params = {
            "name": t.name, "task_type": t.task_type, "payload": t.payload,
            "priority": t.priority, "now": now, "scheduled_at": t.scheduled_at,
            "max_retries": t.max_retries, "run_at": t.run_at, "timeout": t.timeout,
            "unique_key": t.unique_key,
        }  # fmt: skip
        row = conn.execute(Q["insert_task"], params).fetchone()
        if row is None:
            # A live task holds this unique_key (in this batch or before).
            row = conn.execute(Q["find_live_unique"], {"unique_key": t.unique_key}).fetchone()
            if row is None:  # pragma: no cover - the index and query disagree
                raise RuntimeError("insert conflicted but no live task holds the key")
        ids.append(int(row[0]))
    return ids


def _bulk_row(t: NewTask) -> list[Any]:
    return [t.name, t.task_type, t.payload, t.priority, t.scheduled_at, t.max_retries, t.run_at,
            t.timeout]  # fmt: skip


def _enqueue_bulk(conn: sqlite3.Connection, tasks: Sequence[NewTask], now: float) -> list[int]:
    # SQLite's JSON functions end text at a NUL, hence no NUL in names here
    # (task types cannot hold one; JSON payload text escapes it).
    rows = json.dumps([_bulk_row(t) for t in tasks], ensure_ascii=False, allow_nan=False)
    ids = sorted(int(r[0]) for r in conn.execute(Q["insert_tasks"], {"tasks": rows, "now": now}))
    if len(ids) != len(tasks):  # pragma: no cover - every row inserts or the statement fails
        raise RuntimeError(f"bulk insert returned {len(ids)} ids for {len(tasks)} tasks")
    # AUTOINCREMENT hands out increasing ids in insertion order (ORDER BY key).
    return ids


def _claim(conn: sqlite3.Connection, params: dict[str, Any], rescue: bool) -> list[Any]:
    # Raw rows: the caller's thread turns them into Tasks, so the engine
    # thread (the one every caller waits for) is free sooner.
    if rescue:
        _rescue(conn, params["now"], True)
    query = Q["claim_any"] if params.get("types") is None else Q["claim_types"]
    return conn.execute(query, params).fetchall()


def _claimed_tasks(rows: list[Any]) -> list[Task]:
    tasks = [task_from_row(r) for r in rows]
    # RETURNING order is unspecified; hand tasks out in claim order.
    tasks.sort(key=lambda t: (-t.priority, t.run_at, t.id))
    return tasks


def _complete_and_claim(
    conn: sqlite3.Connection,
    items: Sequence[tuple[Claim, str | None]],
    now: float,
    params: dict[str, Any],
    rescue: bool,
) -> tuple[set[int], list[Any]]:
    recorded = _complete_many(conn, items, now) if items else set()
    return recorded, _claim(conn, params, rescue)


def _fenced(conn: sqlite3.Connection, task_id: int) -> bool:
    """After a fenced update matched nothing: False, or raise if no such task."""
    if conn.execute(Q["task_status"], {"id": task_id}).fetchone() is None:
        raise TaskNotFoundError(f"no task with id {task_id}")
    return False


def _complete(conn: sqlite3.Connection, claim: Claim, result: str | None, now: float) -> bool:
    params = {"id": claim[0], "token": claim[1], "result": result, "now": now}
    if conn.execute(Q["complete_task"], params).fetchone() is not None:
        return True
    return _fenced(conn, claim[0])


def _complete_many(
    conn: sqlite3.Connection, items: Sequence[tuple[Claim, str | None]], now: float
) -> set[int]:
    # The result JSON text travels as a JSON string, so json_extract hands
    # back exactly that text.
    payload = json.dumps([[claim[0], claim[1], result] for claim, result in items])
    rows = conn.execute(Q["complete_many"], {"items": payload, "now": now}).fetchall()
    return {int(r[0]) for r in rows}


def _fail(conn: sqlite3.Connection, claim: Claim, failure: Failure, now: float) -> bool:
    held = {"id": claim[0], "token": claim[1]}
    row = conn.execute(Q["held_retry_state"], held).fetchone()
    if row is None:
        return _fenced(conn, claim[0])
    retry_count, max_retries = row
    if failure.max_retries is not None:
        max_retries = failure.max_retries
    params = {**held, "now": now, "error": failure.error, "traceback": failure.traceback}
    if retry_count < max_retries:
        params["run_at"] = now + max(0.0, failure.backoff(retry_count))
        conn.execute(Q["fail_retry"], params)
    else:
        conn.execute(Q["fail_final"], params)
    return True


def _release(conn: sqlite3.Connection, claims: Sequence[Claim]) -> list[int]:
    released = []
    for task_id, token in claims:
        if conn.execute(Q["release_task"], {"id": task_id, "token": token}).fetchone():
            released.append(task_id)
    return released


def _renew(conn: sqlite3.Connection, claims: Sequence[Claim], expires: float) -> set[int]:
    params = {"claims": json.dumps([list(c) for c in claims]), "lease_expires_at": expires}
    return {int(r[0]) for r in conn.execute(Q["renew_leases"], params).fetchall()}


def _rescue(conn: sqlite3.Connection, now: float, dead_owners: bool) -> int:
    if dead_owners:
        host, me = host_id(), os.getpid()
        rows = conn.execute(Q["local_owners"], {"owner_host": host}).fetchall()
        for (pid,) in rows:
            if pid != me and not pid_alive(pid):
                params = {"owner_host": host, "owner_pid": pid, "expired": now - 1.0}
                conn.execute(Q["expire_owner"], params)
    return len(conn.execute(Q["rescue_expired"], {"now": now}).fetchall())


def _one_returning(conn: sqlite3.Connection, name: str, params: dict[str, Any]) -> bool:
    return conn.execute(Q[name], params).fetchone() is not None


def _retry(conn: sqlite3.Connection, task_id: int, now: float) -> bool:
    try:
        done = _one_returning(conn, "retry_task", {"id": task_id, "now": now})
    except sqlite3.IntegrityError as exc:
        raise DuplicateTaskError(
            f"task {task_id} cannot be retried: another live task holds its unique_key"
        ) from exc
    if not done and conn.execute(Q["task_status"], {"id": task_id}).fetchone() is None:
        raise TaskNotFoundError(f"no task with id {task_id}")
    return done


def _cancel(conn: sqlite3.Connection, task_id: int, now: float) -> bool:
    if _one_returning(conn, "cancel_task", {"id": task_id, "now": now}):
        return True
    return _fenced(conn, task_id)


def _get(conn: sqlite3.Connection, task_id: int) -> Task | None:
    row = conn.execute(Q["get_task"], {"id": task_id}).fetchone()
    return None if row is None else task_from_row(row)


_LIST_QUERY = {"pending": "pending_newest", "running": "running_newest"}


def _list(conn: sqlite3.Connection, status: str, limit: int) -> list[Task]:
    query = Q[_LIST_QUERY.get(status, "finished_recent")]
    rows = conn.execute(query, {"status": status, "limit": limit}).fetchall()
    return [task_from_row(r) for r in rows]


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {status: int(n) for status, n in conn.execute(Q["counts"]).fetchall()}


def _scalar(conn: sqlite3.Connection, name: str, params: dict[str, Any]) -> Any:
    row = conn.execute(Q[name], params).fetchone()
    return None if row is None else row[0]


def _due_by_type(conn: sqlite3.Connection, now: float) -> dict[str, int]:
    return {t: int(n) for t, n in conn.execute(Q["due_by_type"], {"now": now}).fetchall()}


def _purge(conn: sqlite3.Connection, status: str, before: float, limit: int) -> int:
    params = {"status": status, "before": before, "limit": limit}
    return conn.execute(Q["purge_finished"], params).rowcount


def _check_max_size(max_bytes: int | None) -> int | None:
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0
    ):
        raise ValueError(f"max_size_bytes must be an int >= 0 or None, got {max_bytes!r}")
    return max_bytes


def _apply_max_size(conn: sqlite3.Connection, max_bytes: int | None, unlimited: int) -> int:
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = unlimited if max_bytes is None else max(1, max_bytes // page_size)
    # SQLite raises a cap below the current page count to that count.
    return int(conn.execute(f"PRAGMA max_page_count = {int(pages)}").fetchone()[0]) * page_size


class SqliteStorage:
    """Implements :class:`~task_queue.storage.base.Storage` on one SQLite file."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_budget: float = 30.0,
        max_batch: int = 500,
        max_size_bytes: int | None = None,
    ) -> None:
        """``max_size_bytes`` caps the database file (see :meth:`set_max_size`)."""
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be 'FULL', 'NORMAL' or 'EXTRA'")
        self._max_size = _check_max_size(max_size_bytes)
        self._unlimited_pages = 0
        self.path = os.fspath(path)
        self._synchronous = synchronous.upper()
        self._busy_budget = busy_budget
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._closed = False
        self._engine_obj = self._open()
        self._pid = os.getpid()

    def _open(self) -> Engine:
        prepare_file(self.path)
        return Engine(
            self.path,
            max_count=self._max_batch,
            on_open=self._on_open,
            busy_budget=self._busy_budget,
        )

    def _on_open(self, conn: sqlite3.Connection) -> None:
        open_database(conn, synchronous=self._synchronous)
        self._unlimited_pages = int(conn.execute("PRAGMA max_page_count").fetchone()[0])
        if self._max_size is not None:
            _apply_max_size(conn, self._max_size, self._unlimited_pages)

    def set_max_size(self, max_bytes: int | None) -> int:
        """Cap the database file at ``max_bytes``; ``None`` lifts the cap.

        Writes that would grow the file past the cap fail with DiskFullError
        and are rolled back, as on a full disk; writes that fit in pages
        already allocated still succeed. The cap is rounded down to whole
        pages and is never below the file's current size (so 0 means "no
        growth from here"); the WAL file is not counted. It holds for this
        object's connection only (``PRAGMA max_page_count``). Returns the
        cap now in force, in bytes. Also how the test suite rehearses a
        full disk.
        """
        self._max_size = _check_max_size(max_bytes)
        size: int = self._engine.call(
            _apply_max_size, self._max_size, self._unlimited_pages, readonly=True, savepoint=False
        )
        return size

    @property
    def _engine(self) -> Engine:
        if self._pid != os.getpid():
            # We are a child after fork(): the parent's connection and its
            # thread are not ours to touch (a copied SQLite connection
            # corrupts databases). Open our own. The lock may have been
            # copied held, so replace it rather than take it. Mark ourselves
            # the owner only once open succeeded: after a failed open the
            # next call must try again, never fall back to the parent's.
            # A queue closed before fork() stays closed (and opens nothing).
            if self._closed:
                raise QueueClosedError("the TaskQueue is closed")
            self._lock = threading.Lock()
            self._engine_obj = self._open()
            self._pid = os.getpid()
        if self._closed:
            raise QueueClosedError("the TaskQueue is closed")
        return self._engine_obj

    # -- writes --
    def enqueue(self, tasks: Sequence[NewTask], now: float) -> list[int]:
        # One task is one INSERT (and maybe a read): SQLite rolls a failing
        # statement back by itself, so only batches need a savepoint for
        # all-or-nothing.
        ids: list[int] = self._engine.call(_enqueue, tasks, now, savepoint=len(tasks) > 1)
        return ids

    def complete_and_claim(
        self,
        completions: Sequence[tuple[Claim, str | None]],
        now: float,
        *,
        worker_id: str,
        limit: int,
        task_types: Sequence[str] | None,
        lease_expires_at: float,
        token: int,
        rescue: bool,
    ) -> tuple[set[int], list[Task]]:
        params = {
            "worker_id": worker_id, "now": now, "lease_expires_at": lease_expires_at,
            "token": token, "limit": limit,
            "types": None if task_types is None else json.dumps(list(task_types)),
            "owner_host": host_id(), "owner_pid": os.getpid(),
        }  # fmt: skip
        # A plain claim is one statement; only completions or a rescue make
        # the unit several statements that must stand or fall together.
        recorded, rows = self._engine.call(
            _complete_and_claim, list(completions), now, params, rescue,
            savepoint=bool(completions) or rescue,
        )  # fmt: skip
        return recorded, _claimed_tasks(rows)

    def complete(self, claim: Claim, result: str | None, now: float) -> bool:
        return bool(self._engine.call(_complete, claim, result, now, savepoint=False))

    def complete_many(self, items: Sequence[tuple[Claim, str | None]], now: float) -> set[int]:
        if not items:
            return set()
        done: set[int] = self._engine.call(_complete_many, list(items), now, savepoint=False)
        return done

    def fail(self, claim: Claim, failure: Failure, now: float) -> bool:
        return bool(self._engine.call(_fail, claim, failure, now, savepoint=False))

    def release(self, claims: Sequence[Claim]) -> list[int]:
        if not claims:
            return []
        released: list[int] = self._engine.call(_release, list(claims))
        return released

    def renew(self, claims: Sequence[Claim], lease_expires_at: float) -> set[int]:
        if not claims:
            return set()
        renewed: set[int] = self._engine.call(
            _renew, list(claims), lease_expires_at, savepoint=False
        )
        return renewed

    def rescue(self, now: float, *, dead_owners: bool = True) -> int:
        return int(self._engine.call(_rescue, now, dead_owners))

    def cancel(self, task_id: int, now: float) -> bool:
        return bool(self._engine.call(_cancel, task_id, now, savepoint=False))

    def retry(self, task_id: int, now: float) -> bool:
        return bool(self._engine.call(_retry, task_id, now, savepoint=False))

    def purge(self, statuses: Sequence[str], before: float, chunk: int = 1000) -> int:
        # Chunked, each chunk its own short transaction: a purge of a
        # million rows must not hold the write lock for seconds.
        total = 0
        for status in statuses:
            while True:
                n = int(self._engine.call(_purge, status, before, chunk, savepoint=False))
                total += n
                if n < chunk:
                    break
        return total

    # -- reads --
    def get(self, task_id: int) -> Task | None:
        task: Task | None = self._engine.call(_get, task_id, readonly=True, savepoint=False)
        return task

    def list_by_status(self, status: str, limit: int) -> list[Task]:
        tasks: list[Task] = self._engine.call(_list, status, limit, readonly=True, savepoint=False)
        return tasks

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self._engine.call(_counts, readonly=True, savepoint=False)
        return counts

    def next_due(self, now: float) -> float | None:
        value = self._engine.call(_scalar, "next_due", {"now": now}, readonly=True, savepoint=False)
        return None if value is None else float(value)

    def due_by_type(self, now: float) -> dict[str, int]:
        due: dict[str, int] = self._engine.call(_due_by_type, now, readonly=True, savepoint=False)
        return due

    def data_version(self) -> int:
        return int(self._engine.call(_scalar, "data_version", {}, readonly=True, savepoint=False))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._pid == os.getpid():
            self._engine_obj.close()
