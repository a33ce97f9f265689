"""The SQLite backend: each storage operation as a unit run by the Engine.

A unit is a function ``fn(conn, ...)`` that the engine thread runs inside
the batch's transaction (group commit); its caller is answered once that
transaction committed. Units only run named statements from queries.sql.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from ...checks import is_non_negative
from ...errors import DuplicateTaskError, QueueClosedError, TaskNotFoundError
from ...limits import Limits, within_concurrency
from ...task import AttemptRecord, Claim, ScheduleInfo, SearchedTasks, Task, WorkerInfo
from ..base import (
    FINISHED,
    ChangeFeed,
    ClaimRequest,
    Completion,
    FailureRecord,
    Listing,
    NewTask,
    Outcome,
    Owner,
    Position,
    Rescue,
    ScheduleRow,
    TaskFilter,
    list_in_pages,
    submit_in_thread,
)
from ..rows import claimed_tasks, dependency_state, insert_params, task_from_row
from ..scan import NO_FLOOR, bounded_listing, is_bounded
from .engine import Engine, Request
from .outbox import check_connection, run_in_transaction
from .schema import open_database, prepare_file
from .sql import QUERIES

Q = QUERIES

SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")


# -- units: each runs in the engine thread inside the batch's transaction ------


def _enqueue(
    conn: sqlite3.Connection, tasks: Sequence[NewTask], now: float
) -> list[tuple[int, bool]]:
    if len(tasks) > 1 and all(_plain(t) for t in tasks):
        return [(task_id, True) for task_id in _enqueue_bulk(conn, tasks, now)]
    ids: list[tuple[int, bool]] = []
    for index, t in enumerate(tasks):
        parents = list(dict.fromkeys([*t.depends_on, *(ids[i][0] for i in t.depends_on_batch)]))
        params = insert_params(t, now)
        if parents:
            # Under the write lock, so no parent finishes in between.
            found = dict(conn.execute(Q["dependency_states"], {"ids": json.dumps(parents)}))
            params.update(dependency_state(found, parents, now, index))
        row = conn.execute(Q["insert_task"], params).fetchone()
        if row is not None:
            task_id = int(row[0])
            if parents:
                deps = {"task_id": task_id, "ids": json.dumps(parents)}
                conn.execute(Q["insert_dependencies"], deps)
                conn.execute(Q["mark_depended_on"], deps)
            ids.append((task_id, True))
            continue
        # A live task holds this unique_key (in this batch or before).
        row = conn.execute(Q["find_live_unique"], {"unique_key": t.unique_key}).fetchone()
        if row is None:  # pragma: no cover - the index and query disagree
            raise RuntimeError("insert conflicted but no live task holds the key")
        ids.append((int(row[0]), False))
    return ids


def _plain(t: NewTask) -> bool:
    """Goes in the one-statement insert: no unique key or dependencies, and
    no NUL in its name (SQLite's JSON functions end text at a NUL; task
    types cannot hold one, and JSON payload text escapes it)."""
    no_deps = not t.depends_on and not t.depends_on_batch
    no_nul = "\x00" not in t.name and "\x00" not in (t.concurrency_key or "")
    return t.unique_key is None and no_deps and no_nul


def _bulk_row(t: NewTask) -> list[Any]:
    return [t.name, t.task_type, t.payload, t.priority, t.scheduled_at, t.max_retries, t.run_at,
            t.timeout, t.queue_name, t.meta, t.concurrency_key]  # fmt: skip


def _enqueue_bulk(conn: sqlite3.Connection, tasks: Sequence[NewTask], now: float) -> list[int]:
    rows = json.dumps([_bulk_row(t) for t in tasks], ensure_ascii=False, allow_nan=False)
    ids = sorted(int(r[0]) for r in conn.execute(Q["insert_tasks"], {"tasks": rows, "now": now}))
    if len(ids) != len(tasks):  # pragma: no cover - every row inserts or the statement fails
        raise RuntimeError(f"bulk insert returned {len(ids)} ids for {len(tasks)} tasks")
    # AUTOINCREMENT hands out increasing ids in insertion order (ORDER BY key).
    return ids


def _enqueue_merged(
    conn: sqlite3.Connection, units: list[tuple[Any, ...]]
) -> list[list[tuple[int, bool]]]:
    """Several callers' single plain tasks (each unit's args: ``([task],
    now)``) in one statement; each caller's answer, in order."""
    rows = [[*_bulk_row(tasks[0]), now] for tasks, now in units]
    text = json.dumps(rows, ensure_ascii=False, allow_nan=False)
    ids = sorted(int(r[0]) for r in conn.execute(Q["insert_tasks_stamped"], {"tasks": text}))
    return [[(task_id, True)] for task_id in ids]


