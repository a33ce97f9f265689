"""Hooks on their own: order, isolation of a raising hook, lazy building,
add and remove. No database."""

from __future__ import annotations

import logging

import pytest

from task_queue.events import Event, EventKind, Hooks


def event(task_id: int = 1, kind: EventKind = EventKind.COMPLETED) -> Event:
    return Event(kind, task_id)


def test_emit_calls_every_hook_in_the_order_added() -> None:
    hooks = Hooks()
    calls: list[tuple[str, int]] = []
    for name in ("a", "b", "c"):
        hooks.add(lambda e, name=name: calls.append((name, e.task_id)))
    hooks.emit(event(1))
    hooks.emit(event(2))
    assert calls == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2), ("c", 2)]


def test_a_raising_hook_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = Hooks()
    seen: list[str] = []

    def broken(e: Event) -> None:
        seen.append("broken")
        raise RuntimeError("hook bug")

    hooks.add(lambda e: seen.append("before"))
    hooks.add(broken)
    hooks.add(lambda e: seen.append("after"))
    with caplog.at_level(logging.ERROR, logger="task_queue.events"):
        hooks.emit(event(42, EventKind.DEAD_LETTERED))  # does not raise
    assert seen == ["before", "broken", "after"]
    [record] = [r for r in caplog.records if r.name == "task_queue.events"]
    assert record.levelno == logging.ERROR
    assert "dead_lettered" in record.getMessage()
    assert "42" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


def test_emit_lazy_builds_nothing_without_hooks() -> None:
    hooks = Hooks()
    built: list[int] = []

    def build() -> list[Event]:
        built.append(1)
        return [event()]

    hooks.emit_lazy(build)
    assert built == []
    assert not hooks


def test_emit_lazy_emits_what_it_builds_once_a_hook_listens() -> None:
    hooks = Hooks()
    seen: list[int] = []
    hooks.add(lambda e: seen.append(e.task_id))
    built: list[int] = []

    def build() -> list[Event]:
        built.append(1)
        return [event(1), event(2), event(3)]

    hooks.emit_lazy(build)
    assert built == [1]
    assert seen == [1, 2, 3]


def test_remove_stops_calling_the_hook() -> None:
    hooks = Hooks()
    seen: list[str] = []

    def a(e: Event) -> None:
        seen.append("a")

    def b(e: Event) -> None:
        seen.append("b")

    hooks.add(a)
    hooks.add(b)
    hooks.remove(a)
    hooks.emit(event())
    assert seen == ["b"]
    hooks.remove(b)
    assert not hooks
    hooks.emit(event())
    assert seen == ["b"]


def test_remove_of_a_hook_never_added_is_harmless() -> None:
    hooks = Hooks()
    hooks.remove(lambda e: None)
    assert not hooks


def test_a_hook_added_twice_runs_twice_and_is_removed_entirely() -> None:
    hooks = Hooks()
    seen: list[int] = []

    def hook(e: Event) -> None:
        seen.append(e.task_id)

    hooks.add(hook)
    hooks.add(hook)
    hooks.emit(event(5))
    assert seen == [5, 5]
    hooks.remove(hook)
    assert not hooks


def test_changes_made_during_an_emit_apply_from_the_next_event() -> None:
    # emit runs over the hooks as they were when it started.
    hooks = Hooks()
    seen: list[str] = []

    def late(e: Event) -> None:
        seen.append(f"late{e.task_id}")

    def first(e: Event) -> None:
        seen.append(f"first{e.task_id}")
        hooks.remove(first)
        hooks.add(late)

    hooks.add(first)
    hooks.emit(event(1))
    hooks.emit(event(2))
    assert seen == ["first1", "late2"]


def test_a_hook_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        Hooks().add("not a function")  # type: ignore[arg-type]


def test_a_callable_object_is_a_hook() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.kinds: list[EventKind] = []

        def __call__(self, e: Event) -> None:
            self.kinds.append(e.kind)

    recorder = Recorder()
    hooks = Hooks()
    hooks.add(recorder)
    hooks.emit(event(kind=EventKind.RESCUED))
    assert recorder.kinds == [EventKind.RESCUED]


def test_event_kinds_print_as_their_values() -> None:
    assert str(EventKind.RETRY_SCHEDULED) == "retry_scheduled"
    assert EventKind("lease_lost") is EventKind.LEASE_LOST
