"""asyncio benchmarks (issue 12, section 2), each measurement in a fresh process.

    .venv/bin/python benchmarks/asyncio_bench.py             # 3 reps, interleaved, medians
    .venv/bin/python benchmarks/asyncio_bench.py --reps 1 --quick

A1  1,000 tasks whose handler waits 100 ms (an I/O call): async def handlers
    on the Worker's loop (async_concurrency=200) vs the same Worker with 8
    threads and a blocking handler vs huey's consumer with 8 threads; tasks/s
    from start to the last task committed, and the threads the process ran.
A2  enqueue for 2 s with synchronous=FULL: ``aenqueue`` from 100 concurrent
    coroutines on one event loop vs huey's ``task()`` from 8 threads (B2's
    setup, in the same run); our blocking ``enqueue()`` from 8 threads too.

Writes benchmarks/results/asyncio-<UTC time>.json (every run, the medians,
the machine, the commit) unless --no-save.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import scenarios  # noqa: E402  - the B2 enqueue loop and huey's setup, shared

SLEEP = 0.1


# -- A1: 1,000 tasks that each wait 100 ms ---------------------------------------------


class ThreadPeak:
    """The most threads the measured system ran at once (``peak``, not
    counting this sampler nor the threads that existed before), sampled
    every 5 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._base = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, threading.active_count() - self._base)

    def __enter__(self) -> ThreadPeak:
        self._base = threading.active_count() + 1  # the sampler itself
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_sleepers(system: str, path: str, n: int) -> dict[str, Any]:
    if system == "huey":
        return _huey_sleepers(path, n)
    from task_queue import TaskQueue, Worker

    async def wait_async(payload: Any) -> None:
        await asyncio.sleep(SLEEP)

    def wait_blocking(payload: Any) -> None:
        time.sleep(SLEEP)

    q = TaskQueue(path, synchronous="FULL")
    for start in range(0, n, 1000):
        q.enqueue_many(
            {"name": f"t{i}", "task_type": "io", "payload": i}
            for i in range(start, min(n, start + 1000))
        )
    completed = scenarios.completed_counter(path)
    if system == "ours-async":
        worker = Worker(q, {"io": wait_async}, concurrency=1, async_concurrency=200)
    else:
        worker = Worker(q, {"io": wait_blocking}, concurrency=8)
    with ThreadPeak() as peak:
        t0 = time.perf_counter()
        worker.start()
        scenarios.wait_for(lambda: completed() >= n, timeout=600)
        elapsed = time.perf_counter() - t0
    worker.stop()
    q.close()
    # The engine thread existed before the clock started: count it too.
    return {"rate": n / elapsed, "seconds": elapsed, "threads": peak.peak + 1}


def _huey_sleepers(path: str, n: int) -> dict[str, Any]:
    huey = scenarios.make_huey(path, "FULL")
    done = [0]
    lock = threading.Lock()

    @huey.task()
    def io(i: int) -> None:
        time.sleep(SLEEP)
        with lock:
            done[0] += 1

    scenarios.preload_huey(huey, io, n)
    consumer = scenarios.huey_consumer(huey, workers=8)
    with ThreadPeak() as peak:
        t0 = time.perf_counter()
        consumer.start()
        scenarios.wait_for(lambda: done[0] >= n, timeout=600)
        elapsed = time.perf_counter() - t0
    consumer.stop(graceful=False)
    huey.storage.close()
    return {"rate": n / elapsed, "seconds": elapsed, "threads": peak.peak}


# -- A2: aenqueue from 100 coroutines ---------------------------------------------------


