"""The PostgreSQL backend: each storage operation as a unit run on a pooled
connection, in one transaction (or as one statement in autocommit, where
one statement is the whole operation).

A unit (units.py) is a function ``fn(tx, ...)``; it runs only named
statements from queries.sql. ``_run`` gives it a connection from the bounded pool for that
one operation (callers never keep one: a handler thread holds none while
its handler runs), commits, retries deadlocks and serialization failures
(40P01, 40001) and lock timeouts (55P03) with backoff, then sends the
debounced NOTIFY if the unit changed something others wait for.

Why retries are safe here: a unit that failed wrote nothing (its
transaction rolled back), and every write on a claim is fenced by its
claim token, so doing it again can never record a stale holder's outcome.
Deadlocks do happen: ``FOR UPDATE SKIP LOCKED`` skips rows that are locked,
but still waits for a newer version of a row it already chose (a probe's
one-statement complete-and-claim deadlocked), so connections set a short
``lock_timeout`` and the storage retries.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ...errors import DatabaseOpenError, QueueClosedError, ReadOnlyDatabaseError, StorageError
from ...interrupted import note_error, note_result, note_unknown
from ...task import AttemptRecord, Claim, ScheduleInfo, SearchedTasks, Task, WorkerInfo
from ..base import (
    FINISHED,
    ChangeFeed,
    ClaimRequest,
    Completion,
    FailureRecord,
    Listing,
    NewTask,
    Owner,
    Position,
    Rescue,
    ScheduleRow,
    TaskFilter,
    list_in_pages,
)
from ..rows import claimed_tasks, task_from_row
from ..scan import NO_FLOOR, bounded_listing, is_bounded
from .clock import ServerClock
from .errors import is_retried, typed
from .notify import Feed, Listener, Notifier, listener, release_listener
from .schema import MIGRATIONS, SCHEMA_VERSION, migrate
from .units import (
    Q,
    _Again,
    _cancel,
    _check_new,
    _claim,
    _clean,
    _complete,
    _declare,
    _enqueue,
    _expired,
    _fail,
    _fire,
    _release,
    _renew,
    _rescue,
    _retry,
    _retry_many,
    _Tx,
    _worker_seen,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStorage", "redact_dsn"]

T = TypeVar("T")

#: Conflicts (deadlock, serialization failure, lock timeout) are retried
#: this many times, with jittered backoff, before DatabaseBusyError.
RETRIES = 8
#: A pooled connection idle for longer is checked before it is handed out
#: (a server restart leaves every idle one dead).
CHECK_IDLE_AFTER = 1.0

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
#: Connections abandoned by a child after fork(): never closed there (closing
#: would end the parent's sessions on the shared sockets), never collected.
_ABANDONED: list[Any] = []


#: Seconds a pool that failed to open waits for its threads: with 0,
#: psycopg_pool logged "couldn't stop thread ... within 0 seconds" under the
#: error the caller gets (they stop within milliseconds).
_CLOSE_FAILED_OPEN = 2.0


class PostgresStorage:
    """The :class:`~task_queue.storage.base.Storage` on a PostgreSQL database.

    dsn: a libpq connection string or URI (``postgresql://user@host/db``).
    schema: the schema holding the queue's tables (created if missing;
        default: the first of the connection's search_path, normally
        ``public``). Queues in different schemas are independent.
    pool_size: most connections this object opens for callers (each
        operation borrows one for its own length only; a Worker process
        needs about 2 + its Workers' dispatchers, see README "Running on
        PostgreSQL"). One more, dedicated, connection LISTENs once a change
        feed is asked for (one per process, shared).
    pool_timeout: seconds an operation waits for a free connection (or the
        server) before StorageError.
    lock_timeout: seconds a statement waits for a row lock before it is
        retried (conflicts are retried, then DatabaseBusyError).
    idle_in_transaction_timeout: sessions of this object idle inside a
        transaction longer are ended by the server (a guard: the storage's
        own transactions never idle). None: the server's setting.

    Times: the contract's ``now`` arguments are stored as given; TaskQueue
    takes them from :meth:`server_clock`, the database server's clock.
    psycopg 3 and psycopg_pool are needed (``pip install task_queue[postgres]``),
    imported only when a PostgresStorage is made.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        pool_size: int = 8,
        pool_timeout: float = 10.0,
        lock_timeout: float = 2.0,
        idle_in_transaction_timeout: float | None = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        try:
            import psycopg
            import psycopg_pool
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "PostgresStorage needs psycopg 3 and psycopg_pool: "
                "pip install 'task_queue[postgres]'"
            ) from exc
        if not isinstance(dsn, str) or not dsn:
            raise ValueError(f"dsn must be a non-empty connection string, got {dsn!r}")
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(
                f"schema must be 1-48 letters, digits and _ (not starting with a digit), "
                f"got {schema!r}"
            )
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be an int >= 1, got {pool_size!r}")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self._psycopg = psycopg
        self._pool_cls = psycopg_pool.ConnectionPool
        self._pool_timeout_error: type[Exception] = psycopg_pool.PoolTimeout
        self._pool_timeout = float(pool_timeout)
        self._connect_timeout = float(connect_timeout)
        settings = {"lock_timeout": f"{int(lock_timeout * 1000)}ms"}
        if idle_in_transaction_timeout is not None:
            settings["idle_in_transaction_session_timeout"] = (
                f"{int(idle_in_transaction_timeout * 1000)}ms"
            )
        self._settings = settings
        self._lock = threading.Lock()
        self._closed = False
        self._own_pids: set[int] = set()
        self._listener: Listener | None = None
        self._feeds: list[Feed] = []
        self._pid = os.getpid()
        self._channel = ""
        self._pool = self._open_pool()
        self._notifier = Notifier(self._notify_now)
        self._clock = ServerClock(self._sample_clock)

    # -- connections ----------------------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(1, int(self._connect_timeout)),
            "application_name": "task_queue",
        }

    def _configure(self, conn: Any) -> None:
        if self.schema is not None:
            conn.execute("SELECT set_config('search_path', %s, false)", (f'"{self.schema}"',))
        for name, value in self._settings.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        self._own_pids.add(int(conn.info.backend_pid))

    def _check(self, conn: Any) -> None:
        used = getattr(conn, "_task_queue_used", None)
        if used is None or time.monotonic() - used > CHECK_IDLE_AFTER:
            self._pool_cls.check_connection(conn)

    def _open_pool(self) -> Any:
        pool = self._pool_cls(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            kwargs=self._connect_kwargs(),
            configure=self._configure,
            check=self._check,
            open=False,
            timeout=self._pool_timeout,
            name="task_queue",
            reconnect_timeout=3600.0,
        )
        try:
            pool.open(wait=True, timeout=self._connect_timeout)
        except Exception as exc:
            with contextlib.suppress(Exception):
                pool.close(timeout=_CLOSE_FAILED_OPEN)
            raise DatabaseOpenError(f"cannot connect to PostgreSQL ({exc})") from exc
        try:
            with pool.connection() as conn:
                migrate(conn, self.schema)
                schema = conn.execute("SELECT current_schema()").fetchone()[0]
        except StorageError:
            pool.close(timeout=_CLOSE_FAILED_OPEN)
            raise
        except self._psycopg.Error as exc:
            pool.close(timeout=_CLOSE_FAILED_OPEN)
            raise typed(exc, "creating the schema") from exc
        self._channel = f"task_queue_{schema}"[:63]
        return pool

    def _pool_now(self) -> Any:
        if self._pid != os.getpid():
            # A child after fork(): the parent's connections (and threads)
            # are not ours. Abandon them unclosed and open our own.
            with self._lock:
                if self._closed:
                    raise QueueClosedError("the TaskQueue is closed")
                if self._pid != os.getpid():
                    _ABANDONED.append(self._pool)
                    self._lock = threading.Lock()
                    self._listener = None
                    self._feeds = []
                    self._own_pids = set()
                    self._notifier = Notifier(self._notify_now)
                    self._pool = self._open_pool()
                    self._pid = os.getpid()
        if self._closed:
            raise QueueClosedError("the TaskQueue is closed")
        return self._pool

    def _run(self, what: str, fn: Callable[..., T], *args: Any, transaction: bool = True,
             readonly: bool = False) -> T:  # fmt: skip
        """Run unit ``fn`` on a pooled connection (see the module docstring)."""
        psycopg = self._psycopg
        attempt = 0
        while True:
            pool = self._pool_now()
            committing = done = False
            try:
                with pool.connection() as conn:
                    tx = _Tx(conn.cursor())
                    try:
                        if transaction:
                            with conn.transaction():
                                result = fn(tx, *args)
                                tx.flush_counts()
                                committing = True
                        else:
                            committing = not readonly
                            result = fn(tx, *args)
                            tx.flush_counts()
                        done = True
                    finally:
                        conn._task_queue_used = time.monotonic()
                    if tx.changed and self._notifier.now_or_later():
                        self._notify(conn)
                    return result
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    # An interrupt (Ctrl-C, an asynchronous TaskTimeout): say
                    # what it left behind, as the SQLite engine does
                    # (interrupted.py; enqueue() turns it into task_ids).
                    if done:
                        note_result(exc, result)
                    elif committing:
                        note_unknown(exc)  # the commit may or may not have happened
                    else:
                        note_error(exc, exc)  # rolled back: nothing written
                    raise
                if not isinstance(exc, (self._pool_timeout_error, _Again, psycopg.Error)):
                    raise
                self._failed(what, exc, attempt, committing)
            attempt += 1
            time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))

    def _failed(self, what: str, exc: Exception, attempt: int, committing: bool) -> None:
        """Raise the typed error for a failed attempt, or return to retry it:
        conflicts (deadlock, serialization, lock timeout) up to RETRIES
        times, a connection that died before anything could commit twice
        (the pool replaces it)."""
        if isinstance(exc, self._pool_timeout_error):  # before psycopg.Error: a subclass
            raise StorageError(
                f"PostgreSQL: {what}: no connection within {self._pool_timeout:g}s ({exc})"
            ) from exc
        if isinstance(exc, _Again):
            if attempt < RETRIES:
                return
            raise StorageError(f"PostgreSQL: {what} kept racing; try again") from None
        broken = isinstance(exc, self._psycopg.OperationalError) and not is_retried(exc)
        if is_retried(exc) and attempt < RETRIES:
            return
        if broken and not committing and attempt < 2:
            return
        raise typed(exc, what) from exc

    def _notify(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.execute(Q["notify"], {"channel": self._channel})

    def _notify_now(self) -> None:
        with self._pool_now().connection() as conn:
            self._notify(conn)

    def _sample_clock(self) -> tuple[float, float, float]:
        with self._pool_now().connection() as conn:
            before = time.time()
            (server,) = conn.execute(Q["server_time"]).fetchone()
            after = time.time()
        return before, float(server), after

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return self._run("a read", fn, *args, transaction=False, readonly=True)

    def _rows(self, name: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return self._read(lambda tx: tx.rows(name, params))

    def _scalar(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        row = self._read(lambda tx: tx.one(name, params))
        return None if row is None else row[0]

    def _write1(self, name: str, params: Mapping[str, Any], *, changes: bool = False) -> list[Any]:
        """One statement that is the whole operation (autocommit)."""

        def unit(tx: _Tx) -> list[Any]:
            rows = tx.rows(name, params)
            tx.changed = changes and bool(rows)
            return rows

        return self._run(name, unit, transaction=False)

    # -- capabilities ----------------------------------------------------------------
    def server_clock(self) -> ServerClock:
        """The database server's clock (see :mod:`.clock`): TaskQueue uses it
        for every "now" when it was given no clock."""
        return self._clock

    # -- writes -------------------------------------------------------------------------
    def enqueue(self, tasks: Sequence[NewTask], now: float) -> list[tuple[int, bool]]:
        for index, task in enumerate(tasks):
            _check_new(task, index)
        if not tasks:
            self._pool_now()
            return []
        # One task without dependencies is one INSERT (maybe and a read):
        # atomic as it is. Batches and dependencies need a transaction.
        several = len(tasks) > 1 or bool(tasks[0].depends_on)
        return self._run("enqueue", _enqueue, list(tasks), now, transaction=several)

    def claim(
        self, request: ClaimRequest, now: float, completions: Sequence[Completion] = ()
    ) -> tuple[set[Claim], list[Task]]:
        lease_expires_at = now + request.lease_seconds
        params = {
            "worker_id": _clean(request.worker_id), "now": now,
            "lease_expires_at": lease_expires_at, "token": request.token,
            "limit": request.limit,
            "types": None if request.task_types is None else list(request.task_types),
            "queues": None if request.queues is None else list(request.queues),
            "owner_host": request.owner.host, "owner_pid": request.owner.pid,
        }  # fmt: skip
        limits = dict(request.limits or {})
        # A plain claim makes its own transaction, in one round trip
        # (_claim_pipelined); limits need one of several statements.
        several = bool(limits)
        recorded, rows = self._run(
            "claim", _claim, list(completions), now, params, limits, transaction=several
        )
        return recorded, claimed_tasks(rows, request, now)

    def complete(self, completions: Sequence[Completion], now: float) -> set[Claim]:
        self._pool_now()
        if not completions:
            return set()
        # One statement (dependents released and counts kept in it too).
        return self._run("complete", _complete, list(completions), now, transaction=False)

    def set_progress(self, items: Sequence[tuple[Claim, str]]) -> set[Claim]:
        self._pool_now()
        if not items:
            return set()
        params = {
            "ids": [c.task_id for c, _ in items],
            "tokens": [c.token for c, _ in items],
            "progress": [text for _, text in items],
        }
        return {Claim(int(i), int(t)) for i, t in self._write1("set_progress", params)}

    def fail(self, claim: Claim, failure: FailureRecord, now: float) -> bool:
        return self._run("fail", _fail, claim, failure, now)

    def release(self, claims: Sequence[Claim]) -> list[Claim]:
        self._pool_now()
        if not claims:
            return []
        return self._run("release", _release, list(claims), transaction=False)

    def renew(self, claims: Sequence[Claim], now: float, lease_seconds: float) -> set[Claim]:
        self._pool_now()
        if not claims:
            return set()
        return self._run("renew", _renew, list(claims), now + lease_seconds, transaction=False)

    def rescue(self, rescues: Sequence[Rescue], now: float) -> list[tuple[int, str]]:
        self._pool_now()
        if not rescues:
            return []
        return self._run("rescue", _rescue, list(rescues), now)

    def cancel(self, task_id: int, now: float) -> bool:
        return self._run("cancel", _cancel, task_id, now)

    def retry(self, task_id: int, now: float) -> bool:
        return self._run("retry", _retry, task_id, now)

    def retry_many(self, task_ids: Sequence[int], now: float) -> list[int]:
        if not task_ids:
            self._pool_now()
            return []
        return self._run("retry_many", _retry_many, list(task_ids), now)

    def purge(self, statuses: Sequence[str], before: float, limit: int) -> int:
        params = {"statuses": list(statuses), "before": before, "limit": limit}

        def unit(tx: _Tx) -> int:
            deleted = int(tx.one("purge_finished", params)[0])
            tx.changed = deleted > 0  # waiters on a purged task hear of it
            return deleted

        return self._run("purge", unit, transaction=False)

    def check_writable(self) -> None:
        writable, standby = self._rows("probe_write")[0]
        if standby:
            raise ReadOnlyDatabaseError("PostgreSQL: the server is a standby (read-only)")
        if not writable:
            raise ReadOnlyDatabaseError("PostgreSQL: the session is read-only")

    def declare_schedules(self, schedules: Sequence[ScheduleRow], now: float) -> None:
        if schedules:
            self._run("declare_schedules", _declare, list(schedules), now)

    def last_slot(self, name: str) -> float | None:
        value = self._scalar("schedule_last_slot", {"name": name})
        return None if value is None else float(value)

    def fire_slots(
        self, name: str, slots: Sequence[tuple[float, NewTask]], next_fire: float, now: float
    ) -> list[tuple[float, int]]:
        if not slots:
            return []
        for index, (_, task) in enumerate(slots):
            _check_new(task, index)
        return self._run("fire_slots", _fire, name, list(slots), next_fire, now)

    def schedules(self) -> list[ScheduleInfo]:
        return [ScheduleInfo(*row) for row in self._rows("list_schedules")]

    def worker_seen(self, worker: WorkerInfo, now: float) -> None:
        params = {
            "worker_id": _clean(worker.worker_id), "name": _clean(worker.name),
            "host": worker.host, "pid": worker.pid, "queues": worker.queues,
            "concurrency": worker.concurrency, "started_at": worker.started_at, "now": now,
            "stopped_at": worker.stopped_at, "processed": worker.processed,
            "failed": worker.failed,
        }  # fmt: skip
        self._run("worker_seen", _worker_seen, params, transaction=False)

    def workers(self, since: float) -> list[WorkerInfo]:
        return [WorkerInfo(*row) for row in self._rows("workers_seen", {"since": since})]

    def throughput(self, since: float, bucket: float) -> list[tuple[float, str, int]]:
        rows = self._rows("throughput", {"since": since, "bucket": bucket})
        return [(float(at), str(status), int(n)) for at, status, n in rows]

    def oldest_due(self, now: float) -> float | None:
        value = self._scalar("oldest_due", {"now": now})
        return None if value is None else float(value)

    def pause(self, queue_name: str, now: float) -> None:
        def unit(tx: _Tx) -> None:
            tx.rows("pause_queue", {"queue_name": queue_name, "now": now})
            tx.changed = True  # Workers elsewhere give back what they prefetched

        self._run("pause", unit, transaction=False)

    def resume(self, queue_name: str) -> bool:
        return bool(self._write1("resume_queue", {"queue_name": queue_name}, changes=True))

    def paused(self) -> set[str]:
        return {name for (name,) in self._rows("paused_queues")}

    # -- reads -------------------------------------------------------------------------
    def get(self, task_id: int) -> Task | None:
        rows = self._rows("get_task", {"id": task_id})
        return task_from_row(rows[0]) if rows else None

    def attempts(self, task_id: int) -> list[AttemptRecord]:
        return [AttemptRecord(*row) for row in self._rows("task_attempts", {"id": task_id})]

    def get_many(self, task_ids: Sequence[int]) -> list[Task]:
        rows = self._rows("get_tasks", {"ids": list(task_ids)})
        by_id = {row[0]: row for row in rows}
        return [task_from_row(by_id[i]) for i in dict.fromkeys(task_ids) if i in by_id]

    def finished_among(self, task_ids: Sequence[int]) -> tuple[list[Task], list[int]]:
        rows = self._rows("finished_among", {"ids": list(task_ids)})
        finished = [task_from_row(row[1:]) for row in rows if row[1] is not None]
        missing = [int(row[0]) for row in rows if row[1] is None]
        return finished, missing

    def list_tasks(
        self,
        where: TaskFilter,
        limit: int,
        after: Task | Position | None = None,
        scan: int | None = None,
    ) -> Listing:
        plan = "list_finished" if where.status in FINISHED else "list_newest"
        params: dict[str, Any] = {
            "status": where.status, "task_type": where.task_type, "queue_name": where.queue_name,
            "before_id": 2**63 - 1 if after is None else after.id,
            "before_at": math.inf if after is None or after.completed_at is None
            else after.completed_at,
            "limit": limit, **NO_FLOOR,
        }  # fmt: skip
        if not is_bounded(where, plan, scan):
            return Listing([task_from_row(r) for r in self._rows(plan, params)])
        assert scan is not None

        def unit(tx: _Tx) -> tuple[list[Sequence[Any]], SearchedTasks | None]:
            # Its statements (storage/scan.py) must see one snapshot: under
            # READ COMMITTED a purge between the window's edge and the page
            # could move the resume point past rows never examined. A few
            # ms of REPEATABLE READ, read only, holds back no vacuum to speak of.
            tx.rows("snapshot_read")
            return bounded_listing(tx.rows, plan, params, scan)

        rows, searched = self._run("a read", unit, readonly=True)
        tasks = [task_from_row(r) for r in rows]
        return Listing(tasks, searched if len(tasks) < limit else None)

    def list_by_status(self, status: str, limit: int) -> list[Task]:
        return list_in_pages(self, status, limit)

    def counts(self, queue_name: str | None = None) -> dict[str, int]:
        per_queue = self.queue_counts()
        if queue_name is not None:
            return per_queue.get(queue_name, {})
        total: dict[str, int] = {}
        for counts in per_queue.values():
            for status, n in counts.items():
                total[status] = total.get(status, 0) + n
        return total

    def queue_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for queue_name, status, n in self._rows("queue_counts"):
            counts.setdefault(queue_name, {})[status] = int(n)
        return counts

    def next_due(self, now: float) -> float | None:
        value = self._scalar("next_due", {"now": now})
        return None if value is None else float(value)

    def due_by_type(self, now: float, queues: Sequence[str] | None = None) -> dict[str, int]:
        params = {"now": now, "queues": None if queues is None else list(queues)}
        return {task_type: int(n) for task_type, n in self._rows("due_by_type", params)}

    def expired(self, now: float, *, dead_owners: Sequence[Owner] = ()) -> list[Task]:
        return [task_from_row(r) for r in self._read(_expired, now, list(dead_owners))]

    def claim_owners(self, host: str) -> list[int]:
        return [int(pid) for (pid,) in self._rows("local_owners", {"owner_host": host})]

    # -- change feed and lifecycle ---------------------------------------------------------
    def _check_open(self) -> None:
        self._pool_now()

    def _listen_connect(self) -> Any:
        # Named apart from the pool's sessions, so an operator (or a fault
        # test) finds it in pg_stat_activity.
        kwargs = {**self._connect_kwargs(), "application_name": "task_queue-listener"}
        return self._psycopg.connect(self.dsn, **kwargs)

    def change_feed(self) -> ChangeFeed:
        self._pool_now()
        with self._lock:
            if self._listener is None:
                self._listener = listener(self.dsn, self._channel, self._listen_connect)
                # Commits after this call must be news: LISTEN first.
                self._listener.wait_connected(self._connect_timeout)
            feed = Feed(self._listener, self._own_pids.__contains__, self._check_open)
            self._feeds.append(feed)
        return feed

    @property
    def listener_backend_pid(self) -> int | None:
        """The backend pid of this process's LISTEN connection, once a feed
        was asked for (for operators and fault tests)."""
        return None if self._listener is None else self._listener.backend_pid

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            used, self._listener = self._listener, None
            feeds, self._feeds = self._feeds, []
        if self._pid != os.getpid():
            return  # the parent's, see _pool_now
        self._notifier.close()
        for feed in feeds:
            feed.close()
        if used is not None:
            release_listener(self.dsn, self._channel, used)
        self._pool.close(timeout=5.0)

    def __repr__(self) -> str:
        schema = "" if self.schema is None else f", schema={self.schema!r}"
        return f"PostgresStorage({redact_dsn(self.dsn)!r}{schema})"


def redact_dsn(dsn: str) -> str:
    """The DSN without its password (for reprs and logs)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", dsn))
