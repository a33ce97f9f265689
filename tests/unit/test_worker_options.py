"""WorkerOptions validates every setting at construction, with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from task_queue import TaskQueue, Worker, WorkerOptions


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("concurrency", 0),
        ("concurrency", True),
        ("concurrency", 2.0),
        ("name", ""),
        ("poll_interval", 0),
        ("prefetch", 1.5),
        ("heartbeat_interval", -1),
        ("rescue_interval", 0),
        ("drain_timeout", -0.1),
        ("timeout_grace", float("nan")),
        ("idle_report_interval", 0),
        ("queues", ["bad name!"]),
    ],
)
def test_a_bad_setting_names_its_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field if field != "queues" else "queue"):
        WorkerOptions(**{field: value})


def test_a_negative_prefetch_means_none_ahead() -> None:
    assert WorkerOptions(prefetch=-3).prefetch == 0


def test_options_passed_where_concurrency_goes_say_how_to_pass_them(tmp_path: Path) -> None:
    # It used to fail with "concurrency must be an int >= 1, got WorkerOptions(...)".
    with TaskQueue(str(tmp_path / "q.db")) as q:
        with pytest.raises(TypeError, match="options="):
            Worker(q, {}, WorkerOptions(concurrency=2))  # type: ignore[arg-type]
        assert Worker(q, {}, options=WorkerOptions(concurrency=2)).concurrency == 2
