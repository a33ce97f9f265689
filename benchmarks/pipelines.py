"""Pipelines: a chain and a fan-in, through dependencies (issue 10).

    .venv/bin/python benchmarks/pipelines.py [--reps 3] [--sync FULL|NORMAL]

P1 chain: N tasks, each depending on the one before (``BatchRef``), enqueued
   in one call and drained by a Worker of 4 threads; reports tasks/s through
   the chain and the time per hop (one task can only start once the one
   before has committed: this is latency, not throughput).
P2 fan-in: one source, N parallel tasks depending on it, one join depending
   on all N; reports the enqueue rate of the batch, tasks/s through the
   middle, and the time from the last middle task's completion to the join
   starting (the release of a dependent whose N parents completed).
P0 the same N tasks without dependencies (the B4 drain, for comparison in
   the same run).

Each measurement runs in a fresh process on a fresh file; medians over the
repetitions. Results go to benchmarks/results/pipelines-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(kind: str, n: int, sync: str, path: str) -> dict[str, Any]:
    from task_queue import BatchRef, TaskQueue, Worker, current_task

    starts: dict[int, float] = {}
    ends: dict[int, float] = {}

    def work(payload: Any) -> None:
        ctx = current_task()
        assert ctx is not None
        starts[ctx.task.id] = time.perf_counter()

    def done(event: Any) -> None:
        if str(event.kind) == "completed":
            ends[event.task_id] = time.perf_counter()

    with TaskQueue(path, synchronous=sync, hooks=[done]) as queue:
        t0 = time.perf_counter()
        if kind == "chain":
            specs = [{"name": "c0", "task_type": "work"}] + [
                {"name": f"c{i}", "task_type": "work", "depends_on": [BatchRef(i - 1)]}
                for i in range(1, n)
            ]
        elif kind == "fanin":
            specs = (
                [{"name": "source", "task_type": "work"}]
                + [
                    {"name": f"m{i}", "task_type": "work", "depends_on": [BatchRef(0)]}
                    for i in range(n)
                ]
                + [
                    {
                        "name": "join",
                        "task_type": "work",
                        "depends_on": [BatchRef(i) for i in range(1, n + 1)],
                    }
                ]
            )
        else:
            specs = [{"name": f"t{i}", "task_type": "work"} for i in range(n)]
        ids = queue.enqueue_many(specs)
        enqueued = time.perf_counter() - t0
        t1 = time.perf_counter()
        with Worker(queue, {"work": work}, concurrency=4):
            queue.wait(ids[-1], timeout=600)
        total = time.perf_counter() - t1
        stats = queue.get_queue_stats()
    assert stats["completed"] == len(ids), stats
    result: dict[str, Any] = {
        "tasks": len(ids),
        "enqueue_per_s": len(ids) / enqueued,
        "tasks_per_s": len(ids) / total,
    }
    if kind == "chain":
        hops = [starts[b] - ends[a] for a, b in itertools.pairwise(ids) if a in ends]
        result["hop_ms_p50"] = statistics.median(hops) * 1000
    if kind == "fanin":
        last_middle = max(ends[i] for i in ids[1:-1])
        result["join_release_ms"] = (starts[ids[-1]] - last_middle) * 1000
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    ap.add_argument("--chain", type=int, default=500, help="tasks in the chain")
    ap.add_argument("--fanin", type=int, default=10_000, help="parallel tasks of the fan-in")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, n, path = args.child
        print(json.dumps(measure(kind, int(n), args.sync, path)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"P0 plain": [], "P1 chain": [], "P2 fan-in": []}
    plan = [("P0 plain", "plain", args.fanin), ("P1 chain", "chain", args.chain),
            ("P2 fan-in", "fanin", args.fanin)]  # fmt: skip
    for rep in range(args.reps):
        for label, kind, n in plan:
            with tempfile.TemporaryDirectory(prefix="tq-pipe-") as tmp:
                out = subprocess.run(
                    [sys.executable, __file__, "--sync", args.sync, "--child", kind, str(n),
                     os.path.join(tmp, "q.db")],
                    capture_output=True, text=True, check=True, cwd=HERE,
                )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[label].append(result)
            print(f"{label} rep {rep + 1}: {result}", flush=True)
    print(f"\nmedians of {args.reps} ({args.sync}):")
    summary: dict[str, dict[str, float]] = {}
    for label, results in runs.items():
        keys = [k for k in results[0] if k != "tasks"]
        summary[label] = {k: statistics.median(r[k] for r in results) for k in keys}
        summary[label]["tasks"] = results[0]["tasks"]
        print(f"  {label}: " + ", ".join(f"{k} {v:,.1f}" for k, v in summary[label].items()))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(HERE, "results", f"pipelines-{stamp}.json")
    with open(path, "w") as f:
        json.dump(
            {"sync": args.sync, "reps": args.reps, "runs": runs, "medians": summary}, f, indent=1
        )
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
