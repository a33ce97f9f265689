"""An interrupt that ends enqueue() before anything was handed to the storage.

Ctrl-C lands between two bytecodes, so also in the call's own checks and
encoding, before the write exists anywhere. It then says nothing was written
(``task_ids == []``, README "Ctrl-C during enqueue()"): under load, a storm of
SIGINTs found such interrupts carrying no ``task_ids`` at all. Here each phase
is made to raise deterministically; the storms are in
tests/processes/test_signal_reentry.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest

from task_queue import Middleware, TaskQueue, TaskSpec


class InterruptingName(str):
    """A task name whose Unicode check is interrupted (as if Ctrl-C landed there)."""

    notes: ClassVar[dict[str, Any]] = {}

    def isascii(self) -> bool:
        exc = KeyboardInterrupt()
        for name, value in self.notes.items():
            setattr(exc, name, value)
        raise exc


class NestedNotes(InterruptingName):
    """The interrupt already carries another call's outcome: a signal handler
    that enqueued, and was itself interrupted, inside this call's checks."""

    notes: ClassVar[dict[str, Any]] = {
        "task_ids": [12345],
        "task_queue_result": [(12345, True)],
    }


class InterruptBefore(Middleware):
    def before_enqueue(self, spec: TaskSpec) -> None:
        raise KeyboardInterrupt


class InterruptAround(Middleware):
    def around_enqueue(self, specs: Sequence[TaskSpec], enqueue: Callable[[], list[int]]) -> Any:
        raise KeyboardInterrupt


def enqueue_one(queue: TaskQueue, name: str) -> None:
    queue.enqueue(name, "t")


def enqueue_two(queue: TaskQueue, name: str) -> None:
    queue.enqueue_many([{"name": "first", "task_type": "t"}, {"name": name, "task_type": "t"}])


CALLS = {"enqueue": enqueue_one, "enqueue_many": enqueue_two}


def assert_nothing_stored(queue: TaskQueue, info: pytest.ExceptionInfo[KeyboardInterrupt]) -> None:
    assert info.value.task_ids == []  # type: ignore[attr-defined]
    assert queue.get_queue_stats()["pending"] == 0


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("name_type", [InterruptingName, NestedNotes], ids=["plain", "nested"])
def test_an_interrupt_in_the_argument_checks_says_nothing_was_written(
    db_path: str, call: str, name_type: type[str]
) -> None:
    with TaskQueue(db_path) as queue:
        with pytest.raises(KeyboardInterrupt) as info:
            CALLS[call](queue, name_type("\u00e9t\u00e9"))
        assert_nothing_stored(queue, info)
        assert not hasattr(info.value, "task_queue_result")  # the nested call's note is gone


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("middleware", [InterruptBefore, InterruptAround])
def test_an_interrupt_in_middleware_before_the_write_says_nothing_was_written(
    db_path: str, call: str, middleware: type[Middleware]
) -> None:
    with TaskQueue(db_path, hooks=[middleware()]) as queue:
        with pytest.raises(KeyboardInterrupt) as info:
            CALLS[call](queue, "x")
        assert_nothing_stored(queue, info)


@pytest.mark.sqlite_only("the application's own sqlite3 connection")
def test_an_interrupt_before_a_transactional_enqueue_says_nothing_was_written(
    db_path: str,
) -> None:
    with TaskQueue(db_path) as queue:
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            with pytest.raises(KeyboardInterrupt) as info:
                queue.enqueue(InterruptingName("\u00e9"), "t", connection=conn)
            assert info.value.task_ids == []  # type: ignore[attr-defined]
            conn.execute("COMMIT")
        finally:
            conn.close()
        assert queue.get_queue_stats()["pending"] == 0


def test_an_ordinary_error_in_the_checks_is_raised_as_it_is(db_path: str) -> None:
    """Only interrupts are noted: a refused argument is its own answer."""
    with TaskQueue(db_path) as queue, pytest.raises(ValueError) as info:
        queue.enqueue("x", "t", max_retries=-1)
    assert not hasattr(info.value, "task_ids")
