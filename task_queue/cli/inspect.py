"""The commands that only read: ``stats``, ``list``, ``show``, ``queues``, ``schedules``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from ..task import ScheduleInfo, Task, TaskPriority, TaskStatus
from .common import CliError, open_existing, print_json, task_json
from .format import Column, clean, local_iso, relative, table

STATUSES = [s.value for s in TaskStatus]


def stats(args: argparse.Namespace) -> int:
    """``stats``: tasks per status, in total and per queue."""
    with open_existing(args) as queue:
        counts = queue.get_queue_stats(args.queue_name)
        per_queue = queue.queue_stats()
        paused = queue.paused()
    if args.queue_name is not None:
        per_queue = {args.queue_name: counts}
    if args.json:
        print_json({"counts": counts, "total": sum(counts.values()), "queues": per_queue})
        return 0
    if args.queue_name is not None:
        print(f"queue {args.queue_name}{' (paused)' if args.queue_name in paused else ''}")
    rows = [[status, str(n)] for status, n in counts.items()]
    rows.append(["total", str(sum(counts.values()))])
    for line in table([Column("STATUS"), Column("TASKS", right=True)], rows):
        print(line)
    if args.queue_name is None and len(per_queue) > 1:
        print()
        for line in _queue_table(per_queue, paused):
            print(line)
    return 0


def queues(args: argparse.Namespace) -> int:
    """``queues``: every queue with its counts and whether it is paused."""
    with open_existing(args) as queue:
        per_queue = queue.queue_stats()
        paused = queue.paused()
    if args.json:
        print_json(
            [{"queue": name, "paused": name in paused, "counts": counts}
             for name, counts in per_queue.items()]
        )  # fmt: skip
        return 0
    for line in _queue_table(per_queue, paused):
        print(line)
    return 0


def _queue_table(per_queue: dict[str, dict[str, int]], paused: frozenset[str]) -> list[str]:
    columns = [Column("QUEUE", minimum=10)]
    columns += [Column(s.upper(), right=True) for s in STATUSES]
    columns.append(Column("STATE"))
    rows = [
        [name, *(str(counts[s]) for s in STATUSES), "paused" if name in paused else "active"]
        for name, counts in per_queue.items()
    ]
    return table(columns, rows)


def list_tasks(args: argparse.Namespace) -> int:
    """``list``: one line per task, newest first (finished statuses: most
    recently finished first)."""
    with open_existing(args) as queue:
        page = queue.list_tasks(
            status=args.status, task_type=args.type, queue_name=args.queue_name,
            limit=args.limit,
        )  # fmt: skip
    if args.json:
        print_json([task_json(t) for t in page.tasks])
        return 0
    if not page.tasks:
        print("no tasks")
        return 0
    now = time.time()
    columns = [
        Column("ID", right=True), Column("STATUS"), Column("QUEUE", minimum=7),
        Column("TYPE", minimum=8), Column("PRIORITY"), Column("TRIES", right=True),
        Column("CREATED"), Column("FINISHED"), Column("NAME", minimum=10),
    ]  # fmt: skip
    for line in table(columns, [_row(t, now) for t in page.tasks]):
        print(line)
    if page.next is not None:
        print(f"(the first {args.limit}; --limit shows more)")
    return 0


def _row(task: Task, now: float) -> list[str]:
    finished = relative(task.completed_at, now)
    if task.status == TaskStatus.PENDING and task.run_at > now + 1:
        finished = f"due {relative(task.run_at, now)}"
    return [
        str(task.id), str(task.status), clean(task.queue_name), clean(task.task_type),
        TaskPriority(task.priority).name.lower(), str(task.attempts),
        relative(task.created_at, now), finished, clean(task.name),
    ]  # fmt: skip


_TIMES = ("created_at", "scheduled_at", "run_at", "started_at", "completed_at", "lease_expires_at")
_JSON_FIELDS = ("payload", "result")
_LONG_FIELDS = ("error_traceback",)


def show(args: argparse.Namespace) -> int:
    """``show ID``: every field of one task, error and traceback included."""
    with open_existing(args) as queue:
        task = queue.get_task(args.id)
    if task is None:
        raise CliError(f"no task with id {args.id}")
    if args.json:
        print_json(task_json(task))
        return 0
    for line in describe(task, time.time()):
        print(line)
    return 0


def describe(task: Task, now: float) -> list[str]:
    """The lines ``show`` prints: one field a line, times in local time
    (and relative), the payload and result as indented JSON, the
    traceback as it was recorded; every value escaped of control characters."""
    doc = task_json(task)
    label = max(len(name) for name in doc) + 2
    lines: list[str] = []
    blocks: list[tuple[str, str]] = []
    for name, value in doc.items():
        if name in _JSON_FIELDS and value is not None:
            text = json.dumps(value, indent=2, ensure_ascii=False)
            if "\n" in text:
                blocks.append((name, text))
                continue
        elif name in _LONG_FIELDS:
            if value:
                blocks.append((name, str(value).rstrip("\n")))
                continue
            text = ""
        elif name in _TIMES:
            text = local_iso(value, now)
        elif value is None:
            text = ""
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value)
        lines.append(f"{name.ljust(label)}{clean(text)}".rstrip())
    for name, text in blocks:
        lines.append(f"{name}:")
        lines.extend("  " + clean(line, keep="\t") if line else "" for line in text.split("\n"))
    return lines


def schedules(args: argparse.Namespace) -> int:
    """``schedules``: every periodic schedule the file knows, with its next
    fire time and the last slot it fired (and that slot's task)."""
    with open_existing(args) as queue:
        known = queue.schedules()
    if args.json:
        print_json([dataclasses.asdict(info) for info in known])
        return 0
    if not known:
        print("no schedules (a schedule is known once a Worker carrying it has started)")
        return 0
    now = time.time()
    columns = [
        Column("NAME", minimum=10), Column("TYPE", minimum=8), Column("EXPRESSION"),
        Column("QUEUE"), Column("MISFIRE"), Column("NEXT"), Column("LAST SLOT"),
        Column("TASK", right=True),
    ]  # fmt: skip
    rows = [_schedule_row(info, now) for info in known]
    for line in table(columns, rows):
        print(line)
    return 0


def _schedule_row(info: ScheduleInfo, now: float) -> list[str]:
    return [
        clean(info.name), clean(info.task_type), clean(info.expression),
        clean(info.queue_name), info.misfire, relative(info.next_fire, now),
        relative(info.last_slot, now), "" if info.last_task_id is None else str(info.last_task_id),
    ]  # fmt: skip
