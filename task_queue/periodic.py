"""Periodic schedules: tasks enqueued on a cron expression or an interval.

Declared next to the handler::

    @periodic("0 3 * * *", tz="Europe/Berlin")
    @handler("nightly_report")
    def nightly_report(payload): ...

    @periodic(every=timedelta(seconds=30), payload={"full": False})
    @handler("sync")
    def sync(payload): ...

There is no scheduler process and no leader. Every running Worker that has
a schedule in its registry takes part (its :class:`PeriodicService`), and
each fire time ("slot") becomes exactly one task, however many Workers and
processes race for it: the storage records the slot under a unique key in
the same transaction as the task, and never fires a slot at or before the
last one fired.

A slot is on time if it is at most ``ON_TIME`` seconds late (a Worker
stalled for a moment, or a slot that fell between two of its looks); older
slots were missed while no Worker ran, and the schedule's misfire policy
decides: ``"latest"`` (default) fires the most recent missed slot if it is
within ``grace`` (default one interval, at most a day), ``"skip"`` fires
none, ``"all"`` fires each (at most ``MAX_CATCH_UP``, with a warning). The
task's ``scheduled_at`` is its slot time.

Cron expressions are parsed and stepped by cronsim (the ``cron`` extra:
``pip install 'task_queue[cron]'``). It was chosen over croniter because it
has Debian cron's semantics across DST (a job in a repeated hour fires
once, one in a skipped hour at the first valid time after it), no
dependencies, and is maintained by Healthchecks.io; croniter fires twice in
a repeated hour and was abandoned for a while in 2025. Five fields, or six
with seconds first (``"*/15 * * * * *"``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .checks import check_queue_name, is_positive
from .logfields import new_task_fields
from .spec import TaskSpec, check_task_type, parse_priority
from .task import TaskPriority

if TYPE_CHECKING:
    from .queue import TaskQueue

LOGGER = logging.getLogger(__name__)

#: A slot at most this many seconds late is fired as on time, whatever the
#: misfire policy (a Worker looks at its schedules at least every second).
ON_TIME = 10.0
#: misfire="all" fires at most this many missed slots at once.
MAX_CATCH_UP = 100
#: How often a Worker looks at its schedules at most (it also wakes at the
#: next slot).
LOOK_EVERY = 1.0

MISFIRE_POLICIES = ("latest", "skip", "all")
_DAY = 86_400.0


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One periodic schedule (see the module docstring)."""

    #: The task type enqueued at each slot.
    task_type: str
    #: A cron expression (5 fields, or 6 with seconds first), or None.
    cron: str | None = None
    #: An interval in seconds (slots are multiples of it since the epoch), or None.
    every: float | None = None
    #: Unique name (default: the task type).
    name: str | None = None
    #: Time zone of the cron expression (IANA name); default UTC.
    tz: str = "UTC"
    #: Payload of each task.
    payload: Any = None
    priority: TaskPriority | int | str = TaskPriority.NORMAL
    queue_name: str = "default"
    #: What to do with slots missed while no Worker ran: "latest", "skip", "all".
    misfire: str = "latest"
    #: How old a missed slot may be for misfire="latest" to fire it
    #: (default: one interval, at most a day).
    grace: float | None = None
    #: Retries of each task.
    max_retries: int = 3

    def __post_init__(self) -> None:
        check_task_type(self.task_type)
        object.__setattr__(self, "name", self.name or self.task_type)
        if not isinstance(self.name, str) or not self.name or len(self.name) > 200:
            raise ValueError(
                f"a schedule name is a string of 1 to 200 characters, got {self.name!r}"
            )
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs a cron expression or every=, not both")
        if self.every is not None:
            every = (
                self.every.total_seconds() if isinstance(self.every, dt.timedelta) else self.every
            )
            if not is_positive(every):
                raise ValueError(f"every must be a positive duration, got {self.every!r}")
            object.__setattr__(self, "every", float(every))
        try:
            zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"unknown time zone {self.tz!r} (an IANA name, e.g. 'Europe/Berlin')"
            ) from None
        if self.cron is not None:
            if not isinstance(self.cron, str):
                raise TypeError(f"cron must be a string, got {type(self.cron).__name__}")
            _cronsim(self.cron, dt.datetime(2000, 1, 1, tzinfo=zone))  # refuse it now
        if self.misfire not in MISFIRE_POLICIES:
            raise ValueError(f"misfire must be one of {MISFIRE_POLICIES}, got {self.misfire!r}")
        if self.grace is not None:
            grace = (
                self.grace.total_seconds() if isinstance(self.grace, dt.timedelta) else self.grace
            )
            if not is_positive(grace):
                raise ValueError(f"grace must be a positive duration, got {self.grace!r}")
            object.__setattr__(self, "grace", float(grace))
        object.__setattr__(self, "priority", parse_priority(self.priority))
        check_queue_name(self.queue_name)
        # The payload and the rest are checked as any enqueue's would be.
        self.spec(0.0).encode(0.0)

    @property
    def expression(self) -> str:
        """How the schedule reads: the cron expression (and zone), or "every Ns"."""
        if self.cron is not None:
            return self.cron if self.tz == "UTC" else f"{self.cron} ({self.tz})"
        return f"every {self.every:g}s"

    def spec(self, slot: float) -> TaskSpec:
        """The task for one slot (its scheduled_at is the slot time)."""
        return TaskSpec(
            name=f"{self.name} @ {_iso(slot)}", task_type=self.task_type, payload=self.payload,
            priority=self.priority, scheduled_at=slot, max_retries=self.max_retries,
            queue_name=self.queue_name,
        )  # fmt: skip

    def next_after(self, t: float) -> float:
        """The first slot strictly after ``t`` (epoch seconds)."""
        if self.every is not None:
            return (math.floor(t / self.every) + 1) * self.every
        assert self.cron is not None
        zone = ZoneInfo(self.tz)
        start = dt.datetime.fromtimestamp(t, zone)
        return float(next(iter(_cronsim(self.cron, start))).timestamp())

    def latest_at_or_before(self, t: float) -> float | None:
        """The last slot at or before ``t``."""
        if self.every is not None:
            return math.floor(t / self.every) * self.every
        assert self.cron is not None
        start = dt.datetime.fromtimestamp(t, ZoneInfo(self.tz)) + dt.timedelta(microseconds=1)
        return float(next(iter(_cronsim(self.cron, start, reverse=True))).timestamp())

    def interval_hint(self, around: float) -> float:
        """About how long between two slots (for the default grace)."""
        if self.every is not None:
            return self.every
        first = self.next_after(around)
        return self.next_after(first) - first

    def due(self, last_slot: float | None, now: float) -> list[float]:
        """The slots to fire at ``now``, given the last one fired (None:
        never), by the misfire policy."""
        if last_slot is None:
            # New to the file: its first slot is the next one (a schedule
            # added today does not catch up on the past).
            latest = self.latest_at_or_before(now)
            return [latest] if latest is not None and now - latest <= ON_TIME else []
        if self.next_after(last_slot) > now:
            return []
        cutoff = now - ON_TIME  # slots at or before it were missed
        on_time = self._forward(max(last_slot, cutoff), now, MAX_CATCH_UP)
        latest_missed = self.latest_at_or_before(cutoff)
        if latest_missed is None or latest_missed <= last_slot:
            return on_time
        if self.misfire == "skip":
            chosen: list[float] = []
        elif self.misfire == "latest":
            grace = self.grace or min(self.interval_hint(latest_missed), _DAY)
            chosen = [latest_missed] if now - latest_missed <= grace else []
        else:
            chosen = self._backward(latest_missed, last_slot, MAX_CATCH_UP + 1)
            if len(chosen) > MAX_CATCH_UP:
                LOGGER.warning(
                    "schedule %r missed more than %d slots; firing the last %d",
                    self.name, MAX_CATCH_UP, MAX_CATCH_UP,
                )  # fmt: skip
                chosen = chosen[-MAX_CATCH_UP:]
        LOGGER.info(
            "schedule %r: slot(s) missed while no worker ran (misfire=%s): firing %d",
            self.name, self.misfire, len(chosen),
        )  # fmt: skip
        return chosen + on_time

    def _forward(self, after: float, until: float, cap: int) -> list[float]:
        """Slots in (after, until], at most ``cap``."""
        found: list[float] = []
        t = after
        while len(found) < cap:
            t = self.next_after(t)
            if t > until:
                break
            found.append(t)
        return found

    def _backward(self, last: float, after: float, cap: int) -> list[float]:
        """The slots in (after, last], the latest ``cap`` of them, in order."""
        found: list[float] = []
        t: float | None = last
        while t is not None and t > after and len(found) < cap:
            found.append(t)
            t = self.latest_at_or_before(t - 1e-3) if self.every is None else t - self.every
        return found[::-1]


