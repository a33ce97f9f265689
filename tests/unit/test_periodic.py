"""Periodic schedules: declaration, slots, misfire policies, DST (issue 9)."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from task_queue import HandlerRegistry, Schedule
from task_queue.periodic import MAX_CATCH_UP, ON_TIME

BERLIN = ZoneInfo("Europe/Berlin")
T = 1_800_000_000.0  # a multiple of 10, 60 and 3600... of every interval below


def at(*fields: int, tz: Any = BERLIN) -> float:
    return dt.datetime(*fields, tzinfo=tz).timestamp()


def test_periodic_stacks_on_handler_in_either_order() -> None:
    reg = HandlerRegistry()

    @reg.periodic(every=dt.timedelta(seconds=30), payload={"full": False})
    @reg.handler("sync")
    def sync(payload: Any) -> None: ...

    @reg.handler("report")
    @reg.periodic("0 3 * * *", tz="Europe/Berlin", name="nightly")
    def report(payload: Any) -> None: ...

    schedules = {s.name: s for s in reg.schedules()}
    assert set(schedules) == {"sync", "nightly"}
    assert schedules["sync"].every == 30.0 and schedules["sync"].payload == {"full": False}
    assert schedules["nightly"].task_type == "report" and schedules["nightly"].tz == "Europe/Berlin"
    assert schedules["nightly"].expression == "0 3 * * * (Europe/Berlin)"


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("61 * * * *",), {}, "bad cron expression"),
        (("not cron",), {}, "bad cron expression"),
        (("0 3 * * *",), {"tz": "Mars/Olympus"}, "unknown time zone"),
        (("0 3 * * *",), {"every": 60}, "not both"),
        ((), {}, "cron expression or every"),
        ((), {"every": -5}, "positive"),
        ((), {"every": 60, "misfire": "sometimes"}, "misfire"),
        ((), {"every": 60, "queue_name": "no spaces"}, "queue name"),
        ((), {"every": 60, "payload": {1, 2}}, "set"),
    ],
)
def test_bad_schedules_are_refused_at_declaration(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    reg = HandlerRegistry()
    with pytest.raises((ValueError, TypeError), match=match):
        reg.periodic(*args, **kwargs)


def test_interval_slots_are_multiples_of_the_interval() -> None:
    s = Schedule("t", every=60)
    assert s.next_after(T) == T + 60
    assert s.next_after(T + 1) == T + 60
    assert s.latest_at_or_before(T + 59) == T


def test_on_time_slots_fire_and_each_once() -> None:
    s = Schedule("t", every=1)
    assert s.due(T, T + 0.5) == []
    assert s.due(T, T + 1) == [T + 1]
    assert s.due(T, T + 3.2) == [T + 1, T + 2, T + 3]  # a short stall: all on time
    assert s.due(T + 3, T + 3.2) == []


def test_a_new_schedule_does_not_catch_up_on_the_past() -> None:
    s = Schedule("t", every=60)
    assert s.due(None, T + 5) == [T]  # its first slot, just passed
    assert s.due(None, T + 30) == []  # too late for that one: wait for the next


def test_misfire_latest_fires_only_the_last_missed_slot_within_the_grace() -> None:
    s = Schedule("t", every=60)
    # Down for ten minutes: slots T+60 .. T+600 missed.
    assert s.due(T, T + 600 + ON_TIME + 5) == [T + 600]
    assert s.due(T, T + 600 + 59) == [T + 600]  # within one interval (the grace)
    assert s.due(T, T + 600 + 61 + ON_TIME) == [T + 660]
    late = Schedule("t", every=60, grace=30)
    assert late.due(T, T + 600 + 45) == []  # outside its grace: nothing


def test_misfire_skip_fires_none_of_the_missed() -> None:
    s = Schedule("t", every=60, misfire="skip")
    assert s.due(T, T + 600 + ON_TIME + 1) == []
    assert s.due(T, T + 600 + 5) == [T + 600]  # on time: not a misfire


def test_misfire_all_fires_each_missed_slot_capped(caplog: pytest.LogCaptureFixture) -> None:
    s = Schedule("t", every=60, misfire="all")
    assert s.due(T, T + 300 + 1) == [T + 60, T + 120, T + 180, T + 240, T + 300]
    with caplog.at_level(logging.WARNING, logger="task_queue"):
        many = s.due(T, T + 60 * 1000 + 1)
    # The last 100 missed ones, and the one on time now.
    assert len(many) == MAX_CATCH_UP + 1 and many[-1] == T + 60 * 1000
    assert many[-2] - many[0] == 60 * (MAX_CATCH_UP - 1)
    assert "missed more than" in caplog.text


def test_cron_in_a_time_zone_across_the_dst_change_in_spring() -> None:
    """Berlin, 29 March 2026: 02:00-03:00 does not exist. cronsim (as Debian
    cron) fires a job of that hour at the first valid time after it."""
    s = Schedule("t", cron="30 2 * * *", tz="Europe/Berlin")
    fire = s.next_after(at(2026, 3, 28, 12, 0))
    assert fire == at(2026, 3, 29, 3, 0)
    assert s.next_after(fire) == at(2026, 3, 30, 2, 30)


def test_cron_in_a_time_zone_across_the_dst_change_in_autumn() -> None:
    """Berlin, 25 October 2026: 02:00-03:00 happens twice. A daily 02:30 job
    fires once (the first 02:30); an hourly job fires in both hours."""
    daily = Schedule("t", cron="30 2 * * *", tz="Europe/Berlin")
    first = daily.next_after(at(2026, 10, 24, 12, 0))
    assert first == dt.datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN).timestamp()
    assert daily.next_after(first) == at(2026, 10, 26, 2, 30)
    hourly = Schedule("t", cron="0 * * * *", tz="Europe/Berlin")
    t, seen = at(2026, 10, 25, 0, 30), []
    for _ in range(4):
        t = hourly.next_after(t)
        seen.append(t)
    assert [b - a for a, b in itertools.pairwise(seen)] == [3600.0, 3600.0, 3600.0]


def test_six_field_cron_has_seconds_first() -> None:
    s = Schedule("t", cron="*/15 * * * * *")
    assert s.next_after(T) == T + 15
