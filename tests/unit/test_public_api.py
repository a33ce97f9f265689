"""The public API: what `from task_queue import ...` offers, pinned."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import task_queue

EXPECTED_ALL = [
    "TASK_HANDLERS",
    "AttemptRecord",
    "BatchRef",
    "Claim",
    "Clock",
    "DatabaseBusyError",
    "DatabaseOpenError",
    "DatabaseReplacedError",
    "DiskFullError",
    "DuplicateTaskError",
    "Event",
    "EventKind",
    "HandlerRegistry",
    "Hook",
    "ManualClock",
    "Middleware",
    "NotAQueueDatabaseError",
    "PayloadError",
    "QueueClosedError",
    "RateLimit",
    "ReadOnlyDatabaseError",
    "RetryPolicy",
    "Schedule",
    "ScheduleInfo",
    "SearchedTasks",
    "StatementTooLargeError",
    "StorageError",
    "SystemClock",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskFailedError",
    "TaskNotClaimedError",
    "TaskNotFoundError",
    "TaskPage",
    "TaskPriority",
    "TaskQueue",
    "TaskQueueError",
    "TaskSpec",
    "TaskStatus",
    "TaskTimeout",
    "UnsafeDatabaseFileError",
    "UnusableConnectionError",
    "Worker",
    "WorkerInfo",
    "WorkerOptions",
    "current_task",
    "handler",
    "periodic",
]


def test_all_is_pinned() -> None:
    assert task_queue.__all__ == EXPECTED_ALL


def test_every_name_in_all_imports() -> None:
    module = importlib.import_module("task_queue")
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from task_queue import *", namespace)
    assert set(EXPECTED_ALL) <= set(namespace)


def test_seed_md_import_line_in_a_fresh_interpreter() -> None:
    code = (
        "from task_queue import TaskQueue, TaskPriority, TaskStatus, Worker, TASK_HANDLERS\n"
        "import sys; print(sorted(m for m in sys.modules if m.startswith('task_queue')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "task_queue.queue" in out.stdout


def test_errors_form_one_tree() -> None:
    from task_queue import (
        DatabaseBusyError,
        DatabaseOpenError,
        DatabaseReplacedError,
        DiskFullError,
        DuplicateTaskError,
        NotAQueueDatabaseError,
        PayloadError,
        QueueClosedError,
        ReadOnlyDatabaseError,
        StatementTooLargeError,
        StorageError,
        TaskNotClaimedError,
        TaskNotFoundError,
        TaskQueueError,
        TaskTimeout,
        UnsafeDatabaseFileError,
        UnusableConnectionError,
    )

    for storage in (
        DatabaseBusyError,
        DatabaseOpenError,
        DiskFullError,
        NotAQueueDatabaseError,
        QueueClosedError,
        ReadOnlyDatabaseError,
        StatementTooLargeError,
        UnsafeDatabaseFileError,
        DatabaseReplacedError,
    ):
        assert issubclass(storage, StorageError)
    for error in (StorageError, PayloadError, TaskNotFoundError, TaskNotClaimedError,
                  DuplicateTaskError, TaskTimeout, UnusableConnectionError):  # fmt: skip
        assert issubclass(error, TaskQueueError)
    assert issubclass(PayloadError, TypeError)
    assert issubclass(TaskNotFoundError, KeyError)
    assert issubclass(TaskNotClaimedError, ValueError)
    assert issubclass(UnusableConnectionError, ValueError)
    assert str(TaskNotFoundError("no task with id 3")) == "no task with id 3"


def test_seed_md_signatures() -> None:
    from task_queue import TaskQueue

    enqueue = inspect.signature(TaskQueue.enqueue).parameters
    assert list(enqueue)[:7] == [
        "self",
        "name",
        "task_type",
        "payload",
        "priority",
        "scheduled_at",
        "max_retries",
    ]
    assert enqueue["max_retries"].default == 3
    assert enqueue["delay"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(TaskQueue.get_tasks_by_status).parameters["limit"].default == 10
    assert inspect.signature(TaskQueue).parameters["path"].default == "taskqueue.db"
    assert inspect.signature(TaskQueue).parameters["lease_seconds"].default == 30.0
    for name in (
        "enqueue", "enqueue_many", "dequeue", "claim", "complete_task", "fail_task",
        "cancel_task", "retry_task", "get_task", "get_queue_stats", "get_tasks_by_status",
        "purge", "rescue_expired", "release_task", "close", "__enter__", "__exit__",
    ):  # fmt: skip
        assert callable(getattr(TaskQueue, name)), name


def test_version_and_typed_marker() -> None:
    from importlib import resources

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert declared is not None and task_queue.__version__ == declared.group(1)
    assert resources.files("task_queue").joinpath("py.typed").is_file()
    assert resources.files("task_queue.storage.sqlite").joinpath("queries.sql").is_file()


def test_the_library_configures_no_logging() -> None:
    """It logs to "task_queue" with a NullHandler: importing it adds no
    handler elsewhere, and without the application's own configuration its
    warnings do not reach stderr through logging's last resort."""
    code = (
        "import logging, task_queue\n"
        "assert logging.getLogger().handlers == []\n"
        "handlers = logging.getLogger('task_queue').handlers\n"
        "assert [type(h).__name__ for h in handlers] == ['NullHandler'], handlers\n"
        "logging.getLogger('task_queue.worker').warning('not shown')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stderr == ""
