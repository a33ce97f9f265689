"""The demo from the seed API's "Expected Output", on the real library.

Eight tasks go into a fresh queue, three workers (Worker-1..3) process them,
and the demo prints what happens as it happens:

* #1, #2 are HIGH priority and start first; #3..#5 (NORMAL) next; #7 (LOW) last;
* #8 "Scheduled cleanup" is scheduled two seconds ahead and runs when it is due;
* #6 "Daily cleanup" is scheduled an hour ahead (the seed API's scheduled-task
  example), so it is still pending when the demo ends: 7 completed, 1 pending.

Every "completed" line is printed only once the completion is committed to
the database (the demo watches the queue), and the figures at the end are read
back from the database, not counted by the demo.

    python examples/demo.py                  # temporary database, removed at exit
    python examples/demo.py --db demo.db     # keep the file (refuses an existing one)
    python examples/demo.py --db demo.db --reset
    python examples/demo.py -v               # also show the library's log
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from task_queue import (
    TASK_HANDLERS,
    TaskPriority,
    TaskQueue,
    TaskStatus,
    Worker,
    current_task,
    handler,
)

# Simulated work, in seconds: short, so the whole demo takes a few seconds.
EMAIL_SECONDS = 0.3
REPORT_SECONDS = 0.4
IMAGE_SECONDS = 0.5
CLEANUP_DELAY = dt.timedelta(seconds=2)

_print_lock = threading.Lock()


def say(text: str = "") -> None:
    """Print whole lines from any thread without interleaving them."""
    with _print_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def announced(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Print which task a handler is running, and on which worker.

    ``current_task()`` gives a running handler its own task (the library never
    prints; applications do).
    """

    @functools.wraps(fn)
    def wrapper(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None, "handlers run inside a Worker"
        worker = (ctx.task.worker_id or "?").rsplit(":", 1)[-1]
        say(f"\n⚙️  Processing task #{ctx.task.id}: {ctx.task.name}  [{worker}]")
        return fn(payload)

    return wrapper


# -- handlers: fn(payload) -> JSON-serializable result ------------------------
# Registered with the @handler decorator or straight into TASK_HANDLERS, as in
# the seed API. Make real handlers idempotent: delivery is at least once.


@handler("send_email")
@announced
def send_email(payload: dict[str, Any]) -> dict[str, Any]:
    say(f"   📧 Sending email to {payload['to']}\n   Subject: {payload['subject']}")
    time.sleep(EMAIL_SECONDS)
    return {"sent": True, "to": payload["to"]}


@handler("generate_report")
@announced
def generate_report(payload: dict[str, Any]) -> dict[str, Any]:
    say(f"   📊 Generating {payload['report_type']} report")
    time.sleep(REPORT_SECONDS)
    return {"generated": True, "report_url": f"/reports/{payload['report_type']}.pdf"}


@announced
def process_image(payload: dict[str, Any]) -> dict[str, Any]:
    say(f"   🖼️  Processing image: {payload['filename']}")
    time.sleep(IMAGE_SECONDS)
    return {"processed": True, "output": f"processed_{payload['filename']}"}


TASK_HANDLERS["process_image"] = process_image


@handler("cleanup")
@announced
def cleanup(payload: dict[str, Any] | None) -> dict[str, Any]:
    say("   🧹 Cleaning up")
    return {"removed": 0}


# -- the demo ------------------------------------------------------------------


def enqueue_tasks(queue: TaskQueue) -> list[int]:
    def add(name: str, task_type: str, payload: Any = None, **options: Any) -> int:
        task_id = queue.enqueue(name, task_type, payload, **options)
        priority = TaskPriority(options.get("priority", TaskPriority.NORMAL))
        when = options.get("scheduled_at")
        extra = f", scheduled for {when:%H:%M:%S}" if when else ""
        say(f"📝 Enqueued task #{task_id}: {name} (priority: {priority.name}{extra})")
        return task_id

    ids = [
        add(
            "Send welcome email",
            "send_email",
            {"to": "user@example.com", "subject": "Welcome!"},
            priority=TaskPriority.HIGH,
        ),
        add(
            "Generate sales report",
            "generate_report",
            {"report_type": "sales", "period": "monthly"},
            priority=TaskPriority.HIGH,
        ),
    ]
    for i in range(1, 4):
        ids.append(
            add(
                f"Process image {i}",
                "process_image",
                {"filename": f"photo_{i}.jpg"},
                priority=TaskPriority.NORMAL,
            )
        )
    # the seed API's "Scheduled Tasks" example: an hour from now, so it is still
    # pending when the demo ends.
    ids.append(
        add("Daily cleanup", "cleanup", scheduled_at=dt.datetime.now() + dt.timedelta(hours=1))
    )
    ids.append(
        add(
            "Send newsletter",
            "send_email",
            {"to": "subscribers@example.com", "subject": "Monthly Newsletter"},
            priority=TaskPriority.LOW,
        )
    )
    ids.append(
        add(
            "Scheduled cleanup",
            "generate_report",
            {"report_type": "cleanup", "period": "daily"},
            priority=TaskPriority.NORMAL,
            scheduled_at=dt.datetime.now() + CLEANUP_DELAY,
        )
    )
    return ids


def print_stats(title: str, queue: TaskQueue) -> dict[str, int]:
    stats = queue.get_queue_stats()
    say(f"\n📊 {title}:")
    # Non-zero statuses, largest first.
    for status, count in sorted(stats.items(), key=lambda item: (-item[1], item[0])):
        if count:
            say(f"   {status}: {count}")
    return stats


def watch(queue: TaskQueue, ids: list[int], timeout: float) -> bool:
    """Print each task's completion once it is committed; stop when no task
    is due or running any more. False if that did not happen in time."""
    reported: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        busy = False
        for task_id in ids:
            task = queue.get_task(task_id)
            assert task is not None
            if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED) and task_id not in reported:
                reported.add(task_id)
                took = (task.completed_at or now) - (task.started_at or now)
                if task.status == TaskStatus.COMPLETED:
                    say(f"✅ Task #{task_id} completed ({took:.2f}s)")
                else:
                    say(f"❌ Task #{task_id} failed: {task.error_message}")
            elif task.status == TaskStatus.RUNNING or (
                task.status == TaskStatus.PENDING and task.run_at <= now + 60
            ):
                busy = True  # running, due, or due within the minute
        if not busy:
            return True
        time.sleep(0.02)
    return False