def _claim(
    conn: sqlite3.Connection,
    completions: Sequence[Completion],
    now: float,
    params: dict[str, Any],
    limits: Mapping[str, Limits],
) -> tuple[set[Claim], list[Any]]:
    recorded = _complete(conn, completions, now) if completions else set()
    if not limits:
        # The common case: one statement. Raw rows: the caller's thread
        # turns them into Tasks, so the engine thread (the one every caller
        # waits for) is free sooner.
        return recorded, conn.execute(Q["claim"], params).fetchall()
    # Limited types first (their tokens and places are scarce), then the
    # rest fill what is left of the batch.
    rows: list[Any] = []
    limit = params["limit"]
    for task_type, limit_of in limits.items():
        if len(rows) >= limit:
            break
        rows += _claim_limited(conn, task_type, limit_of, limit - len(rows), now, params)
    free = [t for t in json.loads(params["types"]) if t not in limits]
    if free and len(rows) < limit:
        rest = {**params, "types": json.dumps(free), "limit": limit - len(rows)}
        rows += conn.execute(Q["claim"], rest).fetchall()
    return recorded, rows


#: A limited type's claim looks at most this many of its due tasks (those
#: whose concurrency key is full are passed over).
LIMITED_SCAN = 1000


def _claim_limited(
    conn: sqlite3.Connection,
    task_type: str,
    limits: Limits,
    room: int,
    now: float,
    params: dict[str, Any],
) -> list[Any]:
    tokens = math.inf
    if limits.rate is not None:
        bucket = conn.execute(Q["rate_bucket"], {"task_type": task_type}).fetchone()
        if bucket is None:
            tokens = limits.rate.capacity
        else:
            tokens = limits.rate.tokens(bucket[0], bucket[1], now)
        room = min(room, int(tokens))
    if room < 1:
        return []
    scan = {"task_type": task_type, "now": now, "queues": params["queues"]}
    scan["scan"] = room if limits.concurrency is None else LIMITED_SCAN
    candidates = conn.execute(Q["limited_candidates"], scan).fetchall()
    if limits.concurrency is None:
        ids = [task_id for task_id, _ in candidates]
    else:
        running = dict(conn.execute(Q["running_per_key"], {"task_type": task_type}).fetchall())
        ids = within_concurrency(candidates, running, limits.concurrency, room)
    if not ids:
        return []
    rows = conn.execute(Q["claim_ids"], {**params, "ids": json.dumps(ids)}).fetchall()
    if limits.rate is not None:
        left = {"task_type": task_type, "tokens": tokens - len(rows), "now": now}
        conn.execute(Q["set_rate_bucket"], left)
    return rows


def _complete(conn: sqlite3.Connection, items: Sequence[Completion], now: float) -> set[Claim]:
    recorded: set[Claim] = set()
    for chunk in _by_bytes(items):
        # The result JSON text travels as a JSON string, so json_extract
        # hands back exactly that text.
        payload = json.dumps([[c.claim.task_id, c.claim.token, c.result] for c in chunk])
        rows = conn.execute(Q["complete_many"], {"items": payload, "now": now}).fetchall()
        # Plain (id, token) tuples: equal to, and hashed like, the Claims
        # they stand for, without a NamedTuple made per task here.
        recorded.update((task_id, token) for task_id, token, _ in rows)  # type: ignore[misc]
        for task_id, _, has_dependents in rows:
            if has_dependents:
                conn.execute(Q["release_dependents"], {"parent": task_id})
    return recorded


def _cancel_dependents(conn: sqlite3.Connection, parent: int, status: str, now: float) -> None:
    """``parent`` failed for good or was cancelled: cancel what waits for it,
    level by level (no depth limit, one statement per task depended on)."""
    frontier = [(parent, status)]
    while frontier:
        task_id, why = frontier.pop()
        params = {"parent": task_id, "status": why, "now": now}
        for child, has_dependents in conn.execute(Q["cancel_dependents"], params).fetchall():
            if has_dependents:
                frontier.append((int(child), "cancelled"))


#: Result bytes per complete_many statement. Results are up to 8 MiB each
#: (max_payload_bytes): unbounded, a few dozen of them made one statement
#: larger than SQLite takes.
STATEMENT_BYTES = 4 * 1024 * 1024