def _cronsim(expr: str, start: dt.datetime, reverse: bool = False) -> Any:
    try:
        from cronsim import CronSim, CronSimError
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "cron schedules need cronsim: pip install 'task_queue[cron]' (interval "
            "schedules, every=..., need nothing)"
        ) from None
    try:
        return CronSim(expr, start, reverse=reverse)
    except CronSimError as exc:
        raise ValueError(f"bad cron expression {expr!r}: {exc}") from None


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_schedule(
    task_type: str,
    cron: str | None = None,
    *,
    every: float | dt.timedelta | None = None,
    options: Mapping[str, Any],
) -> Schedule:
    """A Schedule from ``periodic()``'s arguments."""
    return Schedule(task_type=task_type, cron=cron, every=every, **options)  # type: ignore[arg-type]


class PeriodicService:
    """A Worker's share of its schedules: fires the slots that are due."""

    def __init__(self, queue: TaskQueue, schedules: Sequence[Schedule], who: str) -> None:
        self._queue = queue
        self._schedules = list(schedules)
        self._who = who
        self._declared = False

    def run_once(self, now: float) -> float:
        """Fire what is due; return (monotonic) when to look again: the next
        slot, and at least every LOOK_EVERY seconds."""
        if not self._schedules:
            return now + 3600.0
        queue = self._queue
        wall = queue.clock.time()
        if not self._declared:
            queue.declare_schedules(self._schedules)
            self._declared = True
        soonest = math.inf
        for schedule in self._schedules:
            fired = queue.fire_schedule(schedule, wall)
            for slot, task_id in fired:
                LOGGER.info(
                    "%s: schedule %r fired slot %s as task %d", self._who, schedule.name,
                    _iso(slot), task_id,
                    extra=new_task_fields(task_id, schedule.task_type, schedule.queue_name),
                )  # fmt: skip
            soonest = min(soonest, schedule.next_after(wall))
        return now + max(0.0, min(LOOK_EVERY, soonest - wall))
