"""Worker processes for the schedule and limit tests (run as a script).

    python tests/support/limits_roles.py <role> '<json arguments>'

Each role runs a Worker with handlers that log what they do to a file of
its own (one line per event, one write() each: lines never interleave) and
exits when the file ``stop`` appears next to the log (or after a deadline).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _log(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _run(db: str, log: str, registry: Any, threads: int, seconds: float) -> None:
    from task_queue import TaskQueue, Worker

    stop = Path(log).with_name("stop")
    with (
        TaskQueue(db, lease_seconds=3.0) as queue,
        Worker(queue, registry, concurrency=threads, poll_interval=0.02),
    ):
        Path(log + ".ready").touch()
        deadline = time.monotonic() + seconds
        while not stop.exists() and time.monotonic() < deadline:
            time.sleep(0.02)


def scheduler(db: str, log: str, seconds: float = 60.0) -> None:
    """A Worker carrying a schedule that fires every second; each run logs
    "<pid> <slot>"."""
    from task_queue import HandlerRegistry, current_task

    reg = HandlerRegistry()

    @reg.periodic(every=1)
    @reg.handler("tick")
    def tick(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None
        _log(log, f"{os.getpid()} {ctx.task.scheduled_at}")

    _run(db, log, reg, 2, seconds)


def limited(
    db: str, log: str, threads: int = 4, seconds: float = 120.0, work: float = 0.05
) -> None:
    """Handlers with limits; each logs "<kind> <pid> <start> <end> <key>":
    "rated" (rate_limit 20/s), "free" (no limit), "capped" (concurrency_limit
    2, ``work`` seconds each), "hold" (concurrency_limit 1, runs until
    killed)."""
    from task_queue import HandlerRegistry, current_task

    reg = HandlerRegistry()

    def logged(kind: str, seconds: float) -> Any:
        def run(payload: Any) -> None:
            ctx = current_task()
            assert ctx is not None
            start = time.time()
            if seconds:
                time.sleep(seconds)
            _log(
                log,
                f"{kind} {os.getpid()} {start:.6f} {time.time():.6f} {ctx.task.concurrency_key}",
            )

        return run

    reg.register("rated", logged("rated", 0), rate_limit="20/s")
    reg.register("free", logged("free", 0))
    reg.register("capped", logged("capped", work), concurrency_limit=2)

    def hold(payload: Any) -> None:
        _log(log, f"hold {os.getpid()} {time.time():.6f} 0 {payload}")
        time.sleep(3600)

    reg.register("hold", hold, concurrency_limit=1)
    _run(db, log, reg, threads, seconds)


ROLES = {"scheduler": scheduler, "limited": limited}

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    ROLES[sys.argv[1]](**json.loads(sys.argv[2]))