def _by_bytes(items: Sequence[Completion]) -> list[list[Completion]]:
    chunks: list[list[Completion]] = [[]]
    size = 0
    for item in items:
        n = len(item.result or "")
        if chunks[-1] and size + n > STATEMENT_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += n
    return chunks


def _attempt(
    conn: sqlite3.Connection, task_id: int, token: int | None, now: float, outcome: str,
    error: str | None = None, error_class: str | None = None, traceback: str | None = None,
) -> None:  # fmt: skip
    params = {
        "id": task_id, "token": token, "now": now, "outcome": outcome, "error": error,
        "error_class": error_class, "traceback": traceback,
    }  # fmt: skip
    conn.execute(Q["record_attempt"], params)


def _fail(conn: sqlite3.Connection, claim: Claim, failure: FailureRecord, now: float) -> bool:
    params: dict[str, Any] = {
        "id": claim.task_id, "token": claim.token, "now": now,
        "error": failure.error, "traceback": failure.traceback,
    }  # fmt: skip
    outcome = "failed" if failure.retry_in is None else "retried"
    _attempt(conn, claim.task_id, claim.token, now, outcome, failure.error,
             failure.error_class, failure.traceback)  # fmt: skip
    if failure.retry_in is None:
        row = conn.execute(Q["fail_final"], params).fetchone()
        if row is not None and row[1]:
            _cancel_dependents(conn, claim.task_id, "failed", now)
        return row is not None
    params["run_at"] = now + max(0.0, failure.retry_in)
    return conn.execute(Q["fail_retry"], params).fetchone() is not None


def _release(conn: sqlite3.Connection, claims: Sequence[Claim]) -> list[Claim]:
    released = []
    for claim in claims:
        if conn.execute(Q["release_task"], {"id": claim.task_id, "token": claim.token}).fetchone():
            released.append(claim)
    return released


def _renew(conn: sqlite3.Connection, claims: Sequence[Claim], expires: float) -> set[Claim]:
    params = {"claims": json.dumps([list(c) for c in claims]), "lease_expires_at": expires}
    return {Claim(int(r[0]), int(r[1])) for r in conn.execute(Q["renew_leases"], params).fetchall()}


def _rescue(
    conn: sqlite3.Connection, rescues: Sequence[Rescue], now: float
) -> list[tuple[int, str]]:
    applied = []
    for r in rescues:
        params: dict[str, Any] = {
            "id": r.claim.task_id, "token": r.claim.token, "now": now, "error": r.error,
            "lease_expires_at": r.lease_expires_at,
        }  # fmt: skip
        seen = conn.execute(Q["task_lease"], {"id": r.claim.task_id}).fetchone()
        if seen is None or seen[0] != r.claim.token or seen[1] != r.lease_expires_at:
            continue  # no longer the claim the rescuer found
        _attempt(conn, r.claim.task_id, r.claim.token, now, "lost", r.error)
        if r.retry_in is None:
            row = conn.execute(Q["rescue_final"], params).fetchone()
        else:
            params["run_at"] = now + max(0.0, r.retry_in)
            row = conn.execute(Q["rescue_retry"], params).fetchone()
        if row is not None:
            applied.append((int(row[0]), str(row[1])))
            if row[1] == "failed" and row[2]:
                _cancel_dependents(conn, int(row[0]), "failed", now)
    return applied


def _expired(conn: sqlite3.Connection, now: float, owners: str | None) -> list[Any]:
    rows = conn.execute(Q["expired_claims"], {"now": now}).fetchall()
    if owners is not None:
        seen = {row[0] for row in rows}
        more = conn.execute(Q["dead_owner_claims"], {"owners": owners}).fetchall()
        rows += [row for row in more if row[0] not in seen]
    return rows


def _declare(conn: sqlite3.Connection, rows: Sequence[ScheduleRow], now: float) -> None:
    for row in rows:
        conn.execute(Q["declare_schedule"], {**dataclasses.asdict(row), "now": now})


