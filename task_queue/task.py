"""The task record, its two enums, and the claim that proves who holds it.

A :class:`Task` is an immutable snapshot of one row, taken when it was read.
It answers ``task['id']`` as well as ``task.id``, so code written for the
dict-returning API the library grew from (README, "Where it comes from")
runs unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from enum import Enum, IntEnum
from typing import Any, NamedTuple

#: The range of priorities: any int from MIN_PRIORITY to MAX_PRIORITY
#: (Django's Tasks use the same range); the named levels sit inside it.
MIN_PRIORITY = -100
MAX_PRIORITY = 100


class TaskPriority(IntEnum):
    """The named priorities. Higher runs first; a priority may also be any
    int from -100 to 100 (:data:`MIN_PRIORITY`, :data:`MAX_PRIORITY`), and
    claims order the whole range. Stored as its integer value."""

    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4


class TaskStatus(str, Enum):
    """Lifecycle: pending -> running -> completed | failed; pending/running -> cancelled;
    waiting -> pending once every task it depends on completed (cancelled if one
    of them fails for good or is cancelled).

    ``running`` means claimed: a worker holds the task's lease. A Worker may
    hold a few short tasks in its prefetch buffer before a thread starts
    them; they are ``running`` (and their ``started_at`` is the claim time)
    from the claim on. A str subclass, so ``stats['pending']`` and
    ``status == 'pending'`` work.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Waits for tasks it depends on (``enqueue(..., depends_on=[...])``).
    WAITING = "waiting"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def finished(self) -> bool:
        """Completed, failed (for good) or cancelled: it will not run again
        unless retry_task() puts it back."""
        return self in _FINISHED


class Claim(NamedTuple):
    """Proof that the caller holds a task: its id and the fencing token of
    the claim. Every state change after a claim presents it, and applies
    only while the task is still running under that token."""

    task_id: int
    token: int


_FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """One task as stored. Times are UTC epoch seconds (float) or None."""

    #: Unique id, assigned at enqueue, never reused.
    id: int
    #: Human-readable label.
    name: str
    #: Selects the handler.
    task_type: str
    #: The JSON payload handed to the handler (None when enqueued without one).
    payload: Any
    #: Higher runs first: a TaskPriority, or an int from -100 to 100.
    priority: TaskPriority | int
    status: TaskStatus
    #: Who holds (or last held) the claim.
    worker_id: str | None
    created_at: float
    #: When the caller asked it to run (None: as soon as possible).
    scheduled_at: float | None
    #: Start of the current or last attempt.
    started_at: float | None
    #: When it reached completed, failed or cancelled.
    completed_at: float | None
    #: Retries allowed after the first attempt.
    max_retries: int
    #: Retries used so far.
    retry_count: int
    error_message: str | None
    #: The handler's JSON result once completed.
    result: Any
    #: Attempts started (claims that ran or were lost to a crash).
    attempts: int = 0
    #: Earliest time the task may be claimed (scheduled time or retry backoff).
    run_at: float = 0.0
    #: When the current claim expires unless renewed by a heartbeat.
    lease_expires_at: float | None = None
    #: Fencing token of the current claim; state changes must present it.
    claim_token: int | None = None
    #: Seconds an attempt may run before it is timed out (None: no limit).
    timeout: float | None = None
    #: Idempotency key: one live (pending or running) task per key.
    unique_key: str | None = None
    #: Formatted traceback of the last failure, when there was one.
    error_traceback: str | None = None
    #: Host (and PID namespace) of the process holding the claim.
    owner_host: str | None = None
    #: PID of the process holding the claim: if it is gone, the task is
    #: rescued at once instead of when its lease expires.
    owner_pid: int | None = None
    #: The named queue it is in (Workers serve some queues or all).
    queue_name: str = "default"
    #: The last progress its handler reported (``current_task().progress()``):
    #: ``{"current", "total", "message", "updated_at"}``, or None.
    progress: dict[str, Any] | None = None
    #: The ids of the tasks it depends on (it runs once all completed).
    depends_on: tuple[int, ...] = ()
    #: How many of those have not completed yet.
    waiting_on: int = 0
    #: When its first attempt started (``started_at`` is the latest one's).
    first_started_at: float | None = None
    #: JSON metadata carried with the task (for hooks: a trace context...).
    meta: dict[str, Any] | None = None
    #: Its key for its handler's concurrency limit, if any.
    concurrency_key: str | None = None

    #: This snapshot's claim: (id, claim token); token 0, which no claim
    #: has, if it was read while not claimed. Made once, with the Task: it
    #: keys every in-flight map of a Worker.
    claim: Claim = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # task_from_values() does the same: keep the two alike.
        object.__setattr__(self, "claim", Claim(self.id, self.claim_token or 0))

    # Read-only mapping access: task["id"], task.get("name"), dict(task).
    def __getitem__(self, key: str) -> Any:
        if key not in _FIELD_NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in _FIELD_NAMES

    def keys(self) -> tuple[str, ...]:
        """The field names, as a dict's keys."""
        return _FIELD_NAMES

    def __iter__(self) -> Iterator[str]:
        # Iterating yields keys, as a dict would; dict(task) works.
        return iter(_FIELD_NAMES)

    def get(self, key: str, default: Any = None) -> Any:
        """The field ``key``, or ``default`` if there is no such field."""
        return getattr(self, key) if key in _FIELD_NAMES else default

    def to_dict(self) -> dict[str, Any]:
        """Every field, as a new dict."""
        return {name: getattr(self, name) for name in _FIELD_NAMES}


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Task) if f.init)

