"""Scenarios that must run in a process of their own, with a deadline.

Run as a script (``python tests/support/hazards.py <scenario> '<json args>'``):
each scenario prints one JSON report on its last line of stdout and exits
0. Their failure modes are hangs (a deadlock, a child stuck in
``sqlite3.connect``), so the test that starts them kills them at a deadline
instead of hanging CI. Only ``task_queue`` and the standard library are
imported.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
import traceback
from typing import Any

from task_queue import TaskQueue

# -- fork() while other threads write -------------------------------------------------


def _child_round_trip(db: str, deadline: float) -> int:
    """In a forked child: a NEW TaskQueue on the same file, one task enqueued,
    claimed and completed. Exit status 0 on success, 1 on any error; a hang is
    ended by SIGALRM's default action, which no Python-level state can delay
    (status -14)."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, deadline)
    try:
        q = TaskQueue(db, busy_timeout=deadline)
        try:
            tid = q.enqueue("from a child", "child", {"pid": os.getpid()})
            task = q.dequeue(task_types=["child"])
            while task is not None and task.id != tid:  # another child's, left by a kill
                q.complete_task(task, "swept")
                task = q.dequeue(task_types=["child"])
            if task is None or not q.complete_task(task, "done"):
                return 1
        finally:
            q.close()
        return 0
    except BaseException:
        traceback.print_exc()
        return 1


def fork_storm(db: str, forks: int, writers: int, child_deadline: float) -> dict[str, Any]:
    q = TaskQueue(db)
    stop = threading.Event()
    written = [0] * writers
    errors: list[str] = []

    def write(slot: int) -> None:
        try:
            while not stop.is_set():
                ids = q.enqueue_many([{"name": "w", "task_type": "w"} for _ in range(5)])
                q.enqueue("w", "w", {"slot": slot})
                for task in q.claim(3, task_types=["w"]):
                    q.complete_task(task, None)
                written[slot] += len(ids) + 1
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(writers)]
    for thread in threads:
        thread.start()
    while sum(written) < 50:
        time.sleep(0.001)
    statuses: dict[str, int] = {}
    rng = random.Random(os.getpid())
    for _ in range(forks):
        time.sleep(rng.uniform(0, 0.003))  # land anywhere in the writers' batches
        pid = os.fork()
        if pid == 0:
            os._exit(_child_round_trip(db, child_deadline))
        _, status = os.waitpid(pid, 0)
        key = str(os.waitstatus_to_exitcode(status))
        statuses[key] = statuses.get(key, 0) + 1
        print(f"fork {sum(statuses.values())}: {key}", file=sys.stderr, flush=True)
    stop.set()
    for thread in threads:
        thread.join(30)
    q.close()
    return {"statuses": statuses, "written": sum(written), "errors": errors}


SCENARIOS = {"fork_storm": fork_storm}

if __name__ == "__main__":
    scenario, raw = sys.argv[1], sys.argv[2]
    report = SCENARIOS[scenario](**json.loads(raw))
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()
    os._exit(0)