def _fire(
    conn: sqlite3.Connection,
    name: str,
    slots: Sequence[tuple[float, NewTask]],
    next_fire: float,
    now: float,
) -> list[tuple[float, int]]:
    # Under the write lock: whoever fires a slot first, the others see it.
    last = _scalar(conn, "schedule_last_slot", {"name": name})
    fired: list[tuple[float, int]] = []
    for slot, task in slots:
        if last is not None and slot <= last:
            continue
        if conn.execute(Q["slot_taken"], {"name": name, "slot": slot}).fetchone():
            continue
        [(task_id, _)] = _enqueue(conn, [task], now)
        conn.execute(Q["record_slot"], {"name": name, "slot": slot, "task_id": task_id})
        fired.append((slot, task_id))
    if fired:
        slot, task_id = fired[-1]
        params = {"name": name, "slot": slot, "task_id": task_id, "next_fire": next_fire}
        conn.execute(Q["advance_schedule"], params)
        conn.execute(Q["prune_slots"], {"name": name})
    return fired


#: Workers not seen for this long are forgotten.
FORGET_WORKERS_AFTER = 86_400.0


def _worker_seen(conn: sqlite3.Connection, params: dict[str, Any]) -> None:
    conn.execute(Q["worker_seen"], params)
    conn.execute(Q["forget_workers"], {"before": params["now"] - FORGET_WORKERS_AFTER})


def _rows(conn: sqlite3.Connection, name: str, params: dict[str, Any]) -> list[Any]:
    return conn.execute(Q[name], params).fetchall()


def _one_returning(conn: sqlite3.Connection, name: str, params: dict[str, Any]) -> bool:
    return conn.execute(Q[name], params).fetchone() is not None


def _exists(conn: sqlite3.Connection, task_id: int) -> bool:
    return conn.execute(Q["task_status"], {"id": task_id}).fetchone() is not None


def _retry(conn: sqlite3.Connection, task_id: int, now: float) -> bool:
    try:
        done = _one_returning(conn, "retry_task", {"id": task_id, "now": now})
    except sqlite3.IntegrityError as exc:
        raise DuplicateTaskError(
            f"task {task_id} cannot be retried: another live task holds its unique_key"
        ) from exc
    if not done and not _exists(conn, task_id):
        raise TaskNotFoundError(f"no task with id {task_id}")
    return done


def _cancel(conn: sqlite3.Connection, task_id: int, now: float) -> bool:
    # A running attempt ends here too (its late result will be fenced out).
    conn.execute(Q["record_running_attempt"], {"id": task_id, "now": now, "outcome": "cancelled"})
    row = conn.execute(Q["cancel_task"], {"id": task_id, "now": now}).fetchone()
    if row is not None:
        if row[1]:
            _cancel_dependents(conn, task_id, "cancelled", now)
        return True
    if not _exists(conn, task_id):
        raise TaskNotFoundError(f"no task with id {task_id}")
    return False


#: Up to this many pending (or running) tasks, a listing of that status
#: reads them from their index (see _listing_query): ~8 ms at 20,000 (35 ms
#: with a type filter, which reads each row).
LIVE_INDEX_MAX = 20_000


def _bounded_listing(
    conn: sqlite3.Connection, plan: str, params: dict[str, Any], scan: int
) -> tuple[list[Sequence[Any]], SearchedTasks | None]:
    """A listing that examines at most ``scan`` rows of its walk (see
    storage/scan.py), its statements in one read transaction (one snapshot)."""
    return bounded_listing(lambda name, p: conn.execute(Q[name], p).fetchall(), plan, params, scan)


def _scalar(conn: sqlite3.Connection, name: str, params: dict[str, Any]) -> Any:
    row = conn.execute(Q[name], params).fetchone()
    return None if row is None else row[0]


def _purge(conn: sqlite3.Connection, statuses: str, before: float, limit: int) -> int:
    params = {"statuses": statuses, "before": before, "limit": limit}
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


class _Unit(NamedTuple):
    """One operation as the engine runs it, and what turns its answer into
    the operation's return value (in the caller's thread, not the engine's)."""

    fn: Any
    args: tuple[Any, ...]
    readonly: bool
    savepoint: bool
    finish: Callable[[Any], Any]
    merge: Any = None


def _created(task_id: int) -> list[tuple[int, bool]]:
    """enqueue()'s answer for one new task (as _enqueue gives it)."""
    return [(task_id, True)]


def _same(value: Any) -> Any:
    return value


def _first_task(rows: list[Any]) -> Task | None:
    return task_from_row(rows[0]) if rows else None


def _status_counts(rows: list[Any]) -> dict[str, int]:
    return {status: int(n) for status, n in rows}


