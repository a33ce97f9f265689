from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from task_queue import HandlerRegistry, ManualClock, TaskQueue


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "queue.db")


@pytest.fixture
def queue(db_path: str) -> Iterator[TaskQueue]:
    q = TaskQueue(db_path)
    yield q
    q.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_queue(db_path: str, clock: ManualClock) -> Iterator[TaskQueue]:
    q = TaskQueue(db_path, clock=clock)
    yield q
    q.close()


@pytest.fixture
def registry() -> HandlerRegistry:
    return HandlerRegistry()
