"""The commands that change the queue: ``enqueue``, ``retry``, ``cancel``,
``purge``, ``pause``, ``resume``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import DuplicateTaskError
from ..queue import TaskQueue
from ..spec import TaskSpec
from .common import CliError, open_existing, open_or_create, progress
from .format import clean


def enqueue(args: argparse.Namespace) -> int:
    """``enqueue TASK_TYPE``: add a task, print its id (the existing task's
    id when ``--unique-key`` is held by a live task)."""
    fields: dict[str, Any] = {
        "name": args.task_type if args.name is None else args.name,
        "task_type": args.task_type,
        "payload": args.payload,
        "priority": args.priority,
        "scheduled_at": args.at,
        "delay": args.delay,
        "max_retries": args.max_retries,
        "timeout": args.timeout,
        "unique_key": args.unique_key,
        "queue_name": args.queue_name,
    }
    # Everything is checked before the file is opened: a refused task must
    # not leave a new, empty queue behind.
    try:
        TaskSpec(**fields).encode(time.time())
    except (ValueError, TypeError) as exc:  # PayloadError is a TypeError
        raise CliError(str(exc), 2) from None
    with open_or_create(args) as queue:
        print(queue.enqueue(**fields))
    return 0


def retry(args: argparse.Namespace) -> int:
    """``retry ID ...`` or ``retry --all-failed``: back to pending with a
    fresh retry budget (``retry_task`` / ``retry_failed``)."""
    if args.all_failed == bool(args.ids):
        raise CliError("give task ids or --all-failed (one of them)", 2)
    if not args.all_failed and (args.type is not None or args.queue_name is not None):
        raise CliError("--type and --queue-name go with --all-failed, not with ids", 2)
    with open_existing(args) as queue:
        if args.all_failed:
            report, done = progress("retried")
            try:
                count = queue.retry_failed(
                    task_type=args.type, queue_name=args.queue_name, on_progress=report
                )
            finally:
                done()
            print(count)
            return 0
        return _each(queue, args.ids, "retried", queue.retry_task, "failed or cancelled")


def cancel(args: argparse.Namespace) -> int:
    """``cancel ID ...``: cancel pending or running tasks (``cancel_task``)."""
    with open_existing(args) as queue:
        return _each(queue, args.ids, "cancelled", queue.cancel_task, "pending or running")


def _each(
    queue: TaskQueue, ids: list[int], verb: str, act: Callable[[int], bool], allowed: str
) -> int:
    """Apply ``act`` to every id, printing the ids it changed; the others
    get a line on stderr and exit status 1. Unknown ids are refused first,
    so a typo changes nothing."""
    unknown = [i for i in dict.fromkeys(ids) if queue.get_task(i) is None]
    if unknown:
        raise CliError(f"no task with id {', '.join(map(str, unknown))}; nothing {verb}")
    status = 0
    for task_id in dict.fromkeys(ids):
        try:
            changed = act(task_id)
        except DuplicateTaskError as exc:  # its unique_key is taken by a live task
            _error(str(exc))
            status = 1
            continue
        if changed:
            print(task_id)
            continue
        task = queue.get_task(task_id)
        now = "gone" if task is None else str(task.status)
        _error(f"task {task_id} not {verb}: it is {now} (only {allowed} tasks can be)")
        status = 1
    return status


def _error(message: str) -> None:
    print(f"task-queue: error: {clean(message)}", file=sys.stderr)


def purge(args: argparse.Namespace) -> int:
    """``purge --older-than 7d``: delete finished tasks, print how many."""
    with open_existing(args) as queue:
        report, done = progress("purged")
        try:
            count = queue.purge(args.older_than, args.status, on_progress=report)
        finally:
            done()
    print(count)
    return 0


def pause(args: argparse.Namespace) -> int:
    """``pause Q``: Workers claim nothing from queue Q until ``resume Q``."""
    with open_existing(args) as queue:
        queue.pause(args.queue)
    print(f"paused {clean(args.queue)}")
    return 0


def resume(args: argparse.Namespace) -> int:
    """``resume Q``: Workers claim from queue Q again."""
    with open_existing(args) as queue:
        resumed = queue.resume(args.queue)
    print(f"resumed {args.queue}" if resumed else f"{args.queue} was not paused")
    return 0
