"""TaskSpec on its own: validation when built, errors that name the field
(and the batch item), and encode() resolving due times against ``now``.
No database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from typing import Any

import pytest

from task_queue.errors import PayloadError
from task_queue.spec import TaskSpec, parse_priority
from task_queue.task import TaskPriority

NOW = 1_700_000_000.0


def spec(**fields: Any) -> TaskSpec:
    fields.setdefault("name", "t")
    fields.setdefault("task_type", "job")
    return TaskSpec(**fields)


# -- validation: each bad field raises, naming the field --------------------------

BAD_FIELDS = [
    # (field, value, exception)
    ("name", 5, TypeError),
    ("name", None, TypeError),
    ("name", "bad \ud800 text", ValueError),
    ("task_type", "", ValueError),
    ("task_type", None, ValueError),
    ("task_type", 3, ValueError),
    ("task_type", "a\x00b", ValueError),
    ("task_type", "\udfff", ValueError),
    ("unique_key", "", ValueError),
    ("unique_key", 42, ValueError),
    ("unique_key", "\ud800", ValueError),
    ("max_retries", -1, ValueError),
    ("max_retries", 2**63, ValueError),
    ("max_retries", 1.0, ValueError),
    ("max_retries", True, ValueError),
    ("max_retries", "3", ValueError),
    ("timeout", 0, ValueError),
    ("timeout", -1.0, ValueError),
    ("timeout", math.nan, ValueError),
    ("timeout", math.inf, ValueError),
    ("timeout", True, ValueError),
    ("timeout", "5", ValueError),
    ("priority", "URGENT", ValueError),
    # Any int from -100 to 100 is a priority (Django's range): only
    # those outside it, and bools, are refused.
    ("priority", 101, ValueError),
    ("priority", -101, ValueError),
    ("priority", 2**63, ValueError),
    ("priority", True, ValueError),
    ("priority", False, ValueError),
    ("priority", 2.5, ValueError),
    ("priority", None, ValueError),
    ("scheduled_at", "tomorrow", TypeError),
    ("scheduled_at", True, TypeError),
    ("scheduled_at", math.nan, ValueError),
    ("scheduled_at", math.inf, ValueError),
    ("delay", -1.0, ValueError),
    ("delay", math.nan, ValueError),
    ("delay", math.inf, ValueError),
    ("delay", dt.timedelta(seconds=-1), ValueError),
    ("delay", "5", TypeError),
    ("delay", True, TypeError),
]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    BAD_FIELDS,
    ids=[f"{field}={value!r}" for field, value, _ in BAD_FIELDS],
)
def test_a_bad_field_is_refused_naming_it(field: str, value: Any, error: type) -> None:
    with pytest.raises(error) as info:
        spec(**{field: value})
    # Priority errors say "priority" ("unknown priority ..."); the rest
    # name the field itself.
    assert field in str(info.value)


def test_scheduled_at_and_delay_together_are_refused() -> None:
    with pytest.raises(ValueError, match="scheduled_at or delay"):
        spec(scheduled_at=NOW + 5, delay=5.0)


def test_a_spec_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec().name = "other"  # type: ignore[misc]


def test_good_edge_values_are_accepted() -> None:
    spec(max_retries=0)
    spec(max_retries=2**63 - 1)
    spec(timeout=0.001)
    spec(delay=0)
    spec(delay=dt.timedelta(0))
    spec(scheduled_at=0)
    spec(unique_key="k", name="", task_type="x")  # a name may be empty; a type may not


# -- priority --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TaskPriority.HIGH, TaskPriority.HIGH),
        (1, TaskPriority.LOW),
        (4, TaskPriority.CRITICAL),
        ("normal", TaskPriority.NORMAL),
        ("High", TaskPriority.HIGH),
        ("CRITICAL", TaskPriority.CRITICAL),
    ],
)
def test_priority_from_enum_int_or_name(value: Any, expected: TaskPriority) -> None:
    made = spec(priority=value)
    assert made.priority is expected
    assert parse_priority(value) is expected
    assert made.encode(NOW).priority == int(expected)


@pytest.mark.parametrize("value", [-100, -1, 0, 5, 50, 100])
def test_any_int_from_minus_100_to_100_is_a_priority(value: int) -> None:
    made = spec(priority=value)
    assert made.priority == value
    assert type(made.priority) is int  # not a TaskPriority: only 1..4 have names
    assert made.encode(NOW).priority == value


def test_an_out_of_range_priority_names_the_range() -> None:
    with pytest.raises(ValueError, match=r"out of range.*-100 to 100"):
        spec(priority=101)


def test_an_unknown_priority_name_lists_the_names() -> None:
    with pytest.raises(ValueError, match=r"LOW.*NORMAL.*HIGH.*CRITICAL"):
        spec(priority="urgent")


# -- from_mapping ------------------------------------------------------------------


def test_from_mapping_builds_the_same_spec() -> None:
    fields = {"name": "n", "task_type": "job", "payload": [1], "priority": "LOW", "delay": 3}
    assert TaskSpec.from_mapping(fields, 0) == TaskSpec(**fields)


def test_from_mapping_errors_name_the_item() -> None:
    with pytest.raises(TypeError, match=r"^task #3 is list, not a mapping"):
        TaskSpec.from_mapping(["name", "job"], 3)
    with pytest.raises(TypeError, match=r"^task #3 has unknown keys: \['colour', 'size'\]"):
        TaskSpec.from_mapping({"name": "n", "task_type": "j", "size": 1, "colour": "red"}, 3)
    with pytest.raises(ValueError, match=r"^task #3: max_retries must be"):
        TaskSpec.from_mapping({"name": "n", "task_type": "j", "max_retries": -1}, 3)
    with pytest.raises(TypeError, match=r"^task #3: .*delay"):
        TaskSpec.from_mapping({"name": "n", "task_type": "j", "delay": "soon"}, 3)


def test_from_mapping_without_a_required_field_names_the_item() -> None:
    with pytest.raises(TypeError, match=r"^task #7: .*task_type"):
        TaskSpec.from_mapping({"name": "n"}, 7)


# -- encode ----------------------------------------------------------------------


def test_encode_without_a_time_is_due_now() -> None:
    row = spec().encode(NOW)
    assert (row.run_at, row.scheduled_at) == (NOW, None)


@pytest.mark.parametrize("delay", [12.5, 12, dt.timedelta(seconds=12.5)])
def test_encode_resolves_a_delay_against_now(delay: float | dt.timedelta) -> None:
    made = spec(delay=delay)
    expected = NOW + (12.5 if delay != 12 else 12)
    assert (made.encode(NOW).run_at, made.encode(NOW).scheduled_at) == (expected, expected)
    # The same spec encoded later is due later: the delay is from *its* now.
    assert made.encode(NOW + 100).run_at == expected + 100


def test_encode_keeps_a_zero_delay_as_a_scheduled_time() -> None:
    row = spec(delay=0).encode(NOW)
    assert (row.run_at, row.scheduled_at) == (NOW, NOW)


def test_encode_takes_scheduled_at_as_given_whatever_now_is() -> None:
    made = spec(scheduled_at=NOW + 60)
    for now in (NOW, NOW + 3600):  # a time in the past stays in the past: due at once
        row = made.encode(now)
        assert (row.run_at, row.scheduled_at) == (NOW + 60, NOW + 60)


def test_encode_converts_datetimes_to_epoch_seconds() -> None:
    aware = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert spec(scheduled_at=aware).encode(NOW).run_at == aware.timestamp()
    naive = dt.datetime(2024, 1, 2, 3, 4, 5)  # local time, as datetime.now() gives
    assert spec(scheduled_at=naive).encode(NOW).run_at == naive.timestamp()


def test_encode_produces_the_row_to_insert() -> None:
    row = spec(
        name="resize",
        task_type="image",
        payload={"b": [1, 2], "a": "é"},
        priority="HIGH",
        max_retries=7,
        timeout=5,
        unique_key="img:1",
    ).encode(NOW)
    assert (row.name, row.task_type, row.priority, row.max_retries) == ("resize", "image", 3, 7)
    assert json.loads(row.payload or "") == {"b": [1, 2], "a": "é"}
    assert row.timeout == 5.0 and isinstance(row.timeout, float)
    assert row.unique_key == "img:1"


def test_encode_of_no_payload_is_none() -> None:
    assert spec().encode(NOW).payload is None


def test_a_payload_that_is_not_plain_json_fails_at_encode() -> None:
    made = spec(payload={1, 2})  # building the spec does not encode it
    with pytest.raises(PayloadError):
        made.encode(NOW)


def test_encode_limits_the_payload_size() -> None:
    made = spec(payload="x" * 100)
    made.encode(NOW, max_payload_bytes=200)
    with pytest.raises(PayloadError):
        made.encode(NOW, max_payload_bytes=50)
