"""TaskQueue: the facade applications call.

It validates and encodes arguments (:mod:`.spec`, :mod:`.payload`), decides
state transitions (:mod:`.retry`), and has the storage record them; it wakes
in-process listeners (:mod:`.notify`) and emits events after each commit
(:mod:`.events`). Claims taken for callers that answer with a bare id are
kept (and kept alive) by :mod:`.claims`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import os
import secrets
import socket
import sqlite3
import sys
import traceback as tb
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import aio
from .checks import (
    check_queue_name,
    check_queue_names,
    check_text,
    is_non_negative,
    is_positive,
)
from .claims import ClaimBook
from .clock import SYSTEM_CLOCK, Clock
from .context import current_task
from .errors import (
    StorageError,
    TaskCancelled,
    TaskFailedError,
    TaskNotClaimedError,
    TaskNotFoundError,
)
from .events import Event, EventKind, Hook, Hooks, Middleware
from .interrupted import attach_task_ids, note_nothing_handed_over
from .limits import Limits
from .logfields import task_fields, why_not_held
from .maintenance import Rescuer, RescueService
from .notify import Listeners, Wakeable
from .owner import host_id
from .payload import DEFAULT_MAX_BYTES, encode
from .progress import make_progress
from .retry import RetryPolicy, decide
from .spec import BatchRef, TaskSpec, check_task_type
from .storage.base import (
    FINISHED,
    ChangeFeed,
    ClaimRequest,
    Completion,
    EnqueuesOnConnection,
    FailureRecord,
    NewTask,
    Owner,
    Position,
    ScheduleRow,
    Storage,
    TaskFilter,
)
from .storage.sqlite import SqliteStorage
from .task import (
    AttemptRecord,
    Claim,
    ScheduleInfo,
    Task,
    TaskPage,
    TaskPriority,
    TaskStatus,
    WorkerInfo,
)
from .waiting import Waiters

if TYPE_CHECKING:
    from .periodic import Schedule

LOGGER = logging.getLogger(__name__)

TaskRef = int | Task
# SQLite integers are 64-bit; a bigger LIMIT would overflow in the driver.
_MAX_LIMIT = 2**31 - 1
# purge() deletes in transactions of this many rows (see purge()).
_PURGE_CHUNK = 1000


class TaskQueue:
    """A durable task queue, shared by threads and processes.

    ``enqueue()`` returns only once the task is committed (with the default
    ``synchronous="FULL"``, once it is on disk). Delivery is at least once:
    a task whose worker dies mid-way runs again after its lease expires, so
    handlers must be idempotent. Thread-safe: share one object between the
    threads of a process. A context manager (``with TaskQueue(...) as q:``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "taskqueue.db",
        *,
        lease_seconds: float = 30.0,
        synchronous: str | None = None,
        busy_timeout: float | None = None,
        max_batch: int | None = None,
        shared_file: bool | None = None,
        retry_policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        rescue_interval: float = 1.0,
        storage: Storage | None = None,
        hooks: Iterable[Hook | Middleware] = (),
    ) -> None:
        """Open (creating if needed, mode 0600) the queue at ``path``.

        path: a SQLite file, or a PostgreSQL URI (``postgresql://...`` or
            ``postgres://...``): then the queue is a
            :class:`~task_queue.storage.postgres.PostgresStorage` (the
            SQLite options are refused) and, unless ``clock`` is given,
            every "now" is the database server's (its ``server_clock()``).

        lease_seconds: how long a claim lasts without renewal; a crashed
            worker's task is rescued this long after its last renewal.
        synchronous, busy_timeout, max_batch: options of the SQLite storage
            (see :class:`~task_queue.storage.sqlite.SqliteStorage`):
            "FULL" (default) makes every acknowledged write survive power
            loss, "NORMAL" only application crashes; seconds to wait for
            another process's write lock (default 30) before
            DatabaseBusyError; most callers per group commit (default 500).
        shared_file: SQLite: the file may be the application's own database
            (its tables stay, the queue's are added beside them): for
            ``enqueue(connection=...)`` in the application's transactions.
        retry_policy: backoff between retries (default ``RetryPolicy()``).
        clock: the time source; a ``ManualClock`` in tests.
        max_payload_bytes: largest encoded payload or result (default 8 MiB).
        rescue_interval: ``dequeue()``/``claim()`` rescue expired leases at
            most this often (a Worker rescues on its own schedule).
        storage: another backend implementing
            :class:`~task_queue.storage.base.Storage` (then ``path`` and the
            SQLite options are not used).
        hooks: called with every :class:`~task_queue.events.Event`.
        """
        if not is_positive(lease_seconds):
            raise ValueError(f"lease_seconds must be a finite number > 0, got {lease_seconds!r}")
        if not is_non_negative(rescue_interval):
            raise ValueError(f"rescue_interval must be >= 0 seconds, got {rescue_interval!r}")
        self.path = os.fspath(path)
        #: Seconds a claim lasts without renewal.
        self.lease_seconds = float(lease_seconds)
        #: Backoff between retries, unless a handler has its own.
        self.retry_policy = retry_policy or RetryPolicy()
        #: The time source (UTC epoch seconds, and a monotonic clock).
        self.clock: Clock = clock or SYSTEM_CLOCK
        #: Largest encoded payload or result.
        self.max_payload_bytes = max_payload_bytes
        self.rescue_interval = float(rescue_interval)
        sqlite_options = {
            name: value
            for name, value in (
                ("synchronous", synchronous),
                ("busy_timeout", busy_timeout),
                ("max_batch", max_batch),
                ("shared_file", shared_file),
            )
            if value is not None
        }
        if storage is not None and sqlite_options:
            raise ValueError(
                f"{', '.join(sorted(sqlite_options))}: options of the SQLite storage; "
                "with storage= given, set them on that storage"
            )
        if storage is None and is_postgres_dsn(self.path):
            if sqlite_options:
                raise ValueError(
                    f"{', '.join(sorted(sqlite_options))}: options of the SQLite storage, "
                    "not of PostgreSQL; for PostgreSQL's (pool_size, schema...) pass "
                    "storage=PostgresStorage(dsn, ...)"
                )
            from .storage.postgres import PostgresStorage

            storage = PostgresStorage(self.path)
        #: The backend (:class:`~task_queue.storage.base.Storage`).
        self.storage: Storage = storage or SqliteStorage(self.path, **sqlite_options)  # type: ignore[arg-type]
        if clock is None:
            # A backend whose clock is the database server's (PostgreSQL:
            # machines' clocks differ, the server's is the one shared).
            server_clock = getattr(self.storage, "server_clock", None)
            if server_clock is not None:
                self.clock = server_clock()
        #: Observers of every event (:meth:`add_hook`).
        self.hooks = Hooks()
        for hook in hooks:
            self.hooks.add(hook)
        self._rescuer = Rescuer(self)
        # Bumped by pause(): this process's Workers compare it to give back
        # what they prefetched from a queue paused here (other processes'
        # pauses reach them through the change feed).
        self._pauses_made = 0
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._owner = Owner(host_id(), self._pid)
        self._listeners = Listeners()
        self._book = ClaimBook(self._renew_claims, self.lease_seconds / 3)
        self._rescue_service = RescueService(self, self.rescue_interval)
        self._waiters = Waiters(self)
        self._next_rescue = -math.inf  # monotonic
        self._default_worker_id = f"{socket.gethostname()}:{self._pid}"

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # A child after fork(): the parent's claims, listeners and
            # renewer are the parent's. Start clean (the storage opens its
            # own connection on first use).
            self._book.after_fork()
            self._init_process_state()

    # -- enqueue -------------------------------------------------------------
    def enqueue(
        self,
        name: str,
        task_type: str,
        payload: Any = None,
        priority: TaskPriority | int | str = TaskPriority.NORMAL,
        scheduled_at: dt.datetime | float | None = None,
        max_retries: int = 3,
        *,
        delay: float | dt.timedelta | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        queue_name: str = "default",
        depends_on: Sequence[int | Task] = (),
        concurrency_key: str | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> int:
        """Add a task; return its id once it is durably stored.

        payload: JSON data for the handler (PayloadError if it is not
            plain JSON or larger than ``max_payload_bytes``).
        priority: a TaskPriority, its int value or its name.
        scheduled_at: when to run, a datetime (naive = local time) or epoch
            seconds; or ``delay``: seconds or a timedelta from now.
        max_retries: retries after the first attempt.
        timeout: seconds an attempt may run.
        unique_key: while a task with this key is pending or running, its
            id is returned and nothing is added.
        queue_name: the named queue (1-100 letters, digits, ``-_.:``);
            Workers serve some queues or all.
        depends_on: ids (or Tasks) of tasks that must complete first: until
            then it is ``waiting``; if one fails for good or is cancelled,
            so is this one (TaskNotFoundError for an unknown id).
        concurrency_key: with a handler's ``concurrency_limit=N``, at most
            N tasks of its type with this key run at once.
        connection: the application's own ``sqlite3.Connection`` to the
            queue's file, with a transaction open: the task is inserted in
            that transaction and exists only if and when the caller commits
            it (gone on rollback; the outbox pattern). The id is returned at
            once, before that commit; workers notice the commit within their
            poll interval, and no ``enqueued`` event is emitted (the commit
            is the caller's). UnusableConnectionError for a connection with
            no transaction open, to another file, or whose transaction began
            before the queue's schema was created.

        Nothing is written when an argument is refused.
        """
        handed = [False]  # see _store
        try:
            spec = _one_spec(
                name, task_type, payload, priority, scheduled_at, max_retries, delay, timeout,
                unique_key, queue_name, depends_on, concurrency_key,
            )  # fmt: skip
            return self._store([spec], many=False, connection=connection, handed=handed)[0]
        except BaseException as exc:
            if not handed[0]:
                note_nothing_handed_over(exc)
            raise

    def enqueue_many(
        self,
        tasks: Iterable[Mapping[str, Any]],
        *,
        connection: sqlite3.Connection | None = None,
    ) -> list[int]:
        """Add many tasks in one transaction: all of them, or none (on any error).

        Each item is a mapping of :meth:`enqueue`'s arguments by name; the
        ids come back in the same order. A task may depend on an earlier
        one of the same batch: ``"depends_on": [BatchRef(0)]`` (a pipeline,
        or a fan-in, in one call). ``connection``: insert them in the
        caller's open transaction instead, as :meth:`enqueue` does.
        """
        handed = [False]  # see _store
        try:
            specs = _many_specs(tasks)
            if not specs:
                return []
            return self._store(specs, many=True, connection=connection, handed=handed)
        except BaseException as exc:
            if not handed[0]:
                note_nothing_handed_over(exc)
            raise

    def _store(
        self,
        specs: Sequence[TaskSpec],
        *,
        many: bool,
        connection: sqlite3.Connection | None,
        handed: list[bool],
    ) -> list[int]:
        """Store ``specs`` through the middleware; the ids.

        ``handed[0]`` becomes True as the rows go to the storage: from then
        on an interrupt is noted with what the storage did (``task_ids``);
        before it, the public call notes that nothing was written. (Ctrl-C
        lands between any two bytecodes, also in the checks and encoding
        before the write; only one that lands on the call's very first
        instruction, before its ``try``, carries nothing.)
        """
        stored: list[int] | None = None

        def enqueue() -> list[int]:
            nonlocal stored
            stored = self._store_now(specs, many=many, connection=connection, handed=handed)
            return stored

        try:
            # Middleware may wrap the whole call (a tracing span around it);
            # the enqueue itself runs exactly once either way.
            self.hooks.around_enqueue(specs, enqueue)
        except BaseException as exc:
            if stored is not None and not hasattr(exc, "task_ids"):
                attach_task_ids(exc, stored)  # interrupted in a middleware, after the commit
            raise
        if stored is None:  # pragma: no cover - Hooks.around_enqueue always enqueues
            raise RuntimeError("the enqueue did not run")
        return stored

    def _store_now(
        self,
        specs: Sequence[TaskSpec],
        *,
        many: bool,
        connection: sqlite3.Connection | None,
        handed: list[bool],
    ) -> list[int]:
        rows, now, final = self._encode(specs, many=many)
        if connection is not None:
            # An interrupt from here on is the application's to settle: the
            # rows may be in its open transaction, which it rolls back.
            handed[0] = True
            return self._store_on(connection, rows, now)
        stored: list[tuple[int, bool]] | None = None
        try:
            handed[0] = True
            # Nothing between the call and the assignment: an interrupt
            # (Ctrl-C) either lands in the storage's wait, which then says
            # what committed, or after ``stored`` holds the ids.
            stored = self.storage.enqueue(rows, now)
            return self._stored(stored, now, final)
        except BaseException as exc:
            attach_task_ids(exc, None if stored is None else [i for i, _ in stored])
            raise

    def _encode(
        self, specs: Sequence[TaskSpec], *, many: bool
    ) -> tuple[list[NewTask], float, list[TaskSpec]]:
        """The rows to insert (middleware metadata added), the time they are
        enqueued at and the specs as encoded; raises for a refused argument."""
        now = self.clock.time()
        rows = []
        final: list[TaskSpec] = []
        for index, spec in enumerate(specs):
            extra = self.hooks.enqueue_meta(spec)
            if extra:
                spec = dataclasses.replace(spec, meta={**(spec.meta or {}), **extra})
            try:
                rows.append(spec.encode(now, self.max_payload_bytes))
            except (TypeError, ValueError) as exc:
                if not many:
                    raise
                raise type(exc)(f"task #{index}: {exc}") from exc
            final.append(spec)
        self._check_fork()
        return rows, now, final

    def _stored(
        self, stored: list[tuple[int, bool]], now: float, specs: Sequence[TaskSpec]
    ) -> list[int]:
        """After an enqueue committed: wake workers, emit events; the ids."""
        self._listeners.notify()
        self.hooks.emit_lazy(
            lambda: [
                Event(EventKind.ENQUEUED, i, at=now, spec=spec)
                for spec, (i, new) in zip(specs, stored, strict=False)
                if new
            ]
        )
        return [task_id for task_id, _ in stored]

    def _store_on(
        self, connection: sqlite3.Connection, rows: Sequence[NewTask], now: float
    ) -> list[int]:
        storage = self.storage
        if not isinstance(storage, EnqueuesOnConnection):
            raise TypeError(
                f"{type(storage).__name__} cannot enqueue through the application's connection"
            )
        # No wake-up and no event: nothing is committed yet, and the commit
        # is the caller's. Workers see it through the change feed.
        return [task_id for task_id, _ in storage.enqueue_on(connection, rows, now)]

    # -- claim -----------------------------------------------------------------
    def dequeue(
        self,
        worker_id: str | None = None,
        task_types: Sequence[str] | None = None,
        *,
        queues: Sequence[str] | None = None,
    ) -> Task | None:
        """Claim the highest-priority due task (FIFO within a priority), or None.

        task_types, queues: only tasks of these types, from these queues
        (None: any). Paused queues give nothing. The task is marked running
        with a lease of ``lease_seconds``, kept alive by this object while
        it is held; finish it with complete_task(), fail_task() or
        release_task().
        """
        tasks = self.claim(1, worker_id=worker_id, task_types=task_types, queues=queues)
        return tasks[0] if tasks else None

    def claim(
        self,
        limit: int,
        *,
        worker_id: str | None = None,
        task_types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
        remember: bool = True,
    ) -> list[Task]:
        """Claim up to ``limit`` due tasks in one statement (see dequeue()).

        Rescues expired leases first, at most every ``rescue_interval``.
        With ``remember`` (the default) this object keeps each claim and
        renews its lease until it is completed, failed or released, so a
        bare id works with complete_task() and a long task is not rescued
        while its caller lives. ``remember=False`` keeps nothing: the caller
        holds the Task (it carries its claim token) and renews it with
        :meth:`renew` before ``lease_seconds`` pass.
        """
        task_types = _claim_args(limit, worker_id, task_types)
        queues = check_queue_names(queues)
        self._check_fork()
        mono = self.clock.monotonic()
        if mono >= self._next_rescue:
            self._next_rescue = self._rescue_service.run_once(mono)
        tasks = self.complete_and_claim(
            (), limit, worker_id=worker_id, task_types=task_types, queues=queues
        )
        if tasks and remember:
            self._book.remember(tasks)
        return tasks

    def complete_and_claim(
        self,
        completions: Sequence[tuple[Task, str | None]],
        limit: int,
        *,
        worker_id: str | None = None,
        task_types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
        limits: Mapping[str, Limits] | None = None,
        durations: Mapping[int, float] | None = None,
    ) -> list[Task]:
        """Record ``completions`` and claim up to ``limit`` tasks (of these
        types, from these queues; None: any), in one transaction: what a
        Worker's dispatcher calls (one commit per batch). ``limits``: the
        rate and concurrency limits of some of ``task_types`` (from their
        handlers), applied in the claim across every process.

        completions: (claimed Task, result as JSON text from
            :func:`task_queue.payload.encode`) pairs; each is recorded only
            if its claim still holds (a fenced-out one is logged and
            skipped). Nothing is remembered and nothing is rescued: the
            caller renews its claims (:meth:`renew`) and runs its own rescue.
        durations: seconds each handler ran, by task id, for the
            ``duration`` of the completed events.
        """
        task_types = _claim_args(limit, worker_id, task_types)
        queues = check_queue_names(queues)
        if task_types is not None and not task_types and not completions:
            return []
        self._check_fork()
        now = self.clock.time()
        request = ClaimRequest(
            worker_id=worker_id or self._default_worker_id,
            owner=self._owner,
            limit=limit,
            task_types=task_types,
            queues=queues,
            limits=limits or None,
            token=secrets.randbits(63),
            lease_seconds=self.lease_seconds,
        )
        done = [Completion(task.claim, result) for task, result in completions]
        recorded, tasks = self.storage.claim(request, now, done)
        if completions:
            self._completed(completions, recorded, now, durations)
        self.hooks.emit_lazy(
            lambda: [
                Event(EventKind.CLAIMED, t.id, task=t, worker=request.worker_id, at=now)
                for t in tasks
            ]
        )
        return tasks

    def renew(self, tasks: Task | Iterable[Task | Claim]) -> set[Claim]:
        """Extend the leases of claims still held to ``lease_seconds`` from
        now; returns the claims renewed (``task.claim in renewed``; one
        missing is lost: cancelled, or rescued after it expired). Claims
        taken with dequeue() are renewed by this object already."""
        items = [tasks] if isinstance(tasks, Task) else list(tasks)
        claims = [t.claim if isinstance(t, Task) else Claim(*t) for t in items]
        self._check_fork()
        return self._renew_claims(claims)

    def _renew_claims(self, claims: list[Claim]) -> set[Claim]:
        if not claims:
            return set()
        return self.storage.renew(claims, self.clock.time(), self.lease_seconds)

    def held(self) -> list[Task]:
        """The claims taken with dequeue()/claim() that this object still
        holds (and renews), oldest first."""
        self._check_fork()
        return self._book.held()

    # -- outcomes (fenced) -----------------------------------------------------
    def complete_task(self, task: TaskRef, result: Any = None, *, token: int | None = None) -> bool:
        """Record success. Returns False, recording nothing, if the caller no
        longer holds the task (its lease expired and it was rescued, it was
        cancelled, or it was already completed, failed or released).

        ``task`` is the Task from dequeue() (it carries its claim token), or
        its id for a claim this object took. Raises TaskNotFoundError for an
        unknown id, TaskNotClaimedError for a task this object never
        claimed, PayloadError for a result that is not plain JSON.
        """
        encoded = encode(result, what="result", max_bytes=self.max_payload_bytes)
        claimed = self._claimed(task, token)
        if claimed is None:
            return False
        with self._book.settling(claimed.claim):
            recorded = self.complete_many([(claimed, encoded)])
        if claimed.claim in recorded:
            return True
        if self.storage.get(claimed.id) is None:
            raise TaskNotFoundError(f"no task with id {claimed.id}")
        return False

    def complete_many(
        self,
        completions: Sequence[tuple[Task, str | None]],
        *,
        durations: Mapping[int, float] | None = None,
    ) -> set[Claim]:
        """Record successes of claimed Tasks in one transaction; returns the
        claims recorded (the others were no longer held). Results are JSON
        text from :func:`task_queue.payload.encode`: a Worker's recorder
        encodes in the handler's thread and writes many at once.
        ``durations``: seconds each handler ran, by task id, for the
        ``duration`` of the completed events."""
        if not completions:
            return set()
        self._check_fork()
        now = self.clock.time()
        done = [Completion(task.claim, result) for task, result in completions]
        recorded = self.storage.complete(done, now)
        self._completed(completions, recorded, now, durations)
        return recorded

    def _completed(
        self,
        completions: Sequence[tuple[Task, str | None]],
        recorded: set[Claim],
        now: float,
        durations: Mapping[int, float] | None = None,
    ) -> None:
        fenced = [task for task, _ in completions if task.claim not in recorded]
        if fenced:
            self._log_not_held(fenced, "completion")
        if recorded:
            self._waiters.nudge()
            # A completion may have released tasks that waited for it (their
            # dependencies): wake this process's Workers as an enqueue does,
            # or a pipeline's next step waited for the next poll (1 s a hop).
            self._listeners.notify()
        self.hooks.emit_lazy(
            lambda: [
                Event(
                    EventKind.COMPLETED,
                    task.id,
                    task=task,
                    at=now,
                    status="completed",
                    duration=None if durations is None else durations.get(task.id),
                )
                for task, _ in completions
                if task.claim in recorded
            ]
        )

    def report_progress(
        self,
        task: Task,
        current: float,
        total: float | None = None,
        message: str | None = None,
    ) -> bool:
        """Record how far a task you hold is (a hand-driven loop's
        ``current_task().progress()``); written at once. False if the claim
        is no longer held."""
        value = make_progress(current, total, message, self.clock.time())
        return task.claim in self.record_progress([(task, value)])

    def record_progress(self, reports: Sequence[tuple[Task, dict[str, Any]]]) -> set[Claim]:
        """Store progress reports (from :func:`task_queue.progress.make_progress`)
        of claimed Tasks in one statement; returns the claims written (a
        stale holder's report is not). What a Worker's recorder calls."""
        if not reports:
            return set()
        self._check_fork()
        items = [
            (task.claim, encode(value, what="progress", max_bytes=self.max_payload_bytes) or "")
            for task, value in reports
        ]
        return self.storage.set_progress(items)

    def fail_task(
        self,
        task: TaskRef,
        error: str | BaseException,
        *,
        token: int | None = None,
        retry_policy: RetryPolicy | None = None,
        max_retries: int | None = None,
    ) -> bool:
        """Record a failed attempt: retried after a backoff while retries
        remain, otherwise failed (the dead-letter set). The error text and,
        when there is one, the traceback are kept on the task (a string
        ``error`` passed inside ``except`` keeps the traceback being
        handled). Returns False if the caller no longer holds the task.
        """
        claimed = self._claimed(task, token)
        if claimed is None:
            return False
        failure = self.failure(claimed, error, retry_policy=retry_policy, max_retries=max_retries)
        with self._book.settling(claimed.claim):
            done = self.record_failure(claimed, failure)
        if not done and self.storage.get(claimed.id) is None:
            raise TaskNotFoundError(f"no task with id {claimed.id}")
        return done

    def failure(
        self,
        task: Task,
        error: str | BaseException,
        *,
        retry_policy: RetryPolicy | None = None,
        max_retries: int | None = None,
    ) -> FailureRecord:
        """Decide what a failed attempt of the claimed ``task`` leads to
        (writes nothing): the error text and traceback, and when it runs
        again, from ``retry_policy`` (default: the queue's) and
        ``max_retries`` (default: the task's own). Pass the result to
        :meth:`record_failure`."""
        if isinstance(error, BaseException):
            message = f"{type(error).__name__}: {_safe_str(error)}"
            trace: str | None = "".join(
                tb.format_exception(type(error), error, error.__traceback__)
            )
            cause: BaseException | None = error
        elif isinstance(error, str):
            message = error
            # Inside ``except``, the traceback being handled is kept.
            cause = sys.exc_info()[1]
            trace = (
                "".join(tb.format_exception(type(cause), cause, cause.__traceback__))
                if cause is not None
                else None
            )
        else:
            raise TypeError(f"error must be a string or an exception, got {type(error).__name__}")
        policy = retry_policy or self.retry_policy
        retry_in = decide(task, policy, max_retries)
        error_class = None if cause is None else _class_path(type(cause))
        return FailureRecord(message, trace, retry_in, error_class)

    def record_failure(
        self, task: Task, failure: FailureRecord, *, duration: float | None = None
    ) -> bool:
        """Record a failed attempt as decided by :meth:`failure`, if the
        claim still holds; False (nothing written) if fenced out.
        ``duration``: seconds the handler ran, for the event's ``duration``."""
        self._check_fork()
        now = self.clock.time()
        done = self.storage.fail(task.claim, failure, now)
        if not done:
            self._log_not_held([task], "failure")
            return False
        self._waiters.nudge()
        if failure.retry_in is not None:
            self._listeners.notify()  # the retry may be due at once
            event = Event(
                EventKind.RETRY_SCHEDULED, task.id, task=task, at=now, error=failure.error,
                retry_at=now + failure.retry_in, status="pending", duration=duration,
                error_class=failure.error_class,
            )  # fmt: skip
        else:
            event = Event(
                EventKind.DEAD_LETTERED, task.id, task=task, at=now, error=failure.error,
                status="failed", duration=duration, error_class=failure.error_class,
            )  # fmt: skip
        if self.hooks:
            self.hooks.emit(event)
        return True

    def _log_not_held(self, tasks: Sequence[Task], what: str) -> None:
        """A fenced-out write: one line per task, with why (one read; a
        failing read only makes the reason vaguer, the write stands)."""
        try:
            found = {t.id: t for t in self.storage.get_many([t.id for t in tasks])}
        except StorageError:
            found = None
        for task in tasks:
            why = "unknown" if found is None else why_not_held(task, found.get(task.id))
            LOGGER.warning(
                "task %d: %s not recorded, the claim is no longer held (%s)", task.id, what, why,
                extra=task_fields(task),
            )  # fmt: skip

    def release_task(self, task: TaskRef, *, token: int | None = None) -> bool:
        """Give a claimed task back to pending unfinished, without using a
        retry. False if the caller no longer holds it."""
        claimed = self._claimed(task, token)
        if claimed is None:
            return False
        with self._book.settling(claimed.claim):
            released = bool(self.release_tasks([claimed]))
        return released

    def release_tasks(self, tasks: Iterable[Task]) -> list[Claim]:
        """Give many claimed Tasks back to pending, without using a retry;
        returns the claims released (those still held)."""
        items = list(tasks)
        if not items:
            return []
        self._check_fork()
        released = self.storage.release([t.claim for t in items])
        if released:
            self._listeners.notify()
            now = self.clock.time()
            done = set(released)
            self.hooks.emit_lazy(
                lambda: [
                    Event(EventKind.RELEASED, t.id, task=t, at=now, status="pending")
                    for t in items
                    if t.claim in done
                ]
            )
        return released

    def _claimed(self, task: TaskRef, token: int | None) -> Task | None:
        """The claimed Task a caller means, or None when this object gave
        its claim up already (the caller no longer holds it)."""
        self._check_fork()
        if isinstance(task, Task):
            if token is not None and token != task.claim_token:
                return _with_token(task, token)
            return task
        if not isinstance(task, int) or isinstance(task, bool):
            raise TypeError(f"task must be a Task or an int id, got {type(task).__name__}")
        remembered = self._book.lookup(task)
        if remembered is not None and (token is None or token == remembered.claim_token):
            return remembered
        if token is None and self._book.settled(task):
            LOGGER.warning(
                "task %d: this TaskQueue no longer holds its claim", task, extra={"task_id": task}
            )
            return None
        stored = self.storage.get(task)
        if stored is None:
            raise TaskNotFoundError(f"no task with id {task}")
        if token is not None:
            return _with_token(stored, token)
        ctx = current_task()
        if ctx is not None and ctx.task.id == task:
            raise TaskNotClaimedError(
                f"task {task} is held by the Worker running this handler: return its "
                "result (or raise) instead of calling complete_task()/fail_task()"
            )
        raise TaskNotClaimedError(
            f"task {task} was not claimed through this TaskQueue (status {stored.status}); "
            "pass the Task returned by dequeue() (it carries the claim token)"
        )

    # -- management ------------------------------------------------------------
    def cancel_task(self, task_id: int) -> bool:
        """Cancel a pending or running task; False if it already finished.

        A running task's handler sees the cancellation through
        ``current_task().cancelled`` at its worker's next heartbeat, and its
        late result is not recorded.
        """
        task_id = _task_id(task_id)
        self._check_fork()
        now = self.clock.time()
        done = self.storage.cancel(task_id, now)
        if done:
            self._waiters.nudge()
        if done and self.hooks:
            self.hooks.emit(Event(EventKind.CANCELLED, task_id, at=now, status="cancelled"))
        return done

    def retry_task(self, task_id: int) -> bool:
        """Put a failed or cancelled task back to pending with a fresh retry budget."""
        self._check_fork()
        done = self.storage.retry(_task_id(task_id), self.clock.time())
        if done:
            self._listeners.notify()
        return done

    def retry_failed(
        self,
        *,
        task_type: str | None = None,
        queue_name: str | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """retry_task() for every failed task (of one type, in one queue, when
        given): the dead-letter set back to pending. Returns how many were
        put back; one whose unique_key a live task holds now is skipped.
        Like purge(), in batches of 1,000 (each atomic, safe to run again);
        ``on_progress`` is called with the count so far after each."""
        if task_type is not None:
            check_task_type(task_type)
        if queue_name is not None:
            check_queue_name(queue_name)
        self._check_fork()
        where = TaskFilter(status="failed", task_type=task_type, queue_name=queue_name)
        total = 0
        after: Task | None = None
        while True:
            page = self.storage.list_tasks(where, _PURGE_CHUNK, after).tasks
            if not page:
                return total
            retried = self.storage.retry_many([t.id for t in page], self.clock.time())
            total += len(retried)
            if retried:
                self._listeners.notify()
            if on_progress is not None:
                on_progress(total)
            if len(page) < _PURGE_CHUNK:
                return total
            after = page[-1]  # the skipped ones stay failed: page past them

    def wait(self, task_id: int, timeout: float | None = None) -> Task:
        """Block until the task is finished (completed, failed for good, or
        cancelled) and return it as stored.

        Raises TimeoutError when ``timeout`` seconds pass first,
        TaskNotFoundError for an unknown (or purged) id, QueueClosedError if
        the queue is closed meanwhile. A task finished through this
        TaskQueue wakes the caller at once; one finished by another process
        within about 50 ms (the change feed), however many callers wait.
        """
        self._check_fork()
        return self._waiters.wait(_task_id(task_id), timeout)

    def result(self, task_id: int, timeout: float | None = None) -> Any:
        """Wait as :meth:`wait` does, then return the task's result.

        Raises TaskFailedError (with the error message and traceback) if it
        failed for good, TaskCancelled if it was cancelled.
        """
        return _result_of(self.wait(task_id, timeout))

    def attempts(self, task_id: int) -> list[AttemptRecord]:
        """The attempts of a task so far, first first: each failed, lost
        (its worker died) or cancelled one with its error, and then the
        one that completed or runs now."""
        task = self.get_task(task_id)
        if task is None:
            raise TaskNotFoundError(f"no task with id {task_id}")
        history = self.storage.attempts(task.id)
        if task.status in (TaskStatus.COMPLETED, TaskStatus.RUNNING) and task.attempts:
            done = task.status == TaskStatus.COMPLETED
            finished = task.completed_at if done else None
            outcome = "completed" if done else "running"
            latest = AttemptRecord(
                task.attempts, task.worker_id, task.started_at, finished, outcome
            )
            history.append(latest)
        return history

    def get_tasks(self, task_ids: Iterable[int]) -> list[Task]:
        """The tasks with these ids (those that exist), in the order asked; one read."""
        ids = [_task_id(t) for t in task_ids]
        self._check_fork()
        return self.storage.get_many(ids) if ids else []

    def get_task(self, task_id: int) -> Task | None:
        """The task with this id as stored now, or None."""
        self._check_fork()
        return self.storage.get(_task_id(task_id))

    def get_queue_stats(self, queue_name: str | None = None) -> dict[str, int]:
        """Tasks per status, of every queue or of ``queue_name``; every
        status is a key, zeros included. Cheap at any size (the counts are
        kept as tasks change)."""
        if queue_name is not None:
            check_queue_name(queue_name)
        self._check_fork()
        return _every_status(self.storage.counts(queue_name))

    def queue_stats(self) -> dict[str, dict[str, int]]:
        """Per queue, what get_queue_stats(queue) gives: every queue that has
        tasks, had some, or is paused, sorted by name. As cheap as
        get_queue_stats() (one small read)."""
        self._check_fork()
        counts = self.storage.queue_counts()
        names = sorted(set(counts) | self.storage.paused())
        return {
            name: {s.value: counts.get(name, {}).get(s.value, 0) for s in TaskStatus}
            for name in names
        }

    # -- monitoring ----------------------------------------------------------------
    def report_worker(self, worker: WorkerInfo) -> None:
        """Record a Worker's report of itself (a Worker calls this at its
        start, with each heartbeat, and at its stop)."""
        self._check_fork()
        self.storage.worker_seen(worker, self.clock.time())

    def workers(self, seen_within: float = 300.0) -> list[WorkerInfo]:
        """Workers (in any process on the file) that reported within the last
        ``seen_within`` seconds, most recently seen first: their host, pid,
        queues, last heartbeat, counts, and whether they stopped."""
        self._check_fork()
        return self.storage.workers(self.clock.time() - seen_within)

    def throughput(
        self, since: float = 3600.0, bucket: float = 60.0
    ) -> list[tuple[float, int, int]]:
        """Tasks finished over the last ``since`` seconds, per ``bucket``:
        (bucket start, completed, failed for good), oldest first, empty
        buckets included."""
        if not is_positive(since) or not is_positive(bucket):
            raise ValueError("since and bucket must be positive numbers of seconds")
        self._check_fork()
        now = self.clock.time()
        start = math.floor((now - since) / bucket) * bucket
        counts: dict[float, list[int]] = {}
        for at, status, n in self.storage.throughput(start, bucket):
            counts.setdefault(at, [0, 0])[0 if status == "completed" else 1] += n
        buckets = []
        at = start
        while at <= now:
            done, failed = counts.get(at, [0, 0])
            buckets.append((at, done, failed))
            at += bucket
        return buckets

    def oldest_due(self) -> float | None:
        """When the longest-waiting due pending task became due (None: none
        waits): ``now - oldest_due()`` is how far behind the workers are."""
        self._check_fork()
        return self.storage.oldest_due(self.clock.time())

    # -- periodic schedules ------------------------------------------------------
    def schedules(self) -> list[ScheduleInfo]:
        """Every periodic schedule the file knows (declared by a Worker that
        carries it), with its next fire time and the last slot it fired."""
        self._check_fork()
        return self.storage.schedules()

    def declare_schedules(self, schedules: Sequence[Schedule]) -> None:
        """Make schedules known to the file (a Worker does this when it
        starts, before their first slot)."""
        self._check_fork()
        now = self.clock.time()
        rows = [
            ScheduleRow(
                name=s.name or s.task_type,
                task_type=s.task_type,
                expression=s.expression,
                queue_name=s.queue_name,
                misfire=s.misfire,
                next_fire=s.next_after(now),
            )
            for s in schedules
        ]
        self.storage.declare_schedules(rows, now)

    def fire_schedule(
        self, schedule: Schedule, now: float | None = None
    ) -> list[tuple[float, int]]:
        """Enqueue the tasks of ``schedule``'s due slots (by its misfire
        policy), each exactly once however many Workers do the same at the
        same time; returns (slot, task id) of those this call fired."""
        self._check_fork()
        wall = self.clock.time() if now is None else now
        name = schedule.name or schedule.task_type
        slots = schedule.due(self.storage.last_slot(name), wall)
        if not slots:
            return []
        specs = {slot: schedule.spec(slot) for slot in slots}
        rows = [(slot, spec.encode(wall, self.max_payload_bytes)) for slot, spec in specs.items()]
        fired = self.storage.fire_slots(name, rows, schedule.next_after(wall), wall)
        if fired:
            self._listeners.notify()
            self.hooks.emit_lazy(
                lambda: [
                    Event(EventKind.ENQUEUED, task_id, at=wall, spec=specs.get(slot))
                    for slot, task_id in fired
                ]
            )
        return fired

    # -- pause and resume ------------------------------------------------------
    def pause(self, queue_name: str) -> None:
        """Claim nothing from ``queue_name`` until resume(): in every process
        on the file, within a Worker's poll interval. Enqueues still go in;
        running tasks finish. A queue nobody used yet may be paused."""
        check_queue_name(queue_name)
        self._check_fork()
        self.storage.pause(queue_name, self.clock.time())
        self._pauses_made += 1
        self._listeners.notify()  # in-process Workers drop what they prefetched from it

    def resume(self, queue_name: str) -> bool:
        """Let Workers claim from ``queue_name`` again; False if it was not paused."""
        check_queue_name(queue_name)
        self._check_fork()
        resumed = self.storage.resume(queue_name)
        if resumed:
            self._listeners.notify()
        return resumed

    def paused(self) -> frozenset[str]:
        """The paused queues."""
        self._check_fork()
        return frozenset(self.storage.paused())

    def get_tasks_by_status(self, status: TaskStatus | str, limit: int = 10) -> list[Task]:
        """Up to ``limit`` tasks with this status: pending and running ones
        newest first, finished ones most recently finished first."""
        try:
            status = TaskStatus(status)
        except ValueError:
            raise ValueError(
                f"unknown status {status!r}; expected one of {[s.value for s in TaskStatus]}"
            ) from None
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {_MAX_LIMIT}, got {limit!r}")
        self._check_fork()
        return self.storage.list_by_status(status.value, limit)

    def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        task_type: str | None = None,
        queue_name: str | None = None,
        limit: int = 50,
        after: str | None = None,
        scan: int | None = None,
    ) -> TaskPage:
        """A page of tasks, filtered by status, type and queue (None: any):
        newest first, or most recently finished first for a finished
        status. ``after`` is the ``next`` of the previous page (keyset
        pagination: each page costs the same however deep it is, and tasks
        added meanwhile do not shift it).

        ``scan`` bounds a filter the storage answers by walking the tasks
        rather than from an index of its own (a task type, alone or with a
        finished status, always: no index leads with it; a queue, or a
        status the storage does not read from its index, too): the page
        then examines at most ``scan`` tasks. If they hold fewer than
        ``limit`` matches and older tasks remain, the page has what was
        found, ``searched`` says which tasks were examined, and ``next``
        resumes the search after them. What a dashboard needs: a page of a
        rare type among a million tasks costs the bound, not a walk of the
        table."""
        chosen = None if status is None else _statuses([status])[0]
        if task_type is not None:
            check_task_type(task_type)
        if queue_name is not None:
            check_queue_name(queue_name)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValueError(f"limit must be an int from 1 to 10000, got {limit!r}")
        if scan is not None and (isinstance(scan, bool) or not isinstance(scan, int) or scan < 1):
            raise ValueError(f"scan must be an int >= 1 or None, got {scan!r}")
        where = TaskFilter(
            status=None if chosen is None else chosen.value, task_type=task_type,
            queue_name=queue_name,
        )  # fmt: skip
        self._check_fork()
        tasks, searched = self.storage.list_tasks(where, limit, _parse_cursor(after), scan)
        if len(tasks) == limit:
            return TaskPage(tasks, _cursor(tasks[-1], where))
        if searched is not None:
            stop = Position(searched.last_id, searched.last_finished_at)
            return TaskPage(tasks, _cursor(stop, where), searched)
        return TaskPage(tasks, None)

    def rescue_expired(self) -> int:
        """Return running tasks whose lease expired (or whose process on
        this host is gone) to pending, or to failed once their retries are
        used up. Workers and dequeue() do this on their own; this is for
        operators and tests. Returns how many were rescued."""
        self._check_fork()
        return self._rescuer.rescue()

    def purge(
        self,
        older_than: float | dt.timedelta,
        statuses: Iterable[TaskStatus | str] = (TaskStatus.COMPLETED, TaskStatus.CANCELLED),
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete finished tasks that finished more than ``older_than`` ago;
        returns how many.

        statuses: which finished statuses (one, or a collection); failed
            tasks (the dead-letter set) are kept unless asked for.
        on_progress: called with the number deleted so far after each batch.

        Unlike the other calls this is not one transaction: the rows go in
        batches of 1,000, each atomic, so a purge of millions never holds
        the write lock for long. A purge that fails part-way
        (DatabaseBusyError...) has deleted only tasks it was asked to, and
        is safe to run again.
        """
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        if not (is_non_negative(seconds) and math.isfinite(seconds)):
            raise ValueError(
                f"older_than must be a finite number of seconds >= 0, got {older_than!r}"
            )
        chosen = _statuses(statuses)
        live = {TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.WAITING} & set(chosen)
        if live:
            names = sorted(s.value for s in live)
            raise ValueError(f"purge only deletes finished tasks, not {names}")
        self._check_fork()
        before = self.clock.time() - seconds
        values = [s.value for s in chosen]
        total = 0
        while True:
            deleted = self.storage.purge(values, before, _PURGE_CHUNK)
            total += deleted
            if on_progress is not None:
                on_progress(total)
            if deleted < _PURGE_CHUNK:
                return total

    def check_writable(self) -> None:
        """Raise ReadOnlyDatabaseError (or another StorageError: busy past
        the timeout, closed...) if the queue cannot take writes now. Writes
        nothing; a Worker checks this before it starts."""
        self._check_fork()
        self.storage.check_writable()

    def pending_by_type(self, *, queues: Sequence[str] | None = None) -> dict[str, int]:
        """Due pending tasks per task type, in these queues (None: all): find
        types no worker handles."""
        queues = check_queue_names(queues)
        self._check_fork()
        return self.storage.due_by_type(self.clock.time(), queues)

    def next_due(self) -> float | None:
        """Epoch time when the next not-yet-due pending task becomes due."""
        self._check_fork()
        return self.storage.next_due(self.clock.time())

    # -- wake-ups ----------------------------------------------------------------
    def add_listener(self, event: Wakeable) -> None:
        """``event.set()`` is called whenever a task may have become
        available through this object (enqueue, retry, release, rescue):
        how Workers in this process wake at once."""
        self._check_fork()
        self._listeners.add(event)

    def remove_listener(self, event: Wakeable) -> None:
        """Stop setting ``event``."""
        self._listeners.remove(event)

    def wake_listeners(self) -> None:
        """Set every listener (a task may have become available), and look
        again at the tasks callers wait for."""
        self._listeners.notify()
        self._waiters.nudge()

    def change_feed(self) -> ChangeFeed:
        """A cheap cross-process "did anyone else commit?" poll (each feed
        remembers what it last saw): how Workers notice tasks enqueued by
        other processes within their poll interval."""
        self._check_fork()
        return self.storage.change_feed()

    def data_version(self) -> int:
        """SQLite only: ``PRAGMA data_version``, which changes whenever another
        connection commits. Backend-neutral code uses :meth:`change_feed`."""
        self._check_fork()
        version = getattr(self.storage, "data_version", None)
        if version is None:
            raise NotImplementedError("data_version() is a SQLite storage feature")
        return int(version())

    # -- hooks -------------------------------------------------------------------
    def add_hook(self, hook: Hook | Middleware) -> None:
        """Call ``hook(event)`` for every :class:`~task_queue.events.Event` of
        this queue and its Workers; a :class:`~task_queue.events.Middleware`
        also adds metadata at enqueue and wraps attempts (see
        :mod:`task_queue.events`)."""
        self.hooks.add(hook)

    def remove_hook(self, hook: Hook | Middleware) -> None:
        """Stop calling ``hook``."""
        self.hooks.remove(hook)

    # -- asyncio twins ---------------------------------------------------------
    # Same parameters, validation and results as the blocking methods (they
    # share the code around the storage call); the storage call itself is
    # submitted and awaited (task_queue/aio.py), so the event loop is never
    # blocked, not even while another process holds the write lock.

    async def aenqueue(
        self,
        name: str,
        task_type: str,
        payload: Any = None,
        priority: TaskPriority | int | str = TaskPriority.NORMAL,
        scheduled_at: dt.datetime | float | None = None,
        max_retries: int = 3,
        *,
        delay: float | dt.timedelta | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        queue_name: str = "default",
        depends_on: Sequence[int | Task] = (),
        concurrency_key: str | None = None,
    ) -> int:
        """:meth:`enqueue` for coroutines: the same arguments and checks (a
        refused argument raises before anything is written); returns the id
        once the task is committed, without blocking the event loop.

        Concurrent ``aenqueue`` calls share group commits, as concurrent
        threads' enqueues do. Cancelling the awaiting coroutine does not
        take the task back: it may still be enqueued (like an enqueue
        interrupted by Ctrl-C); the ``CancelledError`` carries ``task_ids``
        (the ids, if the commit had been answered, else None: unknown).
        Use ``unique_key`` to retry safely.
        """
        spec = _one_spec(
            name, task_type, payload, priority, scheduled_at, max_retries, delay, timeout,
            unique_key, queue_name, depends_on, concurrency_key,
        )  # fmt: skip
        return (await self._astore([spec], many=False))[0]

    async def aenqueue_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[int]:
        """:meth:`enqueue_many` for coroutines (all or none; see :meth:`aenqueue`)."""
        specs = _many_specs(tasks)
        return await self._astore(specs, many=True) if specs else []

    async def _astore(self, specs: Sequence[TaskSpec], *, many: bool) -> list[int]:
        # around_enqueue middleware wraps the blocking enqueue only: a
        # synchronous wrapper cannot span an await. before_enqueue metadata
        # (a trace context) and the ENQUEUED events are the same here.
        rows, now, final = self._encode(specs, many=many)

        def late(stored: list[tuple[int, bool]]) -> None:
            self._stored(stored, now, final)  # cancelled, yet committed: wake workers all the same

        future = aio.start(self.storage, "enqueue", rows, now, late=late)
        try:
            stored = await future
        except asyncio.CancelledError as exc:
            aio.note_cancelled(exc, future)
            raise
        return self._stored(stored, now, final)

    async def aget_task(self, task_id: int) -> Task | None:
        """:meth:`get_task` for coroutines."""
        self._check_fork()
        task: Task | None = await aio.call(self.storage, "get", _task_id(task_id))
        return task

    async def aget_tasks(self, task_ids: Iterable[int]) -> list[Task]:
        """:meth:`get_tasks` for coroutines."""
        ids = [_task_id(t) for t in task_ids]
        self._check_fork()
        if not ids:
            return []
        tasks: list[Task] = await aio.call(self.storage, "get_many", ids)
        return tasks

    async def aget_queue_stats(self, queue_name: str | None = None) -> dict[str, int]:
        """:meth:`get_queue_stats` for coroutines."""
        if queue_name is not None:
            check_queue_name(queue_name)
        self._check_fork()
        return _every_status(await aio.call(self.storage, "counts", queue_name))

    async def await_task(self, task_id: int, timeout: float | None = None) -> Task:
        """:meth:`wait` for coroutines (``await`` being a keyword, the name is
        not ``await``): the finished task, TimeoutError after ``timeout``.
        Woken by the queue's one watcher thread through the loop; cancelling
        the coroutine just stops waiting."""
        self._check_fork()
        return await self._waiters.await_task(_task_id(task_id), timeout)

    async def aresult(self, task_id: int, timeout: float | None = None) -> Any:
        """:meth:`result` for coroutines: the result, or TaskFailedError,
        TaskCancelled, TimeoutError as :meth:`result` raises them."""
        return _result_of(await self.await_task(task_id, timeout))

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        """Stop renewing held claims, finish queued writes and close the
        database; later calls raise QueueClosedError."""
        self._waiters.close()
        self._book.close()
        self.storage.close()

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if not isinstance(self.storage, SqliteStorage):
            return f"TaskQueue(storage={self.storage!r})"
        return f"TaskQueue({self.path!r})"


def is_postgres_dsn(path: str) -> bool:
    """``postgresql://...`` or ``postgres://...``: TaskQueue picks PostgresStorage."""
    return path.startswith(("postgresql://", "postgres://"))


def _claim_args(
    limit: object, worker_id: object, task_types: Sequence[str] | None
) -> list[str] | None:
    """Check claim() arguments; the task types as a list."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise ValueError(f"limit must be an int from 1 to {_MAX_LIMIT}, got {limit!r}")
    if worker_id is not None:
        if not isinstance(worker_id, str) or not worker_id:
            raise ValueError(f"worker_id must be a non-empty string, got {worker_id!r}")
        check_text("worker_id", worker_id)
    if task_types is None:
        return None
    if isinstance(task_types, str):
        raise TypeError("task_types must be a sequence of strings, not a string")
    types = list(task_types)
    if any(not isinstance(t, str) or "\x00" in t for t in types):
        # json_each would cut "a\x00b" to "a" and claim type "a".
        raise ValueError(f"task_types must be strings without NUL, got {types!r}")
    return types


def _cursor(at: Task | Position, where: TaskFilter) -> str:
    """The ``next`` of a page ending with task ``at`` (or whose bounded scan
    stopped there): its id, and for a finished status its finish time (the
    listing's order)."""
    if where.status in FINISHED and at.completed_at is not None:
        return f"{at.completed_at!r}/{at.id}"
    return str(at.id)


def _parse_cursor(cursor: str | None) -> Position | None:
    """Where the previous page ended, from its cursor."""
    if cursor is None:
        return None
    try:
        at, _, task_id = cursor.rpartition("/")
        completed_at = float(at) if at else None
        if completed_at is not None and not math.isfinite(completed_at):
            raise ValueError
        ident = int(task_id)
    except (TypeError, ValueError):
        raise ValueError(f"not a listing cursor (the 'next' of a page): {cursor!r}") from None
    return Position(ident, completed_at)


def _with_token(task: Task, token: int) -> Task:
    return dataclasses.replace(task, claim_token=token)


def _statuses(statuses: Iterable[TaskStatus | str]) -> list[TaskStatus]:
    if isinstance(statuses, str):  # one status: "completed", TaskStatus.FAILED
        statuses = [statuses]
    chosen = []
    for status in statuses:
        try:
            chosen.append(TaskStatus(status))
        except ValueError:
            raise ValueError(
                f"unknown status {status!r}; expected one of {[s.value for s in TaskStatus]}"
            ) from None
    return chosen


def _class_path(kind: type) -> str:
    """ "module.QualName" of an exception class (Django's exception_class_path)."""
    return f"{kind.__module__}.{kind.__qualname__}"


def _safe_str(error: BaseException) -> str:
    """str(error); a placeholder if the exception's own __str__ fails (a
    handler's hostile exception must not keep its failure from being recorded)."""
    try:
        return str(error)
    except BaseException:
        return f"<unprintable {type(error).__name__} object>"


def _one_spec(
    name: str, task_type: str, payload: Any, priority: TaskPriority | int | str,
    scheduled_at: dt.datetime | float | None, max_retries: int,
    delay: float | dt.timedelta | None, timeout: float | None, unique_key: str | None,
    queue_name: str, depends_on: Sequence[int | Task], concurrency_key: str | None,
) -> TaskSpec:  # fmt: skip
    """The checked spec of enqueue()/aenqueue()."""
    spec = TaskSpec(
        name, task_type, payload, priority, scheduled_at, max_retries,
        delay=delay, timeout=timeout, unique_key=unique_key, queue_name=queue_name,
        depends_on=depends_on, concurrency_key=concurrency_key,  # type: ignore[arg-type]
    )  # fmt: skip
    if any(isinstance(d, BatchRef) for d in spec.depends_on):
        raise ValueError("BatchRef refers to a task of an enqueue_many() batch; use ids here")
    return spec


def _many_specs(tasks: Iterable[Mapping[str, Any]]) -> list[TaskSpec]:
    return [TaskSpec.from_mapping(spec, index) for index, spec in enumerate(tasks)]


def _every_status(counts: Mapping[str, int]) -> dict[str, int]:
    return {status.value: counts.get(status.value, 0) for status in TaskStatus}


def _result_of(task: Task) -> Any:
    """A finished task's result, or its failure or cancellation raised."""
    if task.status == TaskStatus.COMPLETED:
        return task.result
    if task.status == TaskStatus.FAILED:
        raise TaskFailedError(task.error_message or "failed", task.error_traceback, task=task)
    raise TaskCancelled(
        f"task {task.id} was cancelled" + (f": {task.error_message}" if task.error_message else "")
    )


def _task_id(task_id: object) -> int:
    if isinstance(task_id, Task):
        return task_id.id
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        raise TypeError(f"task id must be an int, got {type(task_id).__name__}")
    return task_id


__all__ = ["TaskQueue"]
