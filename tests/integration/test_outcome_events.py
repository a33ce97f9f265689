"""What the command's worker log is built on: outcome events carry how long
the handler ran (both ways a Worker commits completions: with its next
claim, or by the recorder)."""

from __future__ import annotations

import threading
import time
from typing import Any

from support import wait_until

from task_queue import Event, EventKind, TaskQueue, Worker


def test_outcome_events_of_a_worker_carry_the_handler_duration(queue: TaskQueue) -> None:
    events: list[Event] = []
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            events.append(event)

    def nap(payload: Any) -> str:
        time.sleep(payload)
        return "done"

    def fails(payload: Any) -> None:
        raise ValueError("no")

    queue.add_hook(record)
    # Many short tasks: some completions ride with a claim, others go alone.
    short = queue.enqueue_many([{"name": "s", "task_type": "nap", "payload": 0} for _ in range(50)])
    slow = queue.enqueue("slow", "nap", 0.05)
    retried = queue.enqueue("retried", "fails", max_retries=1)
    handlers = {"nap": nap, "fails": fails}
    with Worker(queue, handlers, concurrency=2):
        wait_until(lambda: queue.get_queue_stats()["completed"] == 51, timeout=30)
        wait_until(lambda: queue.get_task(retried).status == "failed", timeout=30)
    queue.remove_hook(record)
    with lock:
        completed = {e.task_id: e for e in events if e.kind is EventKind.COMPLETED}
        retry = [e for e in events if e.kind is EventKind.RETRY_SCHEDULED]
        dead = [e for e in events if e.kind is EventKind.DEAD_LETTERED]
    assert set(completed) == {*short, slow}
    assert all(e.duration is not None and e.duration >= 0 for e in completed.values())
    assert completed[slow].duration is not None and completed[slow].duration >= 0.05
    assert [e.task_id for e in retry] == [retried] and retry[0].duration is not None
    assert [e.task_id for e in dead] == [retried] and dead[0].duration is not None


def test_completions_outside_a_worker_have_no_duration(queue: TaskQueue) -> None:
    events: list[Event] = []
    queue.add_hook(events.append)
    queue.enqueue("t", "t")
    task = queue.dequeue()
    assert task is not None and queue.complete_task(task, 1)
    [done] = [e for e in events if e.kind is EventKind.COMPLETED]
    assert done.duration is None
