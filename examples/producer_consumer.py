"""A producer and a worker in two processes, sharing one queue file.

    python examples/producer_consumer.py                # temporary database
    python examples/producer_consumer.py --db jobs.db   # keep the file

The script starts a worker process (this same file run with ``--worker``),
then, as the producer, enqueues tasks into the file while the worker runs,
waits for them to finish, prints the results, and stops the worker with
SIGTERM, which a ``Worker.run()`` answers by draining gracefully.

What it shows:

* the queue is just a file: producer and worker only share its path;
* a task enqueued by another process is picked up within the worker's poll
  interval (``Worker(poll_interval=...)``, 50 ms by default);
* ``unique_key``: enqueueing the same logical job twice gives the same id;
* a failing attempt is retried (with backoff) and then succeeds;
* shutdown by signal: nothing is left running.

To run the worker on its own: ``python examples/producer_consumer.py --worker jobs.db``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from task_queue import RetryPolicy, TaskQueue, TaskStatus, Worker, current_task, handler

# -- handlers (imported by both processes; only the worker runs them) ---------


@handler("resize_image")
def resize_image(payload: dict[str, Any]) -> dict[str, Any]:
    width = int(payload["width"])
    time.sleep(0.05)  # the "work"
    return {"file": payload["file"], "thumbnail": f"thumb_{width}_{payload['file']}"}


# A short retry backoff so the demo does not wait: at most 0.2 s, then 0.4 s...
@handler("sync_inventory", retry_policy=RetryPolicy(base=0.2, cap=1.0))
def sync_inventory(payload: dict[str, Any]) -> dict[str, Any]:
    ctx = current_task()
    assert ctx is not None
    if ctx.task.attempts == 1:
        # A transient fault on the first attempt, to show a retry.
        raise ConnectionError("inventory service unavailable (simulated)")
    return {"sku": payload["sku"], "synced": True, "attempt": ctx.task.attempts}


# -- the worker process ----------------------------------------------------------


def run_worker(db_path: str) -> int:
    logging.basicConfig(
        level=logging.INFO, format="   [worker %(process)d] %(message)s", stream=sys.stderr
    )
    with TaskQueue(db_path) as queue:
        # run() blocks; SIGTERM or SIGINT drains gracefully and returns.
        Worker(queue, concurrency=2, name="consumer").run()
    return 0


# -- the producer -------------------------------------------------------------------


def wait_for(
    queue: TaskQueue, ids: list[int], worker: subprocess.Popen[bytes], timeout: float
) -> str | None:
    """None once every task finished; otherwise what went wrong."""
    deadline = time.monotonic() + timeout
    final = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
    while time.monotonic() < deadline:
        tasks = [queue.get_task(i) for i in ids]
        if all(t is not None and t.status in final for t in tasks):
            return None
        if worker.poll() is not None:
            return f"the worker process exited early (code {worker.returncode})"
        time.sleep(0.02)
    return f"tasks did not finish within {timeout:g} s"


def run_producer(db_path: str) -> int:
    # Create the file before the worker opens it (either side may create it).
    queue = TaskQueue(db_path)
    print(f"queue file: {db_path}", flush=True)
    worker = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", db_path])
    print(f"started worker process {worker.pid}", flush=True)
    ok = False
    try:
        ids: list[int] = []
        for batch in range(3):  # the producer keeps producing while the worker works
            for n in range(4):
                i = batch * 4 + n + 1
                ids.append(
                    queue.enqueue(
                        f"Resize photo {i}", "resize_image", {"file": f"p{i}.jpg", "width": 128}
                    )
                )
            print(f"enqueued batch {batch + 1}: tasks {ids[-4:]}", flush=True)
            time.sleep(0.1)

        first = queue.enqueue(
            "Sync SKU-42", "sync_inventory", {"sku": "SKU-42"}, unique_key="sku-42"
        )
        again = queue.enqueue(
            "Sync SKU-42", "sync_inventory", {"sku": "SKU-42"}, unique_key="sku-42"
        )
        print(f"enqueued sync task {first}; enqueueing it again returned {again} (same task)")
        ids.append(first)

        problem = wait_for(queue, ids, worker, timeout=30.0)
        if problem:
            print(f"❌ {problem}", flush=True)
            return 1
        print("\nresults:")
        for task_id in ids:
            task = queue.get_task(task_id)
            assert task is not None
            tries = f"{task.attempts} attempt(s)"
            print(f"  #{task.id} {task.name}: {task.status} after {tries} -> {task.result}")
        stats = queue.get_queue_stats()
        print(f"\nstats: {stats}")
        ok = stats["completed"] == len(ids) and stats["running"] == 0
    finally:
        worker.send_signal(signal.SIGTERM)  # graceful: drain, then exit
        try:
            code = worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            code = worker.wait()
        queue.close()
    print(f"worker process exited with code {code}")
    if ok and code == 0:
        print("✅ producer/consumer example finished")
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="queue file (default: a temporary one)")
    parser.add_argument("--worker", metavar="DB", help="run only the worker, on this file")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    if args.worker:
        return run_worker(args.worker)
    if args.db:
        return run_producer(args.db)
    with tempfile.TemporaryDirectory(prefix="task-queue-example-") as tmp:
        return run_producer(os.path.join(tmp, "jobs.db"))


if __name__ == "__main__":
    sys.exit(main())
