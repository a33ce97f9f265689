"""Profile task_queue's hot paths (B1, B2, B4) with cProfile, every thread included.

    .venv/bin/python benchmarks/profile_hot.py [B1|B2|B4 ...] [--sync FULL|NORMAL]
                                              [--top 25] [--seconds 2] [--n 20000]

cProfile only sees the thread it was enabled in, so each thread started
after this module is imported runs under its own profiler (threading.Thread.run
is wrapped) and the stats are merged. Times are wall-clock per thread:
a thread blocked in ``Event.wait`` or ``queue.get`` shows that as time spent
there, which is the point: it tells waiting from working.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scenarios as S

_profiles: list[tuple[str, cProfile.Profile]] = []
_lock = threading.Lock()
_orig_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    prof = cProfile.Profile()
    with _lock:
        _profiles.append((self.name, prof))
    prof.enable()
    try:
        _orig_run(self)
    finally:
        prof.disable()


def report(title: str, main: cProfile.Profile, top: int, elapsed: float, tasks: int) -> str:
    out = io.StringIO()
    out.write(f"\n===== {title}: {tasks:,} tasks in {elapsed:.2f}s = {tasks / elapsed:,.0f}/s\n")
    groups: dict[str, list[cProfile.Profile]] = {"main": [main]}
    for name, prof in _profiles:
        key = re.sub(r"\d+", "N", name)
        groups.setdefault(key, []).append(prof)
    for key, profs in groups.items():
        stats = pstats.Stats(profs[0], stream=out)
        for p in profs[1:]:
            stats.add(p)
        out.write(f"\n--- threads '{key}*' ({len(profs)}), by own time ---\n")
        stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenarios", nargs="*", default=["B1", "B2", "B4"])
    ap.add_argument("--sync", default="NORMAL")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    for scenario in args.scenarios:
        _profiles.clear()
        with tempfile.TemporaryDirectory(prefix="tq-prof-") as d:
            path = os.path.join(d, "p.db")
            if scenario == "B4":
                S.preload_ours(path, args.sync, args.n)
            _profiles.clear()
            main_prof = cProfile.Profile()
            t0 = time.perf_counter()
            main_prof.enable()
            result: dict[str, Any]
            if scenario == "B1":
                result = S.run_enqueue("ours", args.sync, path, args.seconds, 1)
            elif scenario == "B2":
                result = S.run_enqueue("ours", args.sync, path, args.seconds, 8)
            elif scenario == "B3":
                result = S.run_enqueue_many("ours", args.sync, path, args.seconds)
            elif scenario == "B4":
                result = S.run_drain("ours", args.sync, path, args.n, preload=False)
            else:
                raise SystemExit(f"unknown scenario {scenario}")
            main_prof.disable()
            elapsed = time.perf_counter() - t0
            print(report(f"{scenario} {args.sync}", main_prof, args.top, elapsed, result["tasks"]))


if __name__ == "__main__":
    main()