# A frozen dataclass's __init__ sets each of its 31 fields with a call of
# object.__setattr__ by keyword: on the claim path, once per claimed task,
# that was a fifth of the dispatcher's cost per task. The slots' own setters,
# called in a loop, make the same Task in half the time.
_SETTERS = tuple(Task.__dict__[name].__set__ for name in _FIELD_NAMES)
_SET_CLAIM = Task.__dict__["claim"].__set__


def task_from_values(values: Sequence[Any]) -> Task:
    """The Task whose fields, in declaration order (:meth:`Task.keys`), are
    ``values``; for rows the storage read (``Task(...)`` is the same, slower)."""
    task: Task = object.__new__(Task)
    for set_field, value in zip(_SETTERS, values, strict=True):
        set_field(task, value)
    _SET_CLAIM(task, Claim(task.id, task.claim_token or 0))
    return task


class SearchedTasks(NamedTuple):
    """What a bounded listing (``TaskQueue.list_tasks(scan=N)``) examined
    when it stopped at its bound before filling the page: ``examined``
    tasks in listing order, from the first (newest, or most recently
    finished) to the last, matching or not. The page's matches are among
    them, and no other task among them matches; ``TaskPage.next`` goes on
    searching after the last."""

    examined: int
    first_id: int
    last_id: int
    #: For a listing of a finished status (in finish order): when the
    #: first and the last task examined finished; None otherwise.
    first_finished_at: float | None = None
    last_finished_at: float | None = None


class TaskPage(NamedTuple):
    """One page of a listing (``TaskQueue.list_tasks``)."""

    #: The tasks, in listing order.
    tasks: list[Task]
    #: Pass as ``after=`` for the next page; None when this was the last.
    next: str | None
    #: With ``scan=``: set when the listing stopped at that bound before
    #: the page was full while older tasks remain (``next`` then resumes
    #: the search where it stopped); None when the page is full or the
    #: listing reached its end.
    searched: SearchedTasks | None = None


class AttemptRecord(NamedTuple):
    """One attempt of a task, from its history (``TaskQueue.attempts()``)."""

    attempt: int
    worker_id: str | None
    started_at: float | None
    finished_at: float | None
    #: "completed", "retried" (failed, to run again), "failed" (for good),
    #: "lost" (its worker died or stalled: rescued), "cancelled", or
    #: "running" for the attempt in progress.
    outcome: str
    #: The exception's class as "module.QualName", when there was one.
    error_class: str | None = None
    error: str | None = None
    traceback: str | None = None


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as the file knows it (``TaskQueue.schedules()``)."""

    name: str
    task_type: str
    expression: str
    queue_name: str
    misfire: str
    #: The next slot (epoch seconds), as last computed by a Worker.
    next_fire: float | None
    #: The last slot fired, and the task it made.
    last_slot: float | None
    last_task_id: int | None
    #: When a Worker carrying it last said so (a schedule removed from the
    #: code stops being declared, and firing).
    declared_at: float


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """A Worker as it last reported itself (``TaskQueue.workers()``)."""

    worker_id: str
    name: str
    host: str
    pid: int
    #: The queues it serves, comma-separated; None: every queue.
    queues: str | None
    concurrency: int
    started_at: float
    #: Its last heartbeat (every lease / 3 seconds while it runs).
    last_seen: float
    #: When it stopped cleanly; None while it runs (or if it died).
    stopped_at: float | None
    #: Attempts it completed and failed, as of its last report.
    processed: int = 0
    failed: int = 0
