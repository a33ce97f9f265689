"""TaskSpec: the enqueue fields and their validation, written once.

``TaskQueue.enqueue(...)`` builds one spec from its arguments and
``enqueue_many(specs)`` one per mapping; each is checked when built (so a
bad batch raises before anything is written) and encoded into the row the
storage inserts with :meth:`TaskSpec.encode`. A new enqueue option is a
field here, a parameter of ``enqueue``, and a column.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .checks import check_queue_name, check_text, is_positive
from .payload import DEFAULT_MAX_BYTES, encode
from .storage.base import NewTask
from .task import MAX_PRIORITY, MIN_PRIORITY, Task, TaskPriority

# SQLite integers are signed 64-bit.
_MAX_INT64 = 2**63 - 1
#: Most tasks one task may depend on.
MAX_DEPENDENCIES = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class BatchRef:
    """In ``enqueue_many``: the task at ``index`` of the same batch (an
    earlier one), for ``depends_on`` before its id is known."""

    index: int

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"BatchRef index must be an int >= 0, got {self.index!r}")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task to enqueue, validated on construction (ValueError/TypeError;
    PayloadError for a payload that is not plain JSON comes at encode)."""

    #: Human-readable label.
    name: str
    #: Selects the handler.
    task_type: str
    #: JSON-serializable data handed to the handler.
    payload: Any = None
    #: Higher runs first: an int from -100 to 100, a TaskPriority or its
    #: name ("HIGH", "low"...).
    priority: TaskPriority | int | str = TaskPriority.NORMAL
    #: When to run: a datetime (naive = local time) or epoch seconds.
    scheduled_at: dt.datetime | float | None = None
    #: Retries after the first attempt.
    max_retries: int = 3
    #: Run this many seconds (or this timedelta) from now; not with scheduled_at.
    delay: float | dt.timedelta | None = None
    #: Seconds an attempt may run.
    timeout: float | None = None
    #: Idempotency key: one live (pending or running) task per key.
    unique_key: str | None = None
    #: The named queue (1-100 letters, digits, ``-_.:``); Workers serve some or all.
    queue_name: str = "default"
    #: Ids of tasks (or, in enqueue_many, BatchRefs to earlier tasks of the
    #: batch) that must complete before this one runs.
    depends_on: Sequence[int | BatchRef] = ()
    #: JSON metadata carried with the task, for hooks (not for the handler).
    meta: Mapping[str, Any] | None = None
    #: With a handler's concurrency_limit: at most that many of its tasks
    #: with this key run at once (one account's tasks, one at a time...).
    concurrency_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {type(self.name).__name__}")
        check_text("name", self.name)
        check_task_type(self.task_type)
        if self.unique_key is not None:
            if not isinstance(self.unique_key, str) or not self.unique_key:
                raise ValueError(
                    f"unique_key must be a non-empty string or None, got {self.unique_key!r}"
                )
            check_text("unique_key", self.unique_key)
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or not 0 <= self.max_retries <= _MAX_INT64
        ):
            raise ValueError(
                f"max_retries must be an int from 0 to 2**63-1, got {self.max_retries!r}"
            )
        if self.timeout is not None and not is_positive(self.timeout):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        object.__setattr__(self, "priority", parse_priority(self.priority))
        check_queue_name(self.queue_name)
        object.__setattr__(self, "depends_on", _dependencies(self.depends_on))
        key = self.concurrency_key
        if key is not None:
            if not isinstance(key, str) or not key or len(key) > 200:
                raise ValueError(
                    f"concurrency_key must be a string of 1 to 200 characters, got {key!r}"
                )
            check_text("concurrency_key", key)
        if self.meta is not None and not isinstance(self.meta, Mapping):
            raise TypeError(
                f"meta must be a mapping of JSON values, got {type(self.meta).__name__}"
            )
        _due_time(0.0, self.scheduled_at, self.delay)  # validates both

    @classmethod
    def from_mapping(cls, spec: object, index: int) -> TaskSpec:
        """The spec for item ``index`` of an enqueue_many() batch; errors name the item."""
        if not isinstance(spec, Mapping):
            raise TypeError(f"task #{index} is {type(spec).__name__}, not a mapping")
        unknown = set(spec) - _FIELDS
        if unknown:
            raise TypeError(f"task #{index} has unknown keys: {sorted(map(str, unknown))}")
        try:
            made = cls(**spec)
            later = [
                r.index for r in made.depends_on if isinstance(r, BatchRef) and r.index >= index
            ]
            if later:
                raise ValueError(
                    f"depends_on may refer only to earlier tasks of the batch, not #{later[0]}"
                )
            return made
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"task #{index}: {exc}") from exc

    def encode(self, now: float, max_payload_bytes: int = DEFAULT_MAX_BYTES) -> NewTask:
        """The row to insert, due times resolved against ``now``."""
        run_at, scheduled = _due_time(now, self.scheduled_at, self.delay)
        deps = self.depends_on
        ids = tuple(d for d in deps if isinstance(d, int)) if deps else ()
        refs = tuple(d.index for d in deps if isinstance(d, BatchRef)) if deps else ()
        return NewTask(
            name=self.name,
            task_type=self.task_type,
            payload=encode(self.payload, what="payload", max_bytes=max_payload_bytes),
            priority=int(self.priority),
            scheduled_at=scheduled,
            run_at=run_at,
            max_retries=self.max_retries,
            timeout=None if self.timeout is None else float(self.timeout),
            unique_key=self.unique_key,
            queue_name=self.queue_name,
            depends_on=ids,
            depends_on_batch=refs,
            meta=None if self.meta is None else encode(dict(self.meta), what="meta"),
            concurrency_key=self.concurrency_key,
        )


