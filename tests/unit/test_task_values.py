"""task_from_values(): the storage's fast way to make a Task from a row
builds exactly what Task(...) builds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from task_queue import Task, TaskPriority, TaskStatus
from task_queue.task import Claim, task_from_values

_optional_float = st.none() | st.floats(allow_nan=False)
_optional_text = st.none() | st.text(max_size=20)
_json = st.none() | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)

_FIELDS: dict[str, Any] = {
    "id": st.integers(1, 2**63 - 1),
    "name": st.text(max_size=20),
    "task_type": st.text(min_size=1, max_size=20),
    "payload": _json,
    "priority": st.sampled_from(list(TaskPriority)) | st.integers(-100, 100),
    "status": st.sampled_from(list(TaskStatus)),
    "worker_id": _optional_text,
    "created_at": st.floats(allow_nan=False),
    "scheduled_at": _optional_float,
    "started_at": _optional_float,
    "completed_at": _optional_float,
    "max_retries": st.integers(0, 10),
    "retry_count": st.integers(0, 10),
    "error_message": _optional_text,
    "result": _json,
    "attempts": st.integers(0, 10),
    "run_at": st.floats(allow_nan=False),
    "lease_expires_at": _optional_float,
    "claim_token": st.none() | st.integers(1, 2**63 - 1),
    "timeout": _optional_float,
    "unique_key": _optional_text,
    "error_traceback": _optional_text,
    "owner_host": _optional_text,
    "owner_pid": st.none() | st.integers(1, 2**22),
    "queue_name": st.text(min_size=1, max_size=10),
    "progress": _json,
    "depends_on": st.lists(st.integers(1, 100), max_size=3).map(tuple),
    "waiting_on": st.integers(0, 3),
    "first_started_at": _optional_float,
    "meta": _json,
    "concurrency_key": _optional_text,
}


def test_the_strategy_covers_every_field() -> None:
    assert tuple(_FIELDS) == Task.keys(Task)  # type: ignore[arg-type]


@given(st.fixed_dictionaries(_FIELDS))
def test_it_makes_what_the_constructor_makes(fields: dict[str, Any]) -> None:
    fast = task_from_values([fields[name] for name in _FIELDS])
    slow = Task(**fields)
    assert fast == slow and fast.to_dict() == slow.to_dict()
    assert fast.claim == slow.claim == Claim(fields["id"], fields["claim_token"] or 0)
    assert hash(fast) == hash(slow) if _hashable(slow) else True


def _hashable(task: Task) -> bool:
    try:
        hash(task)
    except TypeError:  # a dict payload
        return False
    return True


def test_the_task_it_makes_is_as_frozen_as_any() -> None:
    values: list[Any] = [None] * len(Task.keys(Task))  # type: ignore[arg-type]
    values[0] = 7
    task = task_from_values(values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.status = TaskStatus.FAILED  # type: ignore[misc]
    assert task.claim == Claim(7, 0)


def test_a_wrong_number_of_values_is_refused() -> None:
    with pytest.raises(ValueError):
        task_from_values([1, "n", "t"])
