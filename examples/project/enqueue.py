"""Enqueue a few tasks for the handlers in tasks.py and print their ids.

    python enqueue.py [--db PATH]      # default: $TASK_QUEUE_DB, else taskqueue.db

It only enqueues: the tasks wait in the file until a worker runs them
(``task-queue worker tasks``), in this process or any other.
"""

from __future__ import annotations

import argparse
import os

from task_queue import TaskPriority, TaskQueue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=os.environ.get("TASK_QUEUE_DB") or "taskqueue.db")
    args = parser.parse_args()
    with TaskQueue(args.db) as queue:
        ids = [
            queue.enqueue(f"Greet {name}", "greet", {"name": name})
            for name in ("Ada", "Grace", "Linus")
        ]
        ids.append(
            queue.enqueue(
                "Add numbers", "flaky_sum", {"numbers": [1, 2, 3]}, priority=TaskPriority.HIGH
            )
        )
    for task_id in ids:
        print(task_id)


if __name__ == "__main__":
    main()