_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskSpec))


def _dependencies(depends_on: object) -> tuple[int | BatchRef, ...]:
    if depends_on == () and type(depends_on) is tuple:
        return ()  # nearly every task's
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, Iterable):
        raise TypeError(f"depends_on must be a list of task ids, got {depends_on!r}")
    found: list[int | BatchRef] = []
    for item in depends_on:
        if isinstance(item, Task):
            item = item.id
        if isinstance(item, BatchRef):
            found.append(item)
        elif isinstance(item, bool) or not isinstance(item, int) or not 0 < item <= _MAX_INT64:
            raise ValueError(f"depends_on holds task ids (ints > 0), got {item!r}")
        else:
            found.append(item)
    if len(found) > MAX_DEPENDENCIES:
        raise ValueError(f"a task may depend on at most {MAX_DEPENDENCIES} tasks, got {len(found)}")
    return tuple(dict.fromkeys(found))  # each once, in order


def check_task_type(task_type: object) -> None:
    """A task type is a non-empty string without NUL (SQLite's JSON
    functions, which the claim's type filter uses, end strings at a NUL)."""
    if not isinstance(task_type, str) or not task_type or "\x00" in task_type:
        raise ValueError(f"task_type must be a non-empty string without NUL, got {task_type!r}")
    check_text("task_type", task_type)


def parse_priority(value: object) -> TaskPriority | int:
    """A priority from a TaskPriority, its name (any case), or an int from
    -100 to 100; the named levels' ints come back as their TaskPriority.
    ValueError for anything else (bools, floats, out of range)."""
    if type(value) is TaskPriority:
        return value
    if isinstance(value, bool):
        raise ValueError(f"unknown priority {value!r}; {_EXPECTED}")
    if isinstance(value, str):
        try:
            return TaskPriority[value.upper()]
        except KeyError:
            raise ValueError(
                f"unknown priority {value!r}; expected one of {[p.name for p in TaskPriority]} "
                f"or an int from {MIN_PRIORITY} to {MAX_PRIORITY}"
            ) from None
    if isinstance(value, int):
        if not MIN_PRIORITY <= value <= MAX_PRIORITY:
            raise ValueError(f"priority {value} is out of range; {_EXPECTED}")
        return _NAMED.get(value, int(value))
    raise ValueError(f"unknown priority {value!r}; {_EXPECTED}")


_NAMED = {int(p): p for p in TaskPriority}
_EXPECTED = (
    f"expected an int from {MIN_PRIORITY} to {MAX_PRIORITY} or a TaskPriority "
    f"({', '.join(f'{p.name}={p.value}' for p in TaskPriority)})"
)


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