def _per_queue(rows: list[Any]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for queue_name, status, n in rows:
        counts.setdefault(queue_name, {})[status] = int(n)
    return counts


def _tasks_in_order(task_ids: Sequence[int]) -> Callable[[list[Any]], list[Task]]:
    def finish(rows: list[Any]) -> list[Task]:
        by_id = {row[0]: row for row in rows}
        return [task_from_row(by_id[i]) for i in dict.fromkeys(task_ids) if i in by_id]

    return finish


def _finished_and_missing(rows: list[Any]) -> tuple[list[Task], list[int]]:
    finished = [task_from_row(row[1:]) for row in rows if row[1] is not None]
    missing = [int(row[0]) for row in rows if row[1] is None]
    return finished, missing


def _read_unit(name: str, params: dict[str, Any], finish: Callable[[Any], Any]) -> _Unit:
    return _Unit(_rows, (name, params), True, False, finish)


def _outcome(request: Request, finish: Callable[[Any], Any]) -> Any:
    if request.error is not None:
        raise request.error
    return finish(request.result)


class _DataVersionFeed:
    """ChangeFeed on ``PRAGMA data_version``: it changes when another
    connection commits (never for this connection's own commits)."""

    def __init__(self, storage: SqliteStorage) -> None:
        self._storage = storage
        self._seen: int | None = None

    def changed(self) -> bool:
        version = self._storage.data_version()
        changed = version != self._seen
        self._seen = version
        return changed


class SqliteStorage:
    """The :class:`~task_queue.storage.base.Storage` on one SQLite file.

    path: the database file (created 0600 if missing). Only local disks:
        WAL needs memory shared between the processes using the file.
    synchronous: "FULL" (default): an acknowledged write survives power
        loss. "NORMAL": survives a crash of the application, may lose the
        last commits on power loss; faster. ("EXTRA" is FULL plus a sync of
        the directory.)
    busy_timeout: seconds to keep retrying while another process holds the
        write lock, then DatabaseBusyError.
    max_batch: most callers' units in one group-commit transaction.
    max_size_bytes: cap on the database file (see :meth:`set_max_size`).
    shared_file: the file may be the application's own database, holding
        its tables already: the queue's tables are created beside them (for
        ``enqueue(connection=...)`` in the application's transactions) and
        the file's mode is left as it is. Refused still: a file of another
        user, or one with tables named like the queue's. Without it such a
        file is refused untouched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        max_batch: int = 500,
        max_size_bytes: int | None = None,
        shared_file: bool = False,
    ) -> None:
        if not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        if not (is_non_negative(busy_timeout) and math.isfinite(busy_timeout)):
            raise ValueError(f"busy_timeout must be a finite number >= 0, got {busy_timeout!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        self._max_size = _check_max_size(max_size_bytes)
        self._unlimited_pages = 0
        self.path = os.fspath(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout = float(busy_timeout)
        self.max_batch = max_batch
        self.shared_file = bool(shared_file)
        self._lock = threading.Lock()
        self._closed = False
        self._engine_obj = self._open()
        self._pid = os.getpid()

    def _open(self) -> Engine:
        prepare_file(self.path)
        return Engine(
            self.path,
            max_count=self.max_batch,
            on_open=self._on_open,
            busy_timeout=self.busy_timeout,
        )

    def _on_open(self, conn: sqlite3.Connection) -> None:
        open_database(conn, synchronous=self.synchronous, shared_file=self.shared_file)
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

    # -- operations both blocking and submitted (the asyncio seam) --
    # Each is planned once as a _Unit: the blocking method runs it and
    # waits; submit() queues it with a callback and returns at once.
    def _run(self, unit: _Unit) -> Any:
        result = self._engine.call(
            unit.fn, *unit.args, readonly=unit.readonly, savepoint=unit.savepoint,
            merge=unit.merge,
        )  # fmt: skip
        return unit.finish(result)

    def _plan_enqueue(self, tasks: Sequence[NewTask], now: float) -> _Unit:
        # One task is one INSERT (and maybe a read): SQLite rolls a failing
        # statement back by itself, so only batches need a savepoint for
        # all-or-nothing. Concurrent callers' single plain tasks share one
        # INSERT (the engine merges them): fewer statements, and fewer
        # times the engine thread gives up the GIL to callers.
        merge = _enqueue_merged if len(tasks) == 1 and _plain(tasks[0]) else None
        return _Unit(_enqueue, (tasks, now), False, len(tasks) > 1, _same, merge)

    def _plan_get(self, task_id: int) -> _Unit:
        return _read_unit("get_task", {"id": task_id}, _first_task)

    def _plan_get_many(self, task_ids: Sequence[int]) -> _Unit:
        params = {"ids": json.dumps(list(task_ids))}
        return _read_unit("get_tasks", params, _tasks_in_order(task_ids))

    def _plan_finished_among(self, task_ids: Sequence[int]) -> _Unit:
        params = {"ids": json.dumps(list(task_ids))}
        return _read_unit("finished_among", params, _finished_and_missing)

    def _plan_counts(self, queue_name: str | None = None) -> _Unit:
        if queue_name is None:
            return _read_unit("counts", {}, _status_counts)
        return _read_unit("queue_counts", {}, lambda rows: _per_queue(rows).get(queue_name, {}))

    def _plan_queue_counts(self) -> _Unit:
        return _read_unit("queue_counts", {}, _per_queue)

    _PLANS: ClassVar[Mapping[str, Callable[..., _Unit]]] = {
        "enqueue": _plan_enqueue,
        "get": _plan_get,
        "get_many": _plan_get_many,
        "finished_among": _plan_finished_among,
        "counts": _plan_counts,
        "queue_counts": _plan_queue_counts,
    }

    def submit(
        self, operation: str, args: tuple[Any, ...], on_done: Callable[[Outcome], None]
    ) -> None:
        """Start a storage operation without waiting (see
        :class:`~task_queue.storage.base.SubmitsOperations`): the engine
        thread calls ``on_done`` once the unit's transaction committed.
        Operations without a plan here run on the shared thread pool."""
        plan = self._PLANS.get(operation)
        if plan is None:
            submit_in_thread(self, operation, args, on_done)
            return
        unit = plan(self, *args)

        def answered(request: Request) -> None:
            on_done(lambda: _outcome(request, unit.finish))

        self._engine.submit(
            unit.fn, *unit.args, readonly=unit.readonly, savepoint=unit.savepoint,
            on_answer=answered, merge=unit.merge,
        )  # fmt: skip

    # -- writes --
    def enqueue(self, tasks: Sequence[NewTask], now: float) -> list[tuple[int, bool]]:
        unit = self._plan_enqueue(tasks, now)
        ids: list[tuple[int, bool]]
        if unit.merge is None:
            ids = self._run(unit)
            return ids
        # One plain task: one INSERT, which an uncontended caller runs
        # itself (see Engine.call_insert); otherwise the unit, merged with
        # other callers' single tasks by the engine thread.
        t = tasks[0]
        params = {
            "name": t.name, "task_type": t.task_type, "payload": t.payload,
            "priority": t.priority, "now": now, "scheduled_at": t.scheduled_at,
            "max_retries": t.max_retries, "run_at": t.run_at, "timeout": t.timeout,
            "queue_name": t.queue_name, "meta": t.meta, "concurrency_key": t.concurrency_key,
        }  # fmt: skip
        ids = self._engine.call_insert(
            Q["insert_plain_task"], params, _created, unit.fn, *unit.args,
            savepoint=unit.savepoint, merge=unit.merge,
        )  # fmt: skip
        return ids

    def enqueue_on(
        self, connection: object, tasks: Sequence[NewTask], now: float
    ) -> list[tuple[int, bool]]:
        """:meth:`enqueue` through the caller's ``sqlite3.Connection`` to this
        file, inside the transaction it has open (see outbox.py): committed
        with it, gone if it rolls back. UnusableConnectionError for a
        connection without a transaction, to another file, or whose
        transaction predates the schema."""
        engine = self._engine  # QueueClosedError once closed; the file's identity
        check_connection(connection, engine.file_identity, self.path)
        assert isinstance(connection, sqlite3.Connection)
        return run_in_transaction(connection, _enqueue, tasks, now)

    def claim(
        self, request: ClaimRequest, now: float, completions: Sequence[Completion] = ()
    ) -> tuple[set[Claim], list[Task]]:
        params = {
            "worker_id": request.worker_id, "now": now,
            "lease_expires_at": now + request.lease_seconds, "token": request.token,
            "limit": request.limit,
            "types": None if request.task_types is None else json.dumps(list(request.task_types)),
            "queues": None if request.queues is None else json.dumps(list(request.queues)),
            "owner_host": request.owner.host, "owner_pid": request.owner.pid,
        }  # fmt: skip
        # A plain claim is one statement; completions or limits make the
        # unit several statements that must stand or fall together.
        limits = dict(request.limits or {})
        recorded, rows = self._engine.call(
            _claim, list(completions), now, params, limits,
            savepoint=bool(completions) or bool(limits),
        )  # fmt: skip
        return recorded, claimed_tasks(rows, request, now)

    def complete(self, completions: Sequence[Completion], now: float) -> set[Claim]:
        engine = self._engine  # raises QueueClosedError, even with nothing to do
        if not completions:
            return set()
        done: set[Claim] = engine.call(_complete, list(completions), now, savepoint=False)
        return done

    def set_progress(self, items: Sequence[tuple[Claim, str]]) -> set[Claim]:
        engine = self._engine
        if not items:
            return set()
        payload = json.dumps([[c.task_id, c.token, text] for c, text in items])
        rows = engine.call(_rows, "set_progress", {"items": payload}, savepoint=False)
        return {Claim(int(r[0]), int(r[1])) for r in rows}

    def fail(self, claim: Claim, failure: FailureRecord, now: float) -> bool:
        return bool(self._engine.call(_fail, claim, failure, now))

    def release(self, claims: Sequence[Claim]) -> list[Claim]:
        engine = self._engine
        if not claims:
            return []
        released: list[Claim] = engine.call(_release, list(claims))
        return released

    def renew(self, claims: Sequence[Claim], now: float, lease_seconds: float) -> set[Claim]:
        engine = self._engine
        if not claims:
            return set()
        renewed: set[Claim] = engine.call(
            _renew, list(claims), now + lease_seconds, savepoint=False
        )
        return renewed

    def rescue(self, rescues: Sequence[Rescue], now: float) -> list[tuple[int, str]]:
        engine = self._engine
        if not rescues:
            return []
        applied: list[tuple[int, str]] = engine.call(_rescue, list(rescues), now)
        return applied

    def cancel(self, task_id: int, now: float) -> bool:
        return bool(self._engine.call(_cancel, task_id, now))

    def retry(self, task_id: int, now: float) -> bool:
        return bool(self._engine.call(_retry, task_id, now, savepoint=False))

    def retry_many(self, task_ids: Sequence[int], now: float) -> list[int]:
        if not task_ids:
            return []
        params = {"ids": json.dumps(list(task_ids)), "now": now}
        rows = self._engine.call(_rows, "retry_tasks", params, savepoint=False)
        return sorted(int(r[0]) for r in rows)

    def purge(self, statuses: Sequence[str], before: float, limit: int) -> int:
        chosen = json.dumps(list(statuses))
        return int(self._engine.call(_purge, chosen, before, limit, savepoint=False))

    def check_writable(self) -> None:
        self._engine.call(_rows, "probe_write", {}, savepoint=False)

    # -- reads --
    def _read(self, fn: Any, *args: Any) -> Any:
        return self._engine.call(fn, *args, readonly=True, savepoint=False)

    # Reads return rows; Tasks are built here, in the caller's thread, so
    # the engine thread every caller waits for is free sooner.
    def get(self, task_id: int) -> Task | None:
        task: Task | None = self._run(self._plan_get(task_id))
        return task

    def attempts(self, task_id: int) -> list[AttemptRecord]:
        rows = self._read(_rows, "task_attempts", {"id": task_id})
        return [AttemptRecord(*row) for row in rows]

    def get_many(self, task_ids: Sequence[int]) -> list[Task]:
        tasks: list[Task] = self._run(self._plan_get_many(task_ids))
        return tasks

    def finished_among(self, task_ids: Sequence[int]) -> tuple[list[Task], list[int]]:
        found: tuple[list[Task], list[int]] = self._run(self._plan_finished_among(task_ids))
        return found

    def list_tasks(
        self,
        where: TaskFilter,
        limit: int,
        after: Task | Position | None = None,
        scan: int | None = None,
    ) -> Listing:
        params: dict[str, Any] = {
            "status": where.status, "task_type": where.task_type, "queue_name": where.queue_name,
            "before_id": 2**63 - 1 if after is None else after.id,
            "before_at": math.inf if after is None or after.completed_at is None
            else after.completed_at,
            "limit": limit, **NO_FLOOR,
        }  # fmt: skip
        plan = self._listing_query(where)
        if not is_bounded(where, plan, scan):
            return Listing([task_from_row(r) for r in self._read(_rows, plan, params)])
        assert scan is not None
        rows, searched = self._read(_bounded_listing, plan, params, scan)
        tasks = [task_from_row(r) for r in rows]
        return Listing(tasks, searched if len(tasks) < limit else None)

    def _listing_query(self, where: TaskFilter) -> str:
        """Which statement lists ``where`` fastest. Failed tasks of one type
        or queue: the failed tasks' index of that type or queue. Other
        finished tasks: their index, in finish order. Pending or running ones: their own index
        when they are few (cost: how many there are), else the walk of
        the table from the newest (cost: how far back the page is; many
        live tasks are mostly recent ones). Anything else: the walk."""
        if where.status == "failed" and where.task_type is not None:
            return "list_failed_of_type"
        if where.status == "failed" and where.queue_name is not None:
            return "list_failed_in_queue"
        if where.status in FINISHED:
            return "list_finished"
        if where.status in ("pending", "running"):
            counts = self.queue_counts()
            if where.queue_name is not None:
                live = counts.get(where.queue_name, {}).get(where.status, 0)
            else:
                live = sum(c.get(where.status, 0) for c in counts.values())
            if live <= LIVE_INDEX_MAX:
                if where.status == "running":
                    return "list_running"
                return "list_pending" if where.queue_name is None else "list_pending_in_queue"
        return "list_newest"

    def list_by_status(self, status: str, limit: int) -> list[Task]:
        return list_in_pages(self, status, limit)

    def counts(self, queue_name: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = self._run(self._plan_counts(queue_name))
        return counts

    def queue_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = self._run(self._plan_queue_counts())
        return counts

    def declare_schedules(self, schedules: Sequence[ScheduleRow], now: float) -> None:
        if schedules:
            self._engine.call(_declare, list(schedules), now)

    def last_slot(self, name: str) -> float | None:
        value = self._read(_scalar, "schedule_last_slot", {"name": name})
        return None if value is None else float(value)

    def fire_slots(
        self, name: str, slots: Sequence[tuple[float, NewTask]], next_fire: float, now: float
    ) -> list[tuple[float, int]]:
        if not slots:
            return []
        fired: list[tuple[float, int]] = self._engine.call(_fire, name, list(slots), next_fire, now)
        return fired

    def schedules(self) -> list[ScheduleInfo]:
        return [ScheduleInfo(*row) for row in self._read(_rows, "list_schedules", {})]

    def worker_seen(self, worker: WorkerInfo, now: float) -> None:
        params = {**dataclasses.asdict(worker), "now": now}
        self._engine.call(_worker_seen, params)

    def workers(self, since: float) -> list[WorkerInfo]:
        return [WorkerInfo(*row) for row in self._read(_rows, "workers_seen", {"since": since})]

    def throughput(self, since: float, bucket: float) -> list[tuple[float, str, int]]:
        rows = self._read(_rows, "throughput", {"since": since, "bucket": bucket})
        return [(float(at), str(status), int(n)) for at, status, n in rows]

    def oldest_due(self, now: float) -> float | None:
        value = self._read(_scalar, "oldest_due", {"now": now})
        return None if value is None else float(value)

    def pause(self, queue_name: str, now: float) -> None:
        self._engine.call(
            _rows, "pause_queue", {"queue_name": queue_name, "now": now}, savepoint=False
        )

    def resume(self, queue_name: str) -> bool:
        rows = self._engine.call(_rows, "resume_queue", {"queue_name": queue_name}, savepoint=False)
        return bool(rows)

    def paused(self) -> set[str]:
        return {name for (name,) in self._read(_rows, "paused_queues", {})}

    def next_due(self, now: float) -> float | None:
        value = self._read(_scalar, "next_due", {"now": now})
        return None if value is None else float(value)

    def due_by_type(self, now: float, queues: Sequence[str] | None = None) -> dict[str, int]:
        chosen = None if queues is None else json.dumps(list(queues))
        rows = self._read(_rows, "due_by_type", {"now": now, "queues": chosen})
        return {task_type: int(n) for task_type, n in rows}

    def expired(self, now: float, *, dead_owners: Sequence[Owner] = ()) -> list[Task]:
        owners = json.dumps([[o.host, o.pid] for o in dead_owners]) if dead_owners else None
        return [task_from_row(r) for r in self._read(_expired, now, owners)]

    def claim_owners(self, host: str) -> list[int]:
        rows = self._read(_rows, "local_owners", {"owner_host": host})
        return [int(pid) for (pid,) in rows]

    def data_version(self) -> int:
        """``PRAGMA data_version``: changes whenever another connection commits."""
        return int(self._read(_scalar, "data_version", {}))

    def change_feed(self) -> ChangeFeed:
        self._engine  # noqa: B018 - raises QueueClosedError once closed
        return _DataVersionFeed(self)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._pid == os.getpid():
            self._engine_obj.close()
