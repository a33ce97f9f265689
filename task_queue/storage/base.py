"""The storage contract: the operations a backend implements, nothing SQL-shaped.

TaskQueue is the only caller. It validates and encodes every argument, and
decides every state transition (retry or dead-letter, the rescue of a lost
claim); a backend *records* those decisions atomically and fenced. So a
second backend (PostgreSQL with ``FOR UPDATE SKIP LOCKED`` claims and
LISTEN/NOTIFY wake-ups) implements this protocol and proves itself by
passing the contract suite in ``tests/storage/``, with no change to the
queue or the Worker.

Conventions every operation follows:

* **Atomic.** Each call is one transaction: it happens entirely or not at
  all. A call that raises wrote nothing.
* **Fenced.** An operation on a claim (:class:`~task_queue.task.Claim`)
  applies only while the task is still ``running`` under that claim token;
  otherwise it changes nothing and reports the claim as not recorded.
* **Times.** ``now`` is the caller's clock (UTC epoch seconds), stored as
  given. Leases and backoffs are passed as *durations*. A backend shared
  by several machines offers the optional capability ``server_clock() ->
  Clock`` (PostgreSQL: the server's ``clock_timestamp()``, see
  ``storage/postgres/clock.py``); TaskQueue then takes every ``now`` from
  it unless it was given a clock, so processes on machines whose clocks
  differ agree on leases, due times and rescue.

Optional capabilities (looked up with ``getattr``; a backend need not have
them): ``server_clock()`` above; ``data_version()`` (SQLite); a change
feed's ``on_change(callback)`` (PostgreSQL: wake a Worker as soon as
another process's notification arrives, not only at its next poll).
* **Errors.** Failures of the database itself raise
  :class:`~task_queue.errors.StorageError` subclasses (busy past the
  timeout, disk full, read-only, closed...). Nothing else escapes except
  the domain errors named on each operation.

**Without waiting** (the asyncio seam). :func:`submit` starts an operation
and calls back once it is done, so an event loop can await it without a
thread blocked per call. A backend with a native way to do that (SQLite: the
engine thread answers the request through a callback) implements the
optional :class:`SubmitsOperations`; for any other, :func:`submit` runs the
ordinary blocking operation on a small shared thread pool.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..limits import Limits
from ..task import AttemptRecord, Claim, ScheduleInfo, SearchedTasks, Task, WorkerInfo


@dataclasses.dataclass(frozen=True, slots=True)
class NewTask:
    """One validated, encoded task, ready to insert (see :class:`~task_queue.spec.TaskSpec`)."""

    name: str
    task_type: str
    #: JSON text, or None for no payload.
    payload: str | None
    priority: int
    scheduled_at: float | None
    run_at: float
    max_retries: int
    timeout: float | None
    unique_key: str | None
    queue_name: str = "default"
    #: Ids of tasks it waits for.
    depends_on: tuple[int, ...] = ()
    #: Indices of earlier tasks of the same enqueue batch it waits for.
    depends_on_batch: tuple[int, ...] = ()
    #: JSON text of the task's metadata, or None.
    meta: str | None = None
    #: Concurrency-limited types run at most N at once per key.
    concurrency_key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Owner:
    """The process holding a claim: a rescuer on the same host can tell at
    once that it died (its PID is gone) instead of waiting for the lease."""

    host: str
    pid: int


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimRequest:
    """What to claim, and the claim to record on each task taken."""

    worker_id: str
    owner: Owner
    limit: int
    #: Only these task types (None: any type).
    task_types: Sequence[str] | None
    #: Fencing token recorded on every task of this claim.
    token: int
    #: Seconds from ``now`` until the claim expires unless renewed.
    lease_seconds: float
    #: Only from these queues (None: every queue); paused queues never.
    queues: Sequence[str] | None = None
    #: Claim-time limits of some of ``task_types`` (rate, concurrency),
    #: shared by every process on the storage.
    limits: Mapping[str, Limits] | None = None


class Completion(NamedTuple):
    """A successful attempt to record (a tuple: one is made per task)."""

    claim: Claim
    #: The handler's result as JSON text (None: no result).
    result: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class FailureRecord:
    """A failed attempt to record, with the decision already taken
    (:func:`task_queue.retry.decide`)."""

    error: str
    traceback: str | None
    #: Seconds from ``now`` until the retry is due; None: failed for good
    #: (the dead-letter state).
    retry_in: float | None
    #: The exception's class as "module.QualName", when there was one.
    error_class: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Rescue:
    """A lost claim (expired lease, or a dead owner) to give up, decided
    by the rescuer from the task as it found it."""

    claim: Claim
    #: The lease expiry the rescuer saw: a renewal since then wins.
    lease_expires_at: float | None
    #: As in FailureRecord: seconds until due again, or None for failed.
    retry_in: float | None
    error: str


@dataclasses.dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a listing shows (None: any)."""

    status: str | None = None
    task_type: str | None = None
    queue_name: str | None = None


