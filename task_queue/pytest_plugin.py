"""pytest fixtures for testing code that uses task_queue (registered as a
``pytest11`` plugin: installed task_queue, available in every test).

* ``tq_queue``: a fresh :class:`~task_queue.TaskQueue` on a file in the
  test's temporary directory, closed after the test. When the test also
  asks for ``tq_clock``, the queue runs on that clock.
* ``tq_clock``: a :class:`~task_queue.ManualClock` (move time with
  ``tq_clock.advance(seconds)`` instead of sleeping).

Run what the code under test enqueued with :func:`task_queue.testing.drain`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .clock import ManualClock
from .queue import TaskQueue


@pytest.fixture
def tq_clock() -> ManualClock:
    """A ManualClock for the queue of ``tq_queue`` (when both are asked for)."""
    return ManualClock()


@pytest.fixture
def tq_queue(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TaskQueue]:
    """A fresh TaskQueue on ``tmp_path / "tasks.db"``, closed at teardown; on
    the ``tq_clock`` ManualClock if the test uses that fixture too."""
    clock = request.getfixturevalue("tq_clock") if "tq_clock" in request.fixturenames else None
    queue = TaskQueue(tmp_path / "tasks.db", clock=clock)
    try:
        yield queue
    finally:
        queue.close()
