"""Worker processes killed with SIGKILL mid-task (issue 3, section 5).

At least 10 kills over at least 1,000 tasks; half the killed processes are
reaped at once (same-host fast rescue sees their pid gone), half are left as
zombies until the end (their tasks wait for the lease). Every task completes; a task
runs more than once only when an execution of it was in a process that was
killed; and the recorded result is that of the last execution (an earlier
holder's completion never overwrites a later one).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import Procs, check_invariants, read_exec_logs, wait_until

from task_queue import TaskQueue

pytestmark = pytest.mark.slow

WORKERS = 3
CONCURRENCY = 4
LEASE = 2.0
MIN_KILLS = 10
MIN_TASKS = 1000


def test_sigkill_workers_mid_task(procs: Procs, exec_dir: Path, db_path: str) -> None:
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 2**32))
    print(f"FAULT_SEED={seed}")
    rng = random.Random(seed)
    queue = TaskQueue(db_path)
    acked: list[int] = []

    def add(n: int) -> None:
        specs = [
            {
                "name": f"t{len(acked) + i}",
                "task_type": "work",
                "payload": {"sleep": rng.uniform(0.01, 0.08)},
                # A task in flight at several kills must still complete.
                "max_retries": 100,
            }
            for i in range(n)
        ]
        acked.extend(queue.enqueue_many(specs))

    def start_worker() -> subprocess.Popen[bytes]:
        return procs.start(
            "worker", db=db_path, log_dir=str(exec_dir), concurrency=CONCURRENCY, lease=LEASE
        )

    add(MIN_TASKS)
    live = [start_worker() for _ in range(WORKERS)]
    killed: dict[int, int] = {}  # pid -> tasks it had in flight (handler started, not ended)
    left_at_kill: list[int] = []
    while len(killed) < MIN_KILLS:
        victim = rng.choice(live)
        # Mid-task: the victim has a handler running right now.
        in_flight = wait_until(
            lambda v=victim: read_exec_logs(exec_dir, [v.pid]).open_in(v.pid),
            timeout=60,
            interval=0.01,
        )
        # Half the victims are reaped at once (their tasks are rescued as
        # soon as a worker sees the pid gone), half stay zombies for a while
        # (rescued when their leases run out).
        procs.kill(victim, reap=len(killed) % 2 == 0)
        killed[victim.pid] = len(in_flight)
        live.remove(victim)
        live.append(start_worker())
        stats = queue.get_queue_stats()
        left = stats["pending"] + stats["running"]
        left_at_kill.append(left)
        # Keep work flowing until the last kill, so every kill hits a busy queue.
        if left < 300 and len(killed) < MIN_KILLS:
            add(300)

    wait_until(lambda: queue.get_queue_stats()["completed"] == len(acked), timeout=180)
    for proc in live:
        procs.signal(proc, signal.SIGTERM)
    for proc in live:
        assert proc.wait(timeout=60) == 0
    queue.close()

    rows = check_invariants(db_path, acked, procs=procs.started)
    assert len(acked) >= MIN_TASKS
    assert len(killed) >= MIN_KILLS
    assert all(n > 0 for n in left_at_kill), left_at_kill

    logs = read_exec_logs(exec_dir)
    runs = logs.by_task()
    extra = 0
    for task_id in acked:
        execs = sorted(runs.get(task_id, []), key=lambda e: e.start)
        assert execs, f"task {task_id} completed without its handler ever running"
        survivors = [e for e in execs if e.pid not in killed]
        # Extra executions only for tasks in flight at a kill: at most one
        # execution happened outside the processes that were killed.
        assert len(survivors) <= 1, (task_id, execs)
        extra += len(execs) - 1
        # The recorded result is the last execution's: no earlier holder's
        # completion overwrote a later one (fencing).
        winner = json.loads(rows[task_id]["result"])
        assert winner == {"pid": execs[-1].pid}, (task_id, winner, execs)
    # Every extra execution is paid for by a kill: at most the tasks the
    # killed processes held (running or prefetched) can run again.
    held_at_most = len(killed) * CONCURRENCY * 2
    assert extra <= held_at_most, (extra, held_at_most)
    print(
        f"{len(acked)} tasks, {len(killed)} kills (in flight at each: "
        f"{sorted(killed.values())}), {len(logs.executions)} executions, {extra} extra"
    )
