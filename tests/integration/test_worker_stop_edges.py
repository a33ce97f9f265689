"""Regressions around Worker.stop(): called from a handler, and a storage
fault that does not clear while outcomes wait to be written."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from support import wait_until

import task_queue.worker.worker as worker_module
from task_queue import HandlerRegistry, TaskQueue, TaskStatus, Worker


def test_stop_from_inside_a_handler_raises_instead_of_waiting_for_itself(
    queue: TaskQueue,
) -> None:
    registry = HandlerRegistry()
    worker = Worker(queue, registry, concurrency=1)
    seen: list[BaseException] = []

    def stopper(payload: Any) -> None:
        try:
            worker.stop()
        except RuntimeError as exc:
            seen.append(exc)

    registry["stop"] = stopper
    task_id = queue.enqueue("s", "stop")
    with worker:
        wait_until(lambda: queue.get_task(task_id).status == TaskStatus.COMPLETED)  # type: ignore[union-attr]
    assert seen and "its own handlers" in str(seen[0])


@pytest.mark.sqlite_only("a fault of the SQLite engine")
def test_stop_returns_despite_a_storage_fault_that_does_not_clear(
    db_path: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(worker_module, "MIN_FLUSH", 0.5)
    queue = TaskQueue(db_path)
    registry = HandlerRegistry()
    started: list[int] = []

    def big_result(payload: Any) -> str:
        started.append(1)
        # The disk "fills up" while the handler runs: its 1 MB result
        # cannot be written.
        queue.storage.set_max_size(0)  # type: ignore[attr-defined]
        return "x" * 1_000_000

    registry["big"] = big_result
    task_id = queue.enqueue("b", "big")
    worker = Worker(queue, registry, concurrency=1).start()
    try:
        wait_until(lambda: started)
        begun = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="task_queue"):
            worker.stop(timeout=0.1)
        assert time.monotonic() - begun < 10
        assert any("gave up recording" in r.getMessage() for r in caplog.records)
        # Not recorded: the task comes back through its lease (at least once).
        task = queue.get_task(task_id)
        assert task is not None and task.status == TaskStatus.RUNNING
    finally:
        queue.storage.set_max_size(None)  # type: ignore[attr-defined]
        queue.close()


class _TrippingRegistry(HandlerRegistry):
    """A registry whose lookup fails for one type: an error in the worker's
    own code path, outside any handler."""

    def get(self, key: str, default: Any = None) -> Any:
        if key == "trip":
            raise RuntimeError("registry lookup exploded")
        return super().get(key, default)


def test_internal_error_counts_as_a_failed_attempt_not_a_forever_running_task(
    queue: TaskQueue,
) -> None:
    registry = _TrippingRegistry()
    registry["trip"] = lambda payload: None
    registry["ok"] = lambda payload: payload
    trip = queue.enqueue("t", "trip", max_retries=0)
    with Worker(queue, registry, concurrency=1):
        wait_until(lambda: queue.get_task(trip).status == TaskStatus.FAILED)  # type: ignore[union-attr]
        ok = queue.enqueue("o", "ok", 7)  # the thread survived
        wait_until(lambda: queue.get_task(ok).status == TaskStatus.COMPLETED)  # type: ignore[union-attr]
    task = queue.get_task(trip)
    assert task is not None and "registry lookup exploded" in (task.error_message or "")
