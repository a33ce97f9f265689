"""Same-host fast rescue: a dead worker process's tasks come back at once,
not after its (here: one hour) lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from support import wait_until

from task_queue import TaskQueue, TaskStatus

CLAIMER = textwrap.dedent(
    """
    import sys, time
    from task_queue import TaskQueue
    q = TaskQueue(sys.argv[1], lease_seconds=3600)
    task = q.dequeue()
    print(task.id, flush=True)
    time.sleep(600)
    """
)


def _claim_in_child(db_path: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, db_path], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def test_task_of_a_killed_process_is_rescued_without_waiting_for_the_lease(db_path: str) -> None:
    queue = TaskQueue(db_path, lease_seconds=3600)
    try:
        task_id = queue.enqueue("t", "work")
        proc = _claim_in_child(db_path)
        task = queue.get_task(task_id)
        assert task is not None and task.status == TaskStatus.RUNNING
        assert task.owner_pid == proc.pid
        # While the owner lives, nothing is rescued (its lease runs an hour).
        assert queue.rescue_expired() == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert queue.rescue_expired() == 1
        task = queue.get_task(task_id)
        assert task is not None
        assert task.status == TaskStatus.PENDING
        assert task.retry_count == 1  # the lost attempt counts
        again = queue.dequeue()
        assert again is not None and again.id == task_id
        assert queue.complete_task(again, "done")
    finally:
        queue.close()


def test_a_stopped_process_is_alive_and_keeps_its_claim(db_path: str) -> None:
    queue = TaskQueue(db_path, lease_seconds=3600)
    proc = None
    try:
        task_id = queue.enqueue("t", "work")
        proc = _claim_in_child(db_path)
        os.kill(proc.pid, signal.SIGSTOP)
        assert queue.rescue_expired() == 0
        task = queue.get_task(task_id)
        assert task is not None and task.status == TaskStatus.RUNNING
    finally:
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        queue.close()


def test_worker_pool_picks_up_a_dead_process_task_quickly(db_path: str) -> None:
    from task_queue import HandlerRegistry, Worker

    queue = TaskQueue(db_path, lease_seconds=3600)
    try:
        task_id = queue.enqueue("t", "work", {"n": 1})
        proc = _claim_in_child(db_path)
        registry = HandlerRegistry()
        registry["work"] = lambda payload: payload["n"] + 1
        with Worker(queue, registry, concurrency=1, rescue_interval=0.05):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            wait_until(
                lambda: queue.get_task(task_id).status == TaskStatus.COMPLETED,  # type: ignore[union-attr]
                timeout=10,
            )
        assert queue.get_task(task_id).result == 2  # type: ignore[union-attr]
    finally:
        queue.close()