def run_demo(db_path: str) -> int:
    say("=" * 60)
    say("Task Queue System Demo")
    say("=" * 60)
    with TaskQueue(db_path) as queue:
        say("\n📝 Enqueueing tasks...")
        ids = enqueue_tasks(queue)
        print_stats("Initial Queue Stats", queue)

        say("\n🚀 Starting workers...\n")
        # prefetch=0: a worker claims a task only when it can start it at once,
        # so across the three workers tasks start in priority order.
        workers = [
            Worker(queue, concurrency=1, name=f"Worker-{i}", prefetch=0) for i in range(1, 4)
        ]
        for worker in workers:
            worker.start()
            say(f"🔧 Worker started: {worker.name}")

        finished = watch(queue, ids, timeout=30.0)
        for worker in workers:
            worker.stop(timeout=10.0)  # graceful: nothing is left running
        say("\n🛑 Workers stopped")

        say("\n" + "=" * 60)
        stats = print_stats("Final Queue Stats", queue)

        say("\n✅ Recently Completed Tasks:")
        done = queue.get_tasks_by_status(TaskStatus.COMPLETED, limit=10)
        done.sort(key=lambda t: t.completed_at or 0.0, reverse=True)
        for task in done[:5]:
            say(f"   #{task['id']}: {task['name']}")
        if len(done) > 5:
            say("   ...")

        waiting = queue.get_tasks_by_status(TaskStatus.PENDING)
        if waiting:
            say("\n⏰ Still pending (scheduled for later):")
            for task in waiting:
                when = dt.datetime.fromtimestamp(task.run_at)
                say(f"   #{task['id']}: {task['name']} (due {when:%H:%M:%S})")

    expected = {"completed": len(ids) - 1, "pending": 1}
    if not finished or any(stats[k] != v for k, v in expected.items()):
        say(f"\n❌ Demo ended with unexpected stats: {stats}")
        return 1
    say("\n✅ Demo completed successfully!")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database file to create (default: a temporary one)")
    parser.add_argument("--reset", action="store_true", help="delete --db first if it exists")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the library's log")
    args = parser.parse_args(argv)
    # Emoji on a terminal that cannot show them: degrade instead of crashing.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.db is None:
        with tempfile.TemporaryDirectory(prefix="task-queue-demo-") as tmp:
            return run_demo(os.path.join(tmp, "demo.db"))
    if os.path.exists(args.db):
        if not args.reset:
            parser.error(f"{args.db} exists; pass --reset to delete it and start over")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(args.db + suffix):
                os.remove(args.db + suffix)
    return run_demo(args.db)


if __name__ == "__main__":
    sys.exit(main())