#: Finished statuses are listed most recently finished first; a listing of
#: any other status, or of all, newest (highest id) first.
FINISHED = frozenset({"completed", "failed", "cancelled"})


class Position(NamedTuple):
    """A place in a listing's order (what :meth:`Storage.list_tasks` goes on
    after): a task's id, and for a finished status its finish time. A Task
    serves as well."""

    id: int
    completed_at: float | None = None


class Listing(NamedTuple):
    """What :meth:`Storage.list_tasks` found."""

    #: The matching tasks, in listing order.
    tasks: list[Task]
    #: With a scan bound: the rows examined, when the listing stopped at
    #: the bound with the page not full and more rows beyond; None when the
    #: page is full, the walk reached the end, or no bound applied.
    searched: SearchedTasks | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A schedule as a Worker declares it to the file."""

    name: str
    task_type: str
    expression: str
    queue_name: str
    misfire: str
    next_fire: float | None


class ChangeFeed(Protocol):
    """Cross-process wake-up: tells a poller cheaply that *another* process
    committed something, so it runs a claim instead of guessing.

    SQLite answers from ``PRAGMA data_version`` (a few µs); PostgreSQL from
    LISTEN/NOTIFY (``storage/postgres/notify.py``). Changes made through the same
    storage object are not reported (the queue wakes its own listeners).
    """

    def changed(self) -> bool:
        """True if another process may have committed since the last call
        (the first call always answers True)."""
        ...


@runtime_checkable
class EnqueuesOnConnection(Protocol):
    """A backend that can also insert tasks through the application's own
    database connection, inside the transaction the application has open
    (``TaskQueue.enqueue(..., connection=conn)``, the outbox pattern). The
    SQLite storage takes a ``sqlite3.Connection`` to its file."""

    def enqueue_on(
        self, connection: object, tasks: Sequence[NewTask], now: float
    ) -> list[tuple[int, bool]]:
        """:meth:`Storage.enqueue` through ``connection``, in its open
        transaction: the tasks commit or roll back with it. Raises
        UnusableConnectionError for a connection it cannot use (no
        transaction open, another database, a schema it does not see)."""
        ...


class Storage(Protocol):
    """The operations of a task_queue backend. See the module docstring for
    the conventions (atomic, fenced, times as durations, typed errors)."""

    # -- writes --------------------------------------------------------------
    def enqueue(self, tasks: Sequence[NewTask], now: float) -> list[tuple[int, bool]]:
        """Insert all of ``tasks`` or none; per task ``(id, created)``.

        A task whose ``unique_key`` is held by a live (pending or running)
        task is not inserted: its entry is that task's id with ``created``
        False (also for a key repeated within the batch).
        """
        ...

    def claim(
        self, request: ClaimRequest, now: float, completions: Sequence[Completion] = ()
    ) -> tuple[set[Claim], list[Task]]:
        """Record ``completions`` (possibly none), then take up to
        ``request.limit`` due pending tasks of the queues and types asked
        for (never of a paused queue), highest priority first, then
        earliest due, then lowest id: each becomes running under
        ``request.token`` with a lease of ``request.lease_seconds``, its
        attempt counted and its owner recorded. One transaction, so the
        completions and the claim commit together (a Worker's steady
        state: one commit per batch). Returns (claims of completions recorded,
        tasks claimed in claim order)."""
        ...

    def complete(self, completions: Sequence[Completion], now: float) -> set[Claim]:
        """Record successes of claims still held; returns the claims recorded."""
        ...

    def set_progress(self, items: Sequence[tuple[Claim, str]]) -> set[Claim]:
        """Store the progress (JSON text) of running tasks whose claims still
        hold; returns the claims written."""
        ...

    def fail(self, claim: Claim, failure: FailureRecord, now: float) -> bool:
        """Record a failed attempt if ``claim`` still holds: pending again
        ``failure.retry_in`` seconds from now (a retry used), or failed for
        good; and the attempt in the history. False if fenced out."""
        ...

    def release(self, claims: Sequence[Claim]) -> list[Claim]:
        """Give claims back unfinished: pending again at once, the attempt
        not counted, no retry used. Returns the claims released."""
        ...

    def renew(self, claims: Sequence[Claim], now: float, lease_seconds: float) -> set[Claim]:
        """Extend the leases of claims still held to ``now + lease_seconds``;
        returns the claims renewed."""
        ...

    def rescue(self, rescues: Sequence[Rescue], now: float) -> list[tuple[int, str]]:
        """Give up lost claims as decided: each applies only if the task is
        still running under that claim with the lease the rescuer saw (a
        renewal since then wins). Returns ``(id, new status)`` of those
        applied."""
        ...

    def cancel(self, task_id: int, now: float) -> bool:
        """Pending or running -> cancelled; False if already finished.
        Raises TaskNotFoundError for an unknown id."""
        ...

    def retry(self, task_id: int, now: float) -> bool:
        """Failed or cancelled -> pending with a fresh retry budget; False
        otherwise. Raises TaskNotFoundError for an unknown id and
        DuplicateTaskError when a live task holds its unique_key."""
        ...

    def declare_schedules(self, schedules: Sequence[ScheduleRow], now: float) -> None:
        """Record the schedules a Worker carries (new ones, or their new
        definition), declared now."""
        ...

    def last_slot(self, name: str) -> float | None:
        """The last slot schedule ``name`` fired, or None."""
        ...

    def fire_slots(
        self, name: str, slots: Sequence[tuple[float, NewTask]], next_fire: float, now: float
    ) -> list[tuple[float, int]]:
        """Enqueue the task of each slot not fired yet, in one transaction
        with a unique record of the slot: a slot at or before the last one
        fired, or fired already by anyone, makes nothing. Returns (slot,
        task id) of those fired."""
        ...

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule the file knows, by name."""
        ...

    def worker_seen(self, worker: WorkerInfo, now: float) -> None:
        """Record a Worker's report of itself (start, heartbeat, stop)."""
        ...

    def workers(self, since: float) -> list[WorkerInfo]:
        """Workers that reported since ``since``, most recently seen first
        (older ones are forgotten)."""
        ...

    def throughput(self, since: float, bucket: float) -> list[tuple[float, str, int]]:
        """(bucket start, "completed" or "failed", count) of tasks finished
        since ``since``, per ``bucket`` seconds."""
        ...

    def oldest_due(self, now: float) -> float | None:
        """The due time (run_at) of the longest-waiting due pending task."""
        ...

    def pause(self, queue_name: str, now: float) -> None:
        """Claim nothing from ``queue_name`` until resumed (it need not exist yet)."""
        ...

    def resume(self, queue_name: str) -> bool:
        """Undo :meth:`pause`; False if it was not paused."""
        ...

    def paused(self) -> set[str]:
        """The paused queues."""
        ...

    def retry_many(self, task_ids: Sequence[int], now: float) -> list[int]:
        """retry() for many tasks in one transaction; returns the ids put back
        (not those unknown, not failed or cancelled, or whose unique_key a
        live task holds)."""
        ...

    def purge(self, statuses: Sequence[str], before: float, limit: int) -> int:
        """Delete up to ``limit`` finished tasks of these statuses that
        finished before ``before``; returns how many (fewer than ``limit``:
        none are left)."""
        ...

    # -- reads ---------------------------------------------------------------
    def get(self, task_id: int) -> Task | None: ...

    def attempts(self, task_id: int) -> list[AttemptRecord]:
        """The attempts recorded for a task (failed, lost, cancelled), first
        first; the one that succeeded or runs now is the task row itself."""
        ...

    def get_many(self, task_ids: Sequence[int]) -> list[Task]:
        """The tasks with these ids that exist, in the order asked."""
        ...

    def finished_among(self, task_ids: Sequence[int]) -> tuple[list[Task], list[int]]:
        """Of these ids: the tasks finished (completed, failed, cancelled),
        and the ids that no longer exist. One read: how waiters are woken."""
        ...

    def list_tasks(
        self,
        where: TaskFilter,
        limit: int,
        after: Task | Position | None = None,
        scan: int | None = None,
    ) -> Listing:
        """Up to ``limit`` tasks matching ``where``, in listing order: most
        recently finished first for a finished status (:data:`FINISHED`),
        newest first otherwise; starting after ``after`` (the last task of
        the previous page, or where a bounded scan stopped) in that order.
        One read returning at most ``limit`` rows: callers page through
        long listings.

        ``scan`` bounds the work of a filter the backend answers by walking
        rows that may not match (one task type, alone or with a finished
        status, on both backends: no index leads with the task type; a
        queue, or a status read by walking the table): it then examines
        only the next ``scan`` rows of its walk after ``after``, matching or
        not, and returns the matches among them. If those did not fill the
        page and rows remain beyond them, ``searched`` says which rows were
        examined (``examined`` is ``scan``) and the caller resumes after
        ``searched``'s last row (a :class:`Position`). A filter read from an
        index of its own (or no filter: every row read matches) is not
        bounded. Without ``scan``, a listing reads as far as it must to
        fill the page. See storage/scan.py for why and how."""
        ...

    def list_by_status(self, status: str, limit: int) -> list[Task]:
        """All of :meth:`list_tasks` for one status, up to ``limit`` tasks,
        read in pages (a huge listing never holds the storage for long)."""
        ...

    def counts(self, queue_name: str | None = None) -> dict[str, int]:
        """Tasks per status, of one queue or all (statuses with none may be
        missing). Cheap at any table size."""
        ...

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Tasks per status of every queue that has (or had) tasks. Cheap."""
        ...

    def next_due(self, now: float) -> float | None:
        """When the earliest not-yet-due pending task becomes due."""
        ...

    def due_by_type(self, now: float, queues: Sequence[str] | None = None) -> dict[str, int]:
        """Due pending tasks per task type, in these queues (None: all)."""
        ...

    def expired(self, now: float, *, dead_owners: Sequence[Owner] = ()) -> list[Task]:
        """Running tasks whose lease expired before ``now``, or whose owner
        is one of ``dead_owners``: the candidates for rescue."""
        ...

    def claim_owners(self, host: str) -> list[int]:
        """PIDs on ``host`` holding claims (the rescuer checks which are gone)."""
        ...

    # -- capabilities and lifecycle ------------------------------------------
    def check_writable(self) -> None:
        """Raise ReadOnlyDatabaseError (or another StorageError) if the
        storage cannot take writes now; write nothing."""
        ...

    def change_feed(self) -> ChangeFeed:
        """A new cross-process change feed (see :class:`ChangeFeed`)."""
        ...

    def close(self) -> None:
        """Finish what is queued and release the database; later calls
        raise QueueClosedError."""
        ...


# -- operations without waiting (the asyncio seam) ---------------------------------

#: What an operation started with :func:`submit` hands back once it is done:
#: calling it returns what the blocking operation would have returned, or
#: raises what it would have raised. Call it where the answer is awaited
#: (an event loop's thread), not where it arrives: turning rows into Tasks
#: is work the storage's own thread should not do.
Outcome = Callable[[], Any]


class SubmitsOperations(Protocol):
    """Optional: a backend that can start an operation and answer later by
    itself. Backends without it get :func:`submit_in_thread`."""

    def submit(
        self, operation: str, args: tuple[Any, ...], on_done: Callable[[Outcome], None]
    ) -> None:
        """Start ``operation`` (the name of a :class:`Storage` method) with
        ``args`` and return at once; call ``on_done(outcome)`` exactly once
        when it is done (committed, or failed), from any thread. ``on_done``
        is quick and never blocks. If this raises (QueueClosedError...),
        nothing was started and ``on_done`` is never called."""
        ...


def submit(
    storage: Storage, operation: str, args: tuple[Any, ...], on_done: Callable[[Outcome], None]
) -> None:
    """Start ``storage.<operation>(*args)`` without waiting for it; see
    :meth:`SubmitsOperations.submit`. The backend's own way if it has one,
    else :func:`submit_in_thread`."""
    native = getattr(storage, "submit", None)
    if native is not None:
        native(operation, args, on_done)
    else:
        submit_in_thread(storage, operation, args, on_done)


# A few threads shared by every backend without a native submit: each runs
# one blocking operation at a time, for whoever awaits it.
_POOL_THREADS = 4
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def submit_in_thread(
    storage: object, operation: str, args: tuple[Any, ...], on_done: Callable[[Outcome], None]
) -> None:
    """The default :func:`submit`: run the blocking operation on a small
    shared thread pool (4 threads), then call ``on_done`` from there."""
    method = getattr(storage, operation)

    def run() -> None:
        try:
            result = method(*args)
        except BaseException as exc:
            error = exc
            on_done(lambda: _raise(error))
        else:
            on_done(lambda: result)

    _thread_pool().submit(run)


def _raise(error: BaseException) -> Any:
    raise error


def _forget_pool() -> None:
    # In a child after fork(): the pool's threads and its lock's holder
    # stayed in the parent.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = concurrent.futures.ThreadPoolExecutor(
                _POOL_THREADS, thread_name_prefix="task_queue-storage"
            )
            _pool_pid = os.getpid()
        return _pool


#: Rows per read of a long listing: a listing of a million tasks must not
#: hold the SQLite engine thread (every caller's, the heartbeats' included)
#: or a pooled PostgreSQL connection for seconds.
LIST_PAGE = 500


def list_in_pages(storage: Storage, status: str, limit: int) -> list[Task]:
    """``list_by_status`` for any backend: up to ``limit`` tasks of
    ``status`` in listing order, read :data:`LIST_PAGE` rows at a time
    through :meth:`Storage.list_tasks` (unbounded: every match is found)."""
    where = TaskFilter(status=status)
    tasks: list[Task] = []
    while len(tasks) < limit:
        want = min(LIST_PAGE, limit - len(tasks))
        page = storage.list_tasks(where, want, tasks[-1] if tasks else None).tasks
        tasks.extend(page)
        if len(page) < want:
            break
    return tasks