def run_aenqueue(path: str, seconds: float, coroutines: int) -> dict[str, Any]:
    from task_queue import TaskQueue

    q = TaskQueue(path, synchronous="FULL")
    pragmas = scenarios.ours_pragmas(q)

    async def main() -> tuple[int, float, float]:
        deadline = 0.0
        counts = [0] * coroutines

        async def producer(k: int) -> None:
            n, base = 0, k * 10_000_000
            while time.perf_counter() < deadline:
                await q.aenqueue(f"task {base + n}", "noop", {"i": base + n})
                n += 1
            counts[k] = n

        cpu0 = scenarios.cpu_seconds()
        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(*(producer(k) for k in range(coroutines)))
        return sum(counts), time.perf_counter() - t0, scenarios.cpu_seconds() - cpu0

    total, elapsed, cpu = asyncio.run(main())
    q.close()
    return {
        "rate": total / elapsed, "tasks": total, "seconds": elapsed,
        "cpu_us_per_task": cpu / max(1, total) * 1e6, "pragmas": pragmas,
    }  # fmt: skip


def measure(scenario: str, system: str, workdir: str, p: dict[str, Any]) -> dict[str, Any]:
    path = os.path.join(workdir, "bench.db")
    if scenario == "A1":
        return run_sleepers(system, path, p["n"])
    if scenario == "A2":
        if system == "ours-aenqueue":
            return run_aenqueue(path, p["seconds"], 100)
        if system in ("huey", "ours"):
            return scenarios.run_enqueue(system, "FULL", path, p["seconds"], 8)
    raise ValueError(f"{scenario} {system}")


# -- the runner -------------------------------------------------------------------------

PLAN = {
    "A1": ["ours-async", "ours-threads", "huey"],
    "A2": ["ours-aenqueue", "huey", "ours"],
}
PARAMS = {"A1": {"n": 1000}, "A2": {"seconds": 2.0}}
QUICK = {"A1": {"n": 300}, "A2": {"seconds": 0.5}}


def run_one(scenario: str, system: str, params: dict[str, Any], tmp: str | None) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix=f"tq-{scenario}-", dir=tmp)
    # Flush what earlier runs left dirty: its writeback would compete with
    # this run's fsyncs (the first A2 run was the slowest of each system).
    os.sync()
    cmd = [sys.executable, __file__, "_one", scenario, system, workdir, json.dumps(params)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{scenario} {system} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=HERE, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str]) -> int:
    if argv and argv[0] == "_one":
        scenario, system, workdir, params = argv[1:]
        print(json.dumps(measure(scenario, system, workdir, json.loads(params))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="A1,A2")
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    params = QUICK if args.quick else PARAMS
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for scenario in args.only.split(","):
        runs[scenario] = {system: [] for system in PLAN[scenario]}
        for rep in range(args.reps):
            for system in PLAN[scenario]:  # interleaved: noise hits every system alike
                result = run_one(scenario, system, params[scenario], args.tmp)
                runs[scenario][system].append(result)
                print(f"{scenario} rep {rep + 1} {system}: {result['rate']:,.0f}/s"
                      + (f", {result['threads']} threads" if "threads" in result else ""),
                      file=sys.stderr, flush=True)  # fmt: skip
    medians = {
        scenario: {system: statistics.median(r["rate"] for r in results)
                   for system, results in by_system.items()}
        for scenario, by_system in runs.items()
    }  # fmt: skip
    print(f"\n{args.reps} rep(s), medians (tasks/s), commit {git_commit()}")
    for scenario, rates in medians.items():
        huey = rates["huey"]
        for system, rate in rates.items():
            threads = [r.get("threads") for r in runs[scenario][system]]
            extra = f"  threads {max(t for t in threads if t is not None)}" if threads[0] else ""
            print(f"{scenario} {system:14} {rate:10,.0f}/s  {rate / huey:6.2f}x huey{extra}")
    if not args.no_save:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = os.path.join(HERE, "results", f"asyncio-{stamp}{'-quick' if args.quick else ''}.json")
        with open(out, "w") as f:
            json.dump({"commit": git_commit(), "params": params, "reps": args.reps,
                       "medians": medians, "runs": runs, "python": platform.python_version(),
                       "sqlite": sqlite3.sqlite_version, "machine": platform.platform(),
                       "cpus": os.cpu_count()}, f, indent=1)  # fmt: skip
        print(f"saved {os.path.relpath(out, os.path.dirname(HERE))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
