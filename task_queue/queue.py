"""TaskQueue: the API applications call (seed.md's calls, and the rest)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import secrets
import socket
import sys
import threading
import traceback as tb
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from .clock import SYSTEM_CLOCK, Clock
from .errors import TaskNotClaimedError, TaskNotFoundError
from .interrupted import attach_task_ids
from .payload import DEFAULT_MAX_BYTES, encode
from .retry import RetryPolicy
from .storage.base import Claim, Failure, NewTask, Storage
from .storage.sqlite import SqliteStorage
from .task import Task, TaskPriority, TaskStatus

LOGGER = logging.getLogger("task_queue")

TaskRef = int | Task
_ENQUEUE_KEYS = frozenset(
    {"name", "task_type", "payload", "priority", "scheduled_at", "max_retries", "delay",
     "timeout", "unique_key"}
)  # fmt: skip
_NO_RESCUE_BEFORE = -math.inf
# SQLite integers are 64-bit; a bigger LIMIT would overflow in the driver.
_MAX_LIMIT = 2**31 - 1


class Wakeable(Protocol):
    """Anything with ``set()``, such as a threading.Event."""

    def set(self) -> None: ...


class TaskQueue:
    """A durable task queue in one SQLite file, shared by threads and processes.

    ``enqueue()`` returns only once the task is committed (with the default
    ``synchronous="FULL"``, once it is on disk). Delivery is at least once:
    a task whose worker dies mid-way runs again after its lease expires, so
    handlers must be idempotent.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "taskqueue.db",
        *,
        lease_seconds: float = 30.0,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        retry_policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        max_batch: int = 500,
        rescue_interval: float = 1.0,
        storage: Storage | None = None,
    ) -> None:
        """Open (creating if needed) the queue at ``path``.

        lease_seconds: how long a claim lasts without a heartbeat; a crashed
            worker's task is rescued this long after its last renewal.
        synchronous: "FULL" (default) makes every acknowledged enqueue survive
            power loss; "NORMAL" survives application crashes only, and is faster.
        busy_timeout: seconds to keep retrying while another process holds
            the write lock before raising DatabaseBusyError.
        rescue_interval: dequeue() rescues expired leases at most this often.
        storage: another backend implementing the Storage interface.
        """
        if not lease_seconds > 0:
            raise ValueError("lease_seconds must be > 0")
        if busy_timeout < 0:
            raise ValueError("busy_timeout must be >= 0")
        self.path = os.fspath(path)
        self.lease_seconds = float(lease_seconds)
        self.retry_policy = retry_policy or RetryPolicy()
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.max_payload_bytes = max_payload_bytes
        self.rescue_interval = rescue_interval
        self.storage: Storage = storage or SqliteStorage(
            self.path, synchronous=synchronous, busy_budget=busy_timeout, max_batch=max_batch
        )
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        # Reentrant: a signal handler enqueueing runs in the middle of this
        # thread's own enqueue(), possibly while it holds the lock.
        self._lock = threading.RLock()
        self._listeners: set[Wakeable] = set()
        # Claim tokens handed out by dequeue(), for seed.md's
        # complete_task(task['id']) calls that carry no token: the calling
        # thread's own claims first, then this object's latest claim.
        self._local = threading.local()
        self._held: dict[int, int] = {}
        self._next_rescue = _NO_RESCUE_BEFORE
        self._default_worker_id = f"{socket.gethostname()}:{self._pid}"

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # Locks and listeners copied from the parent are not ours.
            self._init_process_state()

    # -- enqueue -------------------------------------------------------------
    def enqueue(
        self,
        name: str,
        task_type: str,
        payload: Any = None,
        priority: TaskPriority | int = TaskPriority.NORMAL,
        scheduled_at: dt.datetime | float | None = None,
        max_retries: int = 3,
        *,
        delay: float | dt.timedelta | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
    ) -> int:
        """Add a task; return its id once it is durably stored.

        With ``unique_key``, while a task with that key is pending or
        running, the existing task's id is returned and nothing is added.
        """
        now = self.clock.time()
        task = self._new_task(
            now, name=name, task_type=task_type, payload=payload, priority=priority,
            scheduled_at=scheduled_at, max_retries=max_retries, delay=delay,
            timeout=timeout, unique_key=unique_key,
        )  # fmt: skip
        self._check_fork()
        ids: list[int] | None = None
        try:
            ids = self.storage.enqueue([task], now)
            self._notify()
        except BaseException as exc:
            attach_task_ids(exc, ids)  # an interrupt says what it committed
            raise
        return ids[0]

    def enqueue_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[int]:
        """Add many tasks in one transaction: all of them, or none (on any error).

        Each item is a mapping of :meth:`enqueue`'s arguments.
        """
        now = self.clock.time()
        batch: list[NewTask] = []
        for index, spec in enumerate(tasks):
            if not isinstance(spec, Mapping):
                raise TypeError(f"task #{index} is {type(spec).__name__}, not a mapping")
            unknown = set(spec) - _ENQUEUE_KEYS
            if unknown:
                raise TypeError(f"task #{index} has unknown keys: {sorted(unknown)}")
            try:
                batch.append(self._new_task(now, **spec))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"task #{index}: {exc}") from exc
        if not batch:
            return []
        self._check_fork()
        ids: list[int] | None = None
        try:
            ids = self.storage.enqueue(batch, now)
            self._notify()
        except BaseException as exc:
            attach_task_ids(exc, ids)  # an interrupt says what it committed
            raise
        return ids

    def _new_task(
        self,
        now: float,
        *,
        name: str,
        task_type: str,
        payload: Any = None,
        priority: TaskPriority | int = TaskPriority.NORMAL,
        scheduled_at: dt.datetime | float | None = None,
        max_retries: int = 3,
        delay: float | dt.timedelta | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
    ) -> NewTask:
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        if not isinstance(task_type, str) or not task_type or "\x00" in task_type:
            # NUL: SQLite's json_each (the claim's type filter) cuts strings at it.
            raise ValueError(f"task_type must be a non-empty string without NUL, got {task_type!r}")
        if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
            raise ValueError(f"unique_key must be a non-empty string or None, got {unique_key!r}")
        _check_text("name", name)
        _check_text("task_type", task_type)
        if unique_key is not None:
            _check_text("unique_key", unique_key)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        run_at, scheduled = _due_time(now, scheduled_at, delay)
        return NewTask(
            name=name,
            task_type=task_type,
            payload=encode(payload, what="payload", max_bytes=self.max_payload_bytes),
            priority=int(_priority(priority)),
            scheduled_at=scheduled,
            run_at=run_at,
            max_retries=max_retries,
            timeout=None if timeout is None else float(timeout),
            unique_key=unique_key,
        )

    # -- claim -----------------------------------------------------------------
    def dequeue(
        self, worker_id: str | None = None, task_types: Sequence[str] | None = None
    ) -> Task | None:
        """Claim the highest-priority due task (FIFO within a priority), or None.

        The task is marked running with a lease of ``lease_seconds``; finish
        it with complete_task() or fail_task() before the lease runs out (a
        Worker renews it by heartbeat).
        """
        tasks = self.claim(1, worker_id=worker_id, task_types=task_types)
        return tasks[0] if tasks else None

    def claim(
        self,
        limit: int,
        *,
        worker_id: str | None = None,
        task_types: Sequence[str] | None = None,
        remember: bool = True,
    ) -> list[Task]:
        """Claim up to ``limit`` due tasks in one statement (see dequeue()).

        ``remember=False`` is for callers that hand the Task (which carries
        its claim token) back to complete_task()/fail_task(), as Worker
        does: then this object keeps nothing per claimed task. Otherwise the
        token is kept until the task is completed, failed or released, so
        that seed.md's ``complete_task(task['id'], ...)`` works.
        """
        return self._claim_batch(limit, worker_id, task_types, remember, ())[1]

    def _claim_batch(
        self,
        limit: int,
        worker_id: str | None,
        task_types: Sequence[str] | None,
        remember: bool,
        completions: Sequence[tuple[Claim, str | None]],
    ) -> tuple[set[int], list[Task]]:
        """claim(), writing ``completions`` in the same transaction first
        (Worker: one commit per batch). Returns (ids recorded, tasks)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {_MAX_LIMIT}, got {limit!r}")
        if worker_id is not None:
            if not isinstance(worker_id, str) or not worker_id:
                raise ValueError(f"worker_id must be a non-empty string, got {worker_id!r}")
            _check_text("worker_id", worker_id)
        if task_types is not None:
            if isinstance(task_types, str):
                raise TypeError("task_types must be a sequence of strings, not a string")
            task_types = list(task_types)
            if not task_types and not completions:
                return set(), []
            if any(not isinstance(t, str) or "\x00" in t for t in task_types):
                # json_each would cut "a\x00b" to "a" and claim type "a".
                raise ValueError(f"task_types must be strings without NUL, got {task_types!r}")
        self._check_fork()
        now = self.clock.time()
        rescue = now >= self._next_rescue
        if rescue:
            self._next_rescue = now + self.rescue_interval
        recorded, tasks = self.storage.complete_and_claim(
            completions,
            now,
            worker_id=worker_id or self._default_worker_id,
            limit=limit,
            task_types=task_types,
            lease_expires_at=now + self.lease_seconds,
            token=secrets.randbits(63),
            rescue=rescue,
        )
        if tasks and remember:
            mine = self._thread_claims()
            with self._lock:
                for task in tasks:
                    assert task.claim_token is not None
                    mine[task.id] = task.claim_token
                    self._held[task.id] = task.claim_token
        return recorded, tasks

    # -- outcomes (fenced) -----------------------------------------------------
    def complete_task(self, task: TaskRef, result: Any = None, *, token: int | None = None) -> bool:
        """Record success. Returns False, recording nothing, if the caller no
        longer holds the task (lease expired and rescued, or cancelled).

        Raises TaskNotFoundError for an unknown id, TaskNotClaimedError when
        this queue never claimed it, PayloadError for a non-JSON result.
        """
        encoded = encode(result, what="result", max_bytes=self.max_payload_bytes)
        claim = self._claim_of(task, token)
        done = self.storage.complete(claim, encoded, self.clock.time())
        self._forget(claim)
        if not done:
            LOGGER.warning("task %d: completion ignored, the claim is no longer held", claim[0])
        return done

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
        when there is one, the traceback are kept on the task. Returns False
        if the caller no longer holds the task.
        """
        claim = self._claim_of(task, token)
        failure = self.make_failure(error, retry_policy=retry_policy, max_retries=max_retries)
        done = self.storage.fail(claim, failure, self.clock.time())
        self._forget(claim)
        if done:
            self._notify()  # a retry may be due at once
        else:
            LOGGER.warning("task %d: failure ignored, the claim is no longer held", claim[0])
        return done

    def release_task(self, task: TaskRef, *, token: int | None = None) -> bool:
        """Give a claimed task back to pending unfinished, without using a retry."""
        claim = self._claim_of(task, token)
        released = bool(self.storage.release([claim]))
        self._forget(claim)
        if released:
            self._notify()
        return released

    def make_failure(
        self,
        error: str | BaseException,
        *,
        retry_policy: RetryPolicy | None = None,
        max_retries: int | None = None,
    ) -> Failure:
        if isinstance(error, BaseException):
            message = f"{type(error).__name__}: {_safe_str(error)}"
            trace: str | None = "".join(
                tb.format_exception(type(error), error, error.__traceback__)
            )
        elif isinstance(error, str):
            message = error
            # seed.md calls fail_task(id, str(e)) inside `except`: keep the
            # traceback that is being handled.
            current = sys.exc_info()[1]
            trace = (
                "".join(tb.format_exception(type(current), current, current.__traceback__))
                if current is not None
                else None
            )
        else:
            raise TypeError(f"error must be a string or an exception, got {type(error).__name__}")
        policy = retry_policy or self.retry_policy
        return Failure(
            error=message, traceback=trace, backoff=policy.delay, max_retries=max_retries
        )

    # -- claim-token bookkeeping for callers that pass bare ids ---------------
    def _forget(self, claim: Claim) -> None:
        task_id, token = claim
        mine = self._thread_claims()
        with self._lock:
            if mine.get(task_id) == token:
                del mine[task_id]
            if self._held.get(task_id) == token:
                del self._held[task_id]

    def _thread_claims(self) -> dict[int, int]:
        claims: dict[int, int] | None = getattr(self._local, "claims", None)
        if claims is None:
            claims = self._local.claims = {}
        return claims

    def _claim_of(self, task: TaskRef, token: int | None) -> Claim:
        self._check_fork()
        if isinstance(task, Task):
            if token is None:
                token = task.claim_token
            task_id = task.id
        elif isinstance(task, int) and not isinstance(task, bool):
            task_id = task
        else:
            raise TypeError(f"task must be a Task or an int id, got {type(task).__name__}")
        if token is None:
            token = self._thread_claims().get(task_id)
        if token is None:
            with self._lock:
                token = self._held.get(task_id)
        if token is None:
            if self.storage.get(task_id) is None:
                raise TaskNotFoundError(f"no task with id {task_id}")
            raise TaskNotClaimedError(
                f"task {task_id} was not claimed through this TaskQueue; "
                "pass the Task returned by dequeue() (it carries the claim token)"
            )
        return task_id, token

    # -- management ------------------------------------------------------------
    def cancel_task(self, task_id: int) -> bool:
        """Cancel a pending or running task; False if it already finished.

        A running task's handler sees the cancellation through
        current_task().cancelled at its worker's next heartbeat, and its late
        result is not recorded.
        """
        self._check_fork()
        return self.storage.cancel(_task_id(task_id), self.clock.time())

    def retry_task(self, task_id: int) -> bool:
        """Put a failed or cancelled task back to pending with a fresh retry budget."""
        self._check_fork()
        done = self.storage.retry(_task_id(task_id), self.clock.time())
        if done:
            self._notify()
        return done

    def get_task(self, task_id: int) -> Task | None:
        self._check_fork()
        return self.storage.get(_task_id(task_id))

    def get_queue_stats(self) -> dict[str, int]:
        """Tasks per status; every status is a key, zeros included."""
        self._check_fork()
        counts = self.storage.counts()
        return {status.value: counts.get(status.value, 0) for status in TaskStatus}

    def get_tasks_by_status(self, status: TaskStatus | str, limit: int = 10) -> list[Task]:
        """Up to ``limit`` tasks with this status, newest first."""
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

    def rescue_expired(self) -> int:
        """Return running tasks whose lease expired to pending (or failed once
        their retries are used up). Workers and dequeue() do this on their own;
        this is for operators and tests. Returns how many were rescued."""
        self._check_fork()
        rescued = self.storage.rescue(self.clock.time())
        if rescued:
            LOGGER.warning("rescued %d task(s) whose worker stopped renewing its lease", rescued)
            self._notify()
        return rescued

    def purge(
        self,
        older_than: float | dt.timedelta,
        statuses: Iterable[TaskStatus | str] = (TaskStatus.COMPLETED, TaskStatus.CANCELLED),
    ) -> int:
        """Delete finished tasks that finished more than ``older_than`` ago.

        Failed tasks (the dead-letter set) are kept unless asked for.
        """
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError("older_than must be >= 0 seconds")
        chosen = [TaskStatus(s) for s in statuses]
        live = {TaskStatus.PENDING, TaskStatus.RUNNING} & set(chosen)
        if live:
            names = sorted(s.value for s in live)
            raise ValueError(f"purge only deletes finished tasks, not {names}")
        self._check_fork()
        return self.storage.purge([s.value for s in chosen], self.clock.time() - seconds)

    def pending_by_type(self) -> dict[str, int]:
        """Due pending tasks per task type (find types no worker handles)."""
        self._check_fork()
        return self.storage.due_by_type(self.clock.time())

    def next_due(self) -> float | None:
        """Epoch time when the next not-yet-due pending task becomes due."""
        self._check_fork()
        return self.storage.next_due(self.clock.time())

    # -- wake-up of in-process workers ---------------------------------------
    def add_listener(self, event: Wakeable) -> None:
        """``event`` is set whenever a task becomes available through this object."""
        with self._lock:
            self._listeners.add(event)

    def remove_listener(self, event: Wakeable) -> None:
        with self._lock:
            self._listeners.discard(event)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for event in listeners:
            event.set()

    def data_version(self) -> int:
        """Changes whenever another connection (process) commits: a cheap
        "is there anything new?" for pollers."""
        self._check_fork()
        return self.storage.data_version()

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TaskQueue({self.path!r})"


