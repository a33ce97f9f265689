"""The seed API's usage examples (README, "Where it comes from"), run as
written (only the file path, the worker loop's exit condition and the
handlers' bodies are ours)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest

from task_queue import TASK_HANDLERS, TaskPriority, TaskQueue, TaskStatus


@pytest.fixture
def seed_handlers() -> Any:
    saved = dict(TASK_HANDLERS)
    yield
    TASK_HANDLERS.clear()
    TASK_HANDLERS.update(saved)


def test_seed_md_examples_run_as_written(tmp_path: Any, seed_handlers: None) -> None:
    queue = TaskQueue(str(tmp_path / "taskqueue.db"))

    # Basic Task Enqueueing
    task_id = queue.enqueue(
        name="Send welcome email",
        task_type="send_email",
        payload={"to": "user@example.com", "subject": "Welcome!"},
        priority=TaskPriority.HIGH,
    )

    # Scheduled Tasks
    scheduled_time = datetime.now() + timedelta(hours=1)
    queue.enqueue(name="Daily cleanup", task_type="cleanup", scheduled_at=scheduled_time)

    # Retry Configuration
    queue.enqueue(name="Flaky task", task_type="external_api", max_retries=0, payload={"url": "x"})

    # Custom Task Handlers
    def custom_handler(payload: dict[str, Any]) -> dict[str, Any]:
        result = payload["to"].upper()
        return {"success": True, "data": result}

    def failing_handler(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("upstream is down")

    TASK_HANDLERS["send_email"] = custom_handler
    TASK_HANDLERS["external_api"] = failing_handler

    def process_task(task: Any) -> Any:
        return TASK_HANDLERS[task["task_type"]](task["payload"])

    # Processing Tasks + Error Handling
    def worker_process(queue: TaskQueue) -> None:
        while True:
            task = queue.dequeue()
            if not task:
                return  # the seed's loop runs forever; a test must end
            try:
                result = process_task(task)
                queue.complete_task(task["id"], result)
            except Exception as e:
                queue.fail_task(task["id"], str(e))

    threads = [threading.Thread(target=worker_process, args=(queue,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    # Monitoring Queue
    stats = queue.get_queue_stats()
    assert (stats["pending"], stats["running"], stats["completed"]) == (1, 0, 1)
    assert stats["failed"] == 1
    completed_tasks = queue.get_tasks_by_status(TaskStatus.COMPLETED, limit=10)
    assert [t["id"] for t in completed_tasks] == [task_id]
    assert completed_tasks[0]["result"] == {"success": True, "data": "USER@EXAMPLE.COM"}
    failed = queue.get_tasks_by_status(TaskStatus.FAILED)[0]
    assert failed["error_message"] == "upstream is down"
    assert "RuntimeError" in (failed["error_traceback"] or "")  # kept from the except block
    queue.close()
