"""Payloads that attack the encoder itself, and callers already deep in their stack.

Whatever goes wrong while looking at or encoding a payload is a PayloadError
with a message saying what, never a RuntimeError escaping from a hostile
``__repr__`` nor a RecursionError because the caller was already deep when
it called ``enqueue()``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from task_queue import PayloadError, TaskQueue
from task_queue.payload import MAX_DEPTH

T = TypeVar("T")


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr refused")

    def __hash__(self) -> int:
        return 1


class BadReprFloat(float):
    def __repr__(self) -> str:
        raise RuntimeError("repr refused")


class ExplodingDict(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("items refused")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("iteration refused")


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def assert_empty(q: TaskQueue) -> None:
    assert set(q.get_queue_stats().values()) == {0}


HOSTILE: dict[str, Any] = {
    "key whose repr raises": {BadRepr(): 1},
    "nested key whose repr raises": {"a": [{BadRepr(): 1}]},
    "NaN whose repr raises": {"x": BadReprFloat("nan")},
    "value whose repr raises": [BadRepr()],
    "mapping whose items() raises": {"inner": ExplodingDict(a=1)},
}


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_objects_are_payload_errors(queue: TaskQueue, payload: Any) -> None:
    with pytest.raises(PayloadError, match="payload"):
        queue.enqueue("bad", "t", payload)
    with pytest.raises(PayloadError):
        queue.enqueue_many([{"name": "bad", "task_type": "t", "payload": payload}])
    assert_empty(queue)


def _depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


def at_depth(target: int, fn: Callable[[], T]) -> T:
    """Call ``fn`` once the stack is ``target`` frames deep."""
    if _depth() >= target:
        return fn()
    return at_depth(target, fn)


def test_a_deep_caller_can_enqueue_and_dequeue_a_nested_payload(queue: TaskQueue) -> None:
    payload = {"tree": nested(MAX_DEPTH - 10)}
    # Enough stack left for enqueue() itself, not for a recursion as deep as
    # the payload: the encoder must not need the caller's stack.
    target = sys.getrecursionlimit() - 60
    task_id = at_depth(target, lambda: queue.enqueue("deep", "t", payload))
    task = at_depth(target, lambda: queue.dequeue())
    assert task is not None and task.id == task_id
    assert task.payload == payload


def test_a_recursion_limit_below_the_nesting_is_a_payload_error(queue: TaskQueue) -> None:
    payload = nested(MAX_DEPTH - 5)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(_depth() + 40, MAX_DEPTH // 2))
    try:
        with pytest.raises(PayloadError, match="recursion limit"):
            queue.enqueue("too deep for this interpreter", "t", payload)
    finally:
        sys.setrecursionlimit(limit)
    assert_empty(queue)
