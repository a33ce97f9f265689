"""An ETL pipeline: extract, then three transforms in parallel, then load.

    .venv/bin/python examples/etl_pipeline.py            # a temporary queue file
    .venv/bin/python examples/etl_pipeline.py --db etl.db

The whole pipeline is enqueued in one call (``enqueue_many`` with
``BatchRef``: a task may depend on an earlier one of the same batch), so it
is all there or not at all. Each step reads its parents' results with
``current_task().parents()`` and reports progress with
``current_task().progress()``; this script prints that progress while it
waits for the load step's result with ``queue.result()``.

A Worker runs here, in threads of this process; with ``task-queue worker``
in another process (or several) nothing in the pipeline changes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from task_queue import BatchRef, HandlerRegistry, TaskQueue, TaskStatus, Worker, current_task

handlers = HandlerRegistry()

ROWS = 60


def _ctx() -> Any:
    ctx = current_task()
    assert ctx is not None, "a handler runs inside a Worker"
    return ctx


@handlers.handler("extract")
def extract(payload: dict[str, Any]) -> list[dict[str, Any]]:
    ctx = _ctx()
    rows = []
    for i in range(payload["rows"]):
        rows.append({"id": i, "amount": (i * 37) % 101, "country": ["DE", "FR", "NL"][i % 3]})
        if i % 10 == 9:
            ctx.progress(i + 1, payload["rows"], "reading the source")
            ctx.wait(0.02)  # the source is slow; wait() wakes early if cancelled
    return rows


@handlers.handler("transform")
def transform(payload: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx()
    [source] = ctx.parents()
    mine = [row for row in source.result if row["country"] == payload["country"]]
    total = 0
    for n, row in enumerate(mine, 1):
        total += row["amount"]
        ctx.progress(n, len(mine), f"summing {payload['country']}")
        ctx.wait(0.01)
    return {"country": payload["country"], "rows": len(mine), "total": total}


@handlers.handler("load")
def load(payload: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx()
    parts = [parent.result for parent in ctx.parents()]
    ctx.progress(len(parts), len(parts), "writing the report")
    return {
        "report": {part["country"]: part["total"] for part in parts},
        "rows": sum(part["rows"] for part in parts),
    }


def enqueue_pipeline(queue: TaskQueue) -> list[int]:
    """The pipeline as one batch; returns the ids (extract first, load last)."""
    countries = ["DE", "FR", "NL"]
    return queue.enqueue_many(
        [
            {"name": "extract orders", "task_type": "extract", "payload": {"rows": ROWS}},
            *(
                {
                    "name": f"transform {country}",
                    "task_type": "transform",
                    "payload": {"country": country},
                    "depends_on": [BatchRef(0)],
                }
                for country in countries
            ),
            {
                "name": "load report",
                "task_type": "load",
                "depends_on": [BatchRef(1), BatchRef(2), BatchRef(3)],
            },
        ]
    )


def show(queue: TaskQueue, ids: list[int], last: dict[int, str]) -> None:
    """Print each task's status and progress when it changed."""
    for task in queue.get_tasks(ids):
        progress = task.progress or {}
        if progress.get("total"):
            how_far = f"{progress['current']}/{progress['total']} {progress.get('message') or ''}"
        else:
            how_far = ""
        line = f"  #{task.id} {task.name:<16} {task.status.value:<9} {how_far}".rstrip()
        if last.get(task.id) != line:
            last[task.id] = line
            print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="queue file (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="task-queue-etl-") as tmp:
        path = args.db or os.path.join(tmp, "etl.db")
        with TaskQueue(path) as queue, Worker(queue, handlers, concurrency=3):
            ids = enqueue_pipeline(queue)
            print(f"enqueued the pipeline: tasks {ids[0]}..{ids[-1]}", flush=True)
            last: dict[int, str] = {}
            deadline = time.monotonic() + 60
            while True:
                show(queue, ids, last)
                try:
                    result = queue.result(ids[-1], timeout=0.1)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        print("the pipeline did not finish in time", file=sys.stderr)
                        return 1
            show(queue, ids, last)
            assert all(t.status == TaskStatus.COMPLETED for t in queue.get_tasks(ids))
            print(f"report: {result['report']} ({result['rows']} rows)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
