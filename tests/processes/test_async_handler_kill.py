"""A worker process running ``async def`` handlers is SIGKILLed mid-run:
its coroutines' tasks are rescued and run again elsewhere (the crash counts
as an attempt)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import wait_until

from task_queue import TaskQueue, TaskStatus, Worker

WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    from task_queue import TaskQueue, Worker

    marks = sys.argv[2]

    async def slow(payload):
        open(os.path.join(marks, f"started-{payload['i']}"), "w").close()
        await asyncio.sleep(600)

    Worker(TaskQueue(sys.argv[1], lease_seconds=3600), {"slow": slow}).run()
    """
)


@pytest.mark.slow
def test_coroutines_of_a_killed_worker_are_rescued(db_path: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    queue = TaskQueue(db_path, lease_seconds=3600)
    proc = subprocess.Popen([sys.executable, "-c", WORKER, db_path, str(marks)])
    try:
        ids = queue.enqueue_many(
            [{"name": f"s{i}", "task_type": "slow", "payload": {"i": i}} for i in range(20)]
        )
        wait_until(lambda: len(os.listdir(marks)) == 20, timeout=30)
        assert queue.get_queue_stats()["running"] == 20
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

        async def quick(payload: Any) -> int:
            await asyncio.sleep(0)
            return int(payload["i"])

        # Same host, dead owner: rescued at once, not after the hour's lease.
        with Worker(queue, {"slow": quick}):
            wait_until(lambda: queue.get_queue_stats()["completed"] == 20, timeout=30)
        tasks = queue.get_tasks(ids)
        assert [t.result for t in tasks] == list(range(20))
        assert {(t.status, t.attempts, t.retry_count) for t in tasks} == {
            (TaskStatus.COMPLETED, 2, 1)
        }
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        queue.close()