def _priority(value: object) -> TaskPriority:
    if isinstance(value, bool):
        raise ValueError(f"unknown priority {value!r}")
    if isinstance(value, str):
        try:
            return TaskPriority[value.upper()]
        except KeyError:
            raise ValueError(
                f"unknown priority {value!r}; expected one of {[p.name for p in TaskPriority]}"
            ) from None
    try:
        return TaskPriority(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise ValueError(
            f"unknown priority {value!r}; expected a TaskPriority "
            f"({', '.join(f'{p.name}={p.value}' for p in TaskPriority)})"
        ) from None


def _due_time(
    now: float, scheduled_at: dt.datetime | float | None, delay: float | dt.timedelta | None
) -> tuple[float, float | None]:
    """(run_at, scheduled_at) as epoch seconds."""
    if scheduled_at is not None and delay is not None:
        raise ValueError("give scheduled_at or delay, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else delay
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"delay must be seconds or a timedelta, got {type(delay).__name__}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"delay must be a finite number >= 0, got {delay!r}")
        return now + seconds, now + seconds
    if scheduled_at is None:
        return now, None
    if isinstance(scheduled_at, dt.datetime):
        # Naive datetimes are local time, as datetime.now() gives them;
        # timestamp() interprets them that way.
        when = scheduled_at.timestamp()
    elif isinstance(scheduled_at, (int, float)) and not isinstance(scheduled_at, bool):
        when = float(scheduled_at)
    else:
        raise TypeError(
            f"scheduled_at must be a datetime or epoch seconds, got {type(scheduled_at).__name__}"
        )
    if not math.isfinite(when):
        raise ValueError(f"scheduled_at must be finite, got {scheduled_at!r}")
    return when, when


def _check_text(what: str, value: str) -> None:
    # SQLite stores UTF-8: a lone surrogate would fail deep in the driver
    # with a UnicodeEncodeError; say what is wrong instead.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate?): {exc}") from None


def _safe_str(error: BaseException) -> str:
    """str(error); a placeholder if the exception's own __str__ fails (a
    handler's hostile exception must not keep its failure from being recorded)."""
    try:
        return str(error)
    except BaseException:
        return f"<unprintable {type(error).__name__} object>"


def _task_id(task_id: object) -> int:
    if isinstance(task_id, Task):
        return task_id.id
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        raise TypeError(f"task id must be an int, got {type(task_id).__name__}")
    return task_id


__all__ = ["TaskQueue"]
