"""Log lines about a task carry its id, type, queue and attempt as ``extra``
fields (a JSON formatter picks them up); the happy path logs nothing at
WARNING or above; every retry, rescue, timeout and fenced-out write is logged
once, with the reason (issue 11, section 5)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

import pytest
from support import wait_until

from task_queue import ManualClock, RetryPolicy, TaskQueue, Worker, current_task

FIELDS = ("task_id", "task_type", "queue", "attempt")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="task_queue")
    return caplog


def records(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.DEBUG):
    return [
        r
        for r in caplog.records
        if r.name.startswith("task_queue") and r.levelno >= level and text in r.getMessage()
    ]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name, "<missing>") for name in FIELDS}


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in records(caplog, "", logging.WARNING)]


def test_the_happy_path_logs_no_warning_and_each_task_line_has_its_fields(
    db_path: str, logs: pytest.LogCaptureFixture
) -> None:
    with TaskQueue(db_path) as queue:
        ids = [queue.enqueue(f"t{i}", "echo", i, queue_name="q1") for i in range(20)]
        ids += [queue.enqueue("by-hand", "manual")]
        with Worker(queue, {"echo": lambda p: p}, concurrency=3, queues=["q1"]):
            for task_id in ids[:-1]:
                queue.wait(task_id, timeout=10)
        task = queue.dequeue(task_types=["manual"])
        assert task is not None and queue.complete_task(task, "done")
    assert warnings(logs) == []
    completed = records(logs, "completed in")
    assert sorted(r.task_id for r in completed) == ids[:-1]  # type: ignore[attr-defined]
    for record in completed:
        assert fields(record) == {
            "task_id": record.task_id,  # type: ignore[attr-defined]
            "task_type": "echo",
            "queue": "q1",
            "attempt": 1,
        }
        assert record.duration >= 0  # type: ignore[attr-defined]
    for record in records(logs, "') started"):
        assert fields(record)["task_type"] == "echo"
    about_one_task = [r for r in records(logs, "") if re.search(r"\btask \d+\b", r.getMessage())]
    assert len(about_one_task) >= 40
    for record in about_one_task:
        task_id = int(re.search(r"\btask (\d+)\b", record.getMessage()).group(1))  # type: ignore[union-attr]
        assert fields(record)["task_id"] == task_id, record.getMessage()


def test_a_json_formatter_gets_the_fields_without_parsing_the_message(
    db_path: str, logs: pytest.LogCaptureFixture
) -> None:
    class Json(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            doc = {"message": record.getMessage()}
            doc.update({k: v for k, v in vars(record).items() if k in FIELDS})
            return json.dumps(doc)

    with TaskQueue(db_path) as queue:
        task_id = queue.enqueue("x\nforged line", "t\x1b[31m")  # hostile: escaped in the message
        with Worker(queue, {"t\x1b[31m": lambda p: None}, concurrency=1):
            queue.wait(task_id, timeout=10)
    [record] = records(logs, "completed in")
    doc = json.loads(Json().format(record))
    assert doc["task_id"] == task_id and doc["task_type"] == "t\x1b[31m"
    assert doc["queue"] == "default" and doc["attempt"] == 1
    assert "\n" not in doc["message"]


def test_each_retry_is_logged_once_with_its_reason(
    db_path: str, logs: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def flaky(payload: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError(f"flaky #{len(calls)}")
        return "ok"

    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0)) as queue:
        task_id = queue.enqueue("flaky", "flaky", max_retries=5, queue_name="q")
        with Worker(queue, {"flaky": flaky}, concurrency=1):
            assert queue.result(task_id, timeout=10) == "ok"
    failed = records(logs, "failed after")
    assert [r.levelno for r in failed] == [logging.WARNING, logging.WARNING]
    assert [fields(r) for r in failed] == [
        {"task_id": task_id, "task_type": "flaky", "queue": "q", "attempt": n} for n in (1, 2)
    ]
    assert "flaky #1" in failed[0].getMessage() and "retrying in" in failed[0].getMessage()
    assert failed[0].error_class == "builtins.ValueError"  # type: ignore[attr-defined]
    assert warnings(logs) == [r.getMessage() for r in failed]  # nothing else


def test_a_timeout_is_logged_once_then_its_failure_once(
    db_path: str, logs: pytest.LogCaptureFixture
) -> None:
    def spin(payload: Any) -> None:
        while True:  # Python code: the asynchronous TaskTimeout stops it
            time.sleep(0.001)

    with TaskQueue(db_path) as queue:
        task_id = queue.enqueue("spin", "spin", timeout=0.2, max_retries=0)
        with Worker(queue, {"spin": spin}, concurrency=1):
            task = queue.wait(task_id, timeout=20)
    assert task.status == "failed"
    [timeout] = records(logs, "ran past its")
    assert timeout.levelno == logging.WARNING
    assert fields(timeout) == {"task_id": task_id, "task_type": "spin", "queue": "default",
                               "attempt": 1}  # fmt: skip
    assert timeout.timeout == 0.2  # type: ignore[attr-defined]
    [failure] = records(logs, "failed after")
    assert "TaskTimeout" in failure.getMessage() and "failed for good" in failure.getMessage()
    assert failure.error_class == "task_queue.errors.TaskTimeout"  # type: ignore[attr-defined]
    assert len(warnings(logs)) == 2


def test_a_rescue_is_logged_once_per_task_with_the_reason(
    db_path: str, logs: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    with TaskQueue(db_path, clock=clock, lease_seconds=5) as queue:
        ids = [queue.enqueue(f"t{i}", "t", queue_name="q") for i in range(2)]
        held = queue.claim(2, remember=False)  # nobody renews them
        assert sorted(t.id for t in held) == ids
        clock.advance(6)
        assert queue.rescue_expired() == 2
        assert queue.rescue_expired() == 0
    rescued = records(logs, "rescued task")
    assert sorted(r.task_id for r in rescued) == ids  # type: ignore[attr-defined]
    for record in rescued:
        assert record.levelno == logging.WARNING
        assert fields(record)["queue"] == "q" and fields(record)["attempt"] == 1
        assert "lease ran out 1.0s ago" in record.getMessage()
        assert "pending again" in record.getMessage()
    assert len(warnings(logs)) == 2


def test_fenced_out_writes_are_logged_once_with_the_reason(
    db_path: str, logs: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    with TaskQueue(db_path, clock=clock, lease_seconds=5) as queue:
        cancelled_id = queue.enqueue("c", "t")
        rescued_id = queue.enqueue("r", "t")
        tasks = {t.id: t for t in queue.claim(2, remember=False)}
        assert queue.cancel_task(cancelled_id)
        assert queue.complete_task(tasks[cancelled_id], "late") is False
        clock.advance(6)
        queue.rescue_expired()
        assert queue.fail_task(tasks[rescued_id], "late failure") is False
    [completion] = records(logs, "completion not recorded")
    assert fields(completion)["task_id"] == cancelled_id
    assert "(it was cancelled)" in completion.getMessage()
    [failure] = records(logs, "failure not recorded")
    assert fields(failure)["task_id"] == rescued_id
    assert "it was rescued after its lease ran out: now pending" in failure.getMessage()
    assert len(records(logs, "not recorded")) == 2


def test_a_cancelled_running_task_is_info_and_a_lost_claim_a_warning(
    db_path: str, logs: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()

    def wait_for_cancel(payload: Any) -> None:
        started.set()
        ctx = current_task()
        assert ctx is not None
        ctx.wait(10)

    with TaskQueue(db_path, lease_seconds=0.3) as queue:
        task_id = queue.enqueue("long", "long")
        with Worker(queue, {"long": wait_for_cancel}, concurrency=1):
            assert started.wait(10)
            queue.cancel_task(task_id)
            wait_until(lambda: records(logs, "outcome discarded"))
    [lost] = records(logs, "claim no longer held")
    assert lost.levelno == logging.INFO and "(it was cancelled)" in lost.getMessage()
    assert fields(lost) == {"task_id": task_id, "task_type": "long", "queue": "default",
                            "attempt": 1}  # fmt: skip
    assert warnings(logs) == []


def test_a_lost_claim_taken_with_dequeue_is_logged_once_with_its_fields(
    db_path: str, logs: pytest.LogCaptureFixture
) -> None:
    with TaskQueue(db_path, lease_seconds=0.3) as queue:
        task_id = queue.enqueue("held", "t", queue_name="q")
        task = queue.dequeue()  # this TaskQueue renews it, every lease / 3
        assert task is not None and task.id == task_id
        queue.cancel_task(task_id)
        [lost] = wait_until(lambda: records(logs, "taken with dequeue() is no longer held"))
        time.sleep(0.3)  # a few more renewals: still one line
        assert len(records(logs, "taken with dequeue() is no longer held")) == 1
    assert lost.levelno == logging.WARNING
    assert fields(lost) == {"task_id": task_id, "task_type": "t", "queue": "q", "attempt": 1}
