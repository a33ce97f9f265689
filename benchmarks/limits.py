"""Rate and concurrency limits in a drain (issue 9).

    .venv/bin/python benchmarks/limits.py [--reps 3] [--sync FULL|NORMAL]

L0 plain: N no-op tasks drained by a Worker of 4 threads, no limits declared
   (the B4 drain, for comparison in the same run).
L1 mixed: the same N unlimited tasks plus M tasks of a type limited to
   ``--rate`` per second (burst 10), enqueued interleaved. Reports how fast
   the unlimited tasks drain beside the limited ones (the limited type must
   not hold them up), the rate the limited type achieved, and the most
   limited starts seen in any one-second window (at most rate + burst).
L2 keyed: N no-op tasks of a type with ``concurrency_limit=1`` spread over
   ``--keys`` concurrency keys: tasks/s, and the most tasks of one key seen
   running at once (must be 1).

Each measurement runs in a fresh process on a fresh file; medians over the
repetitions. Results go to benchmarks/results/limits-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
BURST = 10


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most of ``times`` (sorted) falling in any ``window`` seconds."""
    return max((bisect.bisect_right(times, t + window) - i for i, t in enumerate(times)), default=0)


def measure(kind: str, n: int, m: int, rate: float, keys: int, sync: str, path: str) -> Any:
    from task_queue import HandlerRegistry, RateLimit, TaskQueue, Worker

    starts: dict[str, list[float]] = {"free": [], "api": [], "keyed": []}
    lock = threading.Lock()
    running: dict[str, int] = {}
    overlap = [0]
    registry = HandlerRegistry()

    @registry.handler("free")
    def free(payload: Any) -> None:
        starts["free"].append(time.perf_counter())

    @registry.handler("api", rate_limit=RateLimit(rate, per=1.0, burst=BURST))
    def api(payload: Any) -> None:
        starts["api"].append(time.perf_counter())

    @registry.handler("keyed", concurrency_limit=1)
    def keyed(payload: Any) -> None:
        key = payload["key"]
        with lock:
            running[key] = running.get(key, 0) + 1
            overlap[0] = max(overlap[0], running[key])
        starts["keyed"].append(time.perf_counter())
        with lock:
            running[key] -= 1

    with TaskQueue(path, synchronous=sync) as queue:
        if kind == "plain":
            specs = [{"name": f"f{i}", "task_type": "free"} for i in range(n)]
        elif kind == "mixed":
            every, limited = max(1, n // m), 0
            specs = []
            for i in range(n):
                specs.append({"name": f"f{i}", "task_type": "free"})
                if i % every == 0 and limited < m:
                    specs.append({"name": f"a{i}", "task_type": "api"})
                    limited += 1
        else:
            specs = [
                {
                    "name": f"k{i}",
                    "task_type": "keyed",
                    "payload": {"key": f"account-{i % keys}"},
                    "concurrency_key": f"account-{i % keys}",
                }
                for i in range(n)
            ]
        for start in range(0, len(specs), 5000):
            queue.enqueue_many(specs[start : start + 5000])
        total_tasks = len(specs)
        t0 = time.perf_counter()
        with Worker(queue, registry, concurrency=4):
            deadline = time.monotonic() + 600
            while queue.get_queue_stats()["completed"] < total_tasks:
                if time.monotonic() > deadline:
                    raise RuntimeError("drain did not finish")
                time.sleep(0.005)
        total = time.perf_counter() - t0
    result: dict[str, Any] = {"tasks": total_tasks, "seconds": total}
    if kind in ("plain", "mixed"):
        result["free_per_s"] = n / (max(starts["free"]) - t0)
    if kind == "mixed":
        api_starts = sorted(starts["api"])
        result["api_tasks"] = len(api_starts)
        span = api_starts[-1] - api_starts[0]
        result["api_per_s"] = (len(api_starts) - BURST) / span if span > 0 else 0.0
        result["api_max_in_1s"] = max_in_window(api_starts)
    if kind == "keyed":
        result["keyed_per_s"] = n / total
        result["max_running_per_key"] = overlap[0]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    ap.add_argument("-n", type=int, default=10_000, help="unlimited (or keyed) tasks")
    ap.add_argument("-m", type=int, default=600, help="rate-limited tasks in L1")
    ap.add_argument("--rate", type=float, default=200.0, help="L1's limit, per second")
    ap.add_argument("--keys", type=int, default=40, help="concurrency keys in L2")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, path = args.child
        out = measure(kind, args.n, args.m, args.rate, args.keys, args.sync, path)
        print(json.dumps(out))
        return 0
    plan = [("L0 plain", "plain"), ("L1 mixed", "mixed"), ("L2 keyed", "keyed")]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in plan}
    for rep in range(args.reps):
        for label, kind in plan:
            with tempfile.TemporaryDirectory(prefix="tq-limits-") as tmp:
                out = subprocess.run(
                    [sys.executable, __file__, "--sync", args.sync, "-n", str(args.n),
                     "-m", str(args.m), "--rate", str(args.rate), "--keys", str(args.keys),
                     "--child", kind, os.path.join(tmp, "q.db")],
                    capture_output=True, text=True, check=True, cwd=HERE,
                )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[label].append(result)
            print(f"{label} rep {rep + 1}: {result}", flush=True)
    print(f"\nmedians of {args.reps} ({args.sync}; limit {args.rate:g}/s burst {BURST}):")
    summary: dict[str, dict[str, float]] = {}
    for label, results in runs.items():
        summary[label] = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"  {label}: " + ", ".join(f"{k} {v:,.1f}" for k, v in summary[label].items()))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(HERE, "results", f"limits-{stamp}.json")
    with open(path, "w") as f:
        json.dump(
            {"sync": args.sync, "reps": args.reps, "rate": args.rate, "burst": BURST,
             "runs": runs, "medians": summary},
            f, indent=1,
        )  # fmt: skip
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
