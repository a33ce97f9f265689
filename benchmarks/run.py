"""The benchmark suite: task_queue against huey's SqliteHuey and plain sqlite3.

    .venv/bin/python benchmarks/run.py [--quick] [--only B1,B4] [--sync FULL|NORMAL|both]
                                       [--reps N] [--out FILE | --no-save]

Every measurement runs in a fresh process (benchmarks/scenarios.py) on a
fresh database file; repetitions of ours, huey's and the floor's run
interleaved, so a noisy neighbour hurts all of them alike. The table shows
medians over the repetitions; the JSON (benchmarks/results/<UTC time>.json)
keeps every single run too. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "scenarios.py")
ALL = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]

#: Parameters per mode. Rates run for ``seconds``; B4 drains ``n`` tasks.
FULL_PARAMS: dict[str, dict[str, Any]] = {
    "B1": {"seconds": 2.0},
    "B2": {"seconds": 2.0},
    "B3": {"seconds": 2.0},
    "B4": {"n": 20_000},
    "B5": {"samples": 100},
    "B5x": {"samples": 60},
    "B6": {"big": 1_000_000, "small": 1_000, "claims": 200},
    "B7": {"n": 200_000, "warmup": 10_000},
}
QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "B1": {"seconds": 0.5},
    "B2": {"seconds": 0.5},
    "B3": {"seconds": 0.5},
    "B4": {"n": 4_000},
    "B5": {"samples": 30},
    "B5x": {"samples": 20},
    "B6": {"big": 200_000, "small": 1_000, "claims": 50},
    "B7": {"n": 40_000, "warmup": 10_000},
}

#: Which systems each scenario measures (the floor is "sqlite").
SYSTEMS = {
    "B1": ["ours", "huey", "sqlite"],
    "B2": ["ours", "huey"],
    "B3": ["ours", "sqlite"],
    "B4": ["ours", "huey", "sqlite"],
    "B5": ["ours", "huey"],
    "B5x": ["ours", "huey"],
}


class Failed(Exception):
    pass


def run_one(
    scenario: str, system: str, sync: str, workdir: str, params: dict[str, Any], timeout: float
) -> dict[str, Any]:
    cmd = [sys.executable, SCENARIOS, scenario, system, sync, workdir, json.dumps(params)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE
        )
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"{scenario} {system} {sync}: timed out after {timeout}s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise Failed(f"{scenario} {system} {sync}: exit {proc.returncode}\n  " + "\n  ".join(tail))
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def fresh_dir(root: str) -> str:
    return tempfile.mkdtemp(prefix="tq-bench-", dir=root)


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def measure_simple(
    scenario: str, sync: str, params: dict[str, Any], reps: int, root: str, log: Any
) -> dict[str, list[dict[str, Any]]]:
    """Interleaved reps of every system of ``scenario``."""
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS[scenario]}
    for rep in range(reps):
        for system in SYSTEMS[scenario]:
            workdir = fresh_dir(root)
            try:
                result = run_one(scenario, system, sync, workdir, params, timeout=900)
            except Failed as exc:
                log(f"  FAILED {exc}")
                continue
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            runs[system].append(result)
            log(f"  {scenario:<3} {sync:<6} {system:<6} rep {rep + 1}/{reps}: {brief(result)}")
    return runs


def measure_b6(
    sync: str, params: dict[str, Any], reps: int, root: str, log: Any
) -> dict[str, list[dict[str, Any]]]:
    """Claim cost at ``big`` pending vs ``small`` pending; stats at ``big``.

    The big file is built once (not timed), then each rep is a fresh process
    on it; claimed tasks are released again, so the pending count holds.
    """
    runs: dict[str, list[dict[str, Any]]] = {"big": [], "small": []}
    dirs = {}
    try:
        for size in ("big", "small"):
            dirs[size] = fresh_dir(root)
            built = run_one("B6build", "ours", sync, dirs[size], {"n": params[size]}, timeout=900)
            log(f"  B6  {sync:<6} built {params[size]:,} pending in {built['build_seconds']:.1f}s")
        for rep in range(reps):
            for size in ("big", "small"):
                result = run_one(
                    "B6", "ours", sync, dirs[size], {"claims": params["claims"]}, timeout=900
                )
                runs[size].append(result)
                log(f"  B6  {sync:<6} {size:<6} rep {rep + 1}/{reps}: {brief(result)}")
    except Failed as exc:
        log(f"  FAILED {exc}")
    finally:
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
    return runs


def measure_b7(
    sync: str, params: dict[str, Any], reps: int, root: str, log: Any
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {"ours": []}
    for rep in range(reps):
        workdir = fresh_dir(root)
        try:
            result = run_one("B7", "ours", sync, workdir, params, timeout=1800)
            runs["ours"].append(result)
            log(f"  B7  {sync:<6} ours   rep {rep + 1}/{reps}: {brief(result)}")
        except Failed as exc:
            log(f"  FAILED {exc}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return runs


def brief(result: dict[str, Any]) -> str:
    keys = ("rate", "p50_ms", "p99_ms", "dequeue_ms", "claim8_ms", "stats_ms", "growth_mb")
    parts = []
    for k in keys:
        if k in result:
            parts.append(f"{k}={result[k]:,.0f}" if k == "rate" else f"{k}={result[k]:.3f}")
    return " ".join(parts)


# -- evaluation -------------------------------------------------------------------


def rows_for(scenario: str, sync: str, runs: dict[str, list[dict[str, Any]]]) -> list[dict]:
    """Table rows: metric, ours, huey, floor, ratio, target, met."""

    def m(system: str, key: str) -> float | None:
        return median_of(runs.get(system, []), key)

    rows: list[dict[str, Any]] = []

    def row(metric: str, ours: Any, huey: Any = None, floor: Any = None, ratio: Any = None,
            target: str = "", met: bool | None = None, unit: str = "") -> None:  # fmt: skip
        rows.append({
            "scenario": scenario, "sync": sync, "metric": metric, "unit": unit, "ours": ours,
            "huey": huey, "floor": floor, "ratio": ratio, "target": target, "met": met,
        })  # fmt: skip

    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    if scenario == "B1":
        ours, huey, floor = m("ours", "rate"), m("huey", "rate"), m("sqlite", "rate")
        # Issue 13's targets (ratios to huey in the same run).
        r = div(ours, huey)
        row("enqueue, 1 thread", ours, huey, floor, r, ">= 1.2 x huey",
            None if r is None else r >= 1.2, "tasks/s")  # fmt: skip
        rows[-1]["vs_floor"] = div(ours, floor)
    elif scenario == "B2":
        ours, huey = m("ours", "rate"), m("huey", "rate")
        r = div(ours, huey)
        row("enqueue, 8 threads", ours, huey, None, r, ">= 2.2 x huey",
            None if r is None else r >= 2.2, "tasks/s")  # fmt: skip
    elif scenario == "B3":
        ours, floor = m("ours", "rate"), m("sqlite", "rate")
        row("enqueue_many x1000", ours, None, floor, div(ours, floor), ">= 100,000/s",
            None if ours is None else ours >= 100_000, "tasks/s")  # fmt: skip
    elif scenario == "B4":
        ours, huey, floor = m("ours", "rate"), m("huey", "rate"), m("sqlite", "rate")
        r = div(ours, huey)
        if sync == "FULL":
            target, ok = ">= 10 x huey", None if r is None else r >= 10
        else:
            target, ok = ">= 25,000/s", None if ours is None else ours >= 25_000
        row("drain 4 threads", ours, huey, floor, r, target, ok, "tasks/s")
        rows[-1]["vs_floor"] = div(ours, floor)
    elif scenario == "B5":
        p50, p99 = m("ours", "p50_ms"), m("ours", "p99_ms")
        row("latency p50, same proc", p50, m("huey", "p50_ms"), None,
            div(p50, m("huey", "p50_ms")), "<= 2 ms", None if p50 is None else p50 <= 2,
            "ms")  # fmt: skip
        row("latency p99, same proc", p99, m("huey", "p99_ms"), None,
            div(p99, m("huey", "p99_ms")), "<= 20 ms", None if p99 is None else p99 <= 20,
            "ms")  # fmt: skip
    elif scenario == "B5x":
        p50, p99 = m("ours", "p50_ms"), m("ours", "p99_ms")
        row("latency p50, other proc", p50, m("huey", "p50_ms"), None,
            div(p50, m("huey", "p50_ms")), "<= 50 ms", None if p50 is None else p50 <= 50,
            "ms")  # fmt: skip
        row("latency p99, other proc", p99, m("huey", "p99_ms"), None,
            div(p99, m("huey", "p99_ms")), "", None, "ms")  # fmt: skip
    elif scenario == "B6":
        for key, label in (("dequeue_ms", "dequeue()"), ("claim8_ms", "claim(8, types)")):
            big, small = m("big", key), m("small", key)
            r = div(big, small)
            row(f"{label} big/small", big, None, small, r, "ratio <= 1.5",
                None if r is None else r <= 1.5, "ms")  # fmt: skip
        stats = m("big", "stats_ms")
        row("get_queue_stats() at big", stats, None, None, None, "<= 5 ms",
            None if stats is None else stats <= 5, "ms")  # fmt: skip
        first = m("big", "stats_first_ms")
        row("  first call, fresh process", first, None, None, None, "<= 5 ms",
            None if first is None else first <= 5, "ms")  # fmt: skip
    elif scenario == "B7":
        g = m("ours", "growth_mb")
        row("RSS growth after warm-up", g, None, None, None, "<= 10 MB",
            None if g is None else g <= 10, "MB")  # fmt: skip
    return rows


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and unit == "tasks/s":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    head = ["scen", "sync", "metric", "unit", "ours", "huey", "floor", "ratio", "target", "met"]
    body = []
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        body.append([
            r["scenario"], r["sync"], r["metric"], r["unit"], fmt(r["ours"], r["unit"]),
            fmt(r["huey"], r["unit"]), fmt(r["floor"], r["unit"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}", r["target"], met,
        ])  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    for b in body:
        lines.append(" | ".join(str(x).ljust(w) for x, w in zip(b, widths, strict=True)))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    for name in ("huey", "psutil", "sqlite_worker"):
        try:
            from importlib.metadata import version

            info[name] = version(name.replace("_", "-"))
        except Exception:
            pass
    try:
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
        dirty = subprocess.run(
            # From the checkout's root: from benchmarks/ the pathspec named
            # benchmarks/task_queue and the flag was always False.
            ["git", "status", "--porcelain", "--", "task_queue"],
            capture_output=True, text=True, cwd=os.path.dirname(HERE),
        ).stdout.strip()  # fmt: skip
        info["task_queue_dirty"] = bool(dirty)
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 rep (about 2 minutes)")
    ap.add_argument("--only", default=",".join(ALL), help="comma list of B1..B7 (default: all)")
    ap.add_argument("--sync", default="both", choices=["FULL", "NORMAL", "both"])
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    ap.add_argument("--out", default=None, help="JSON file (default results/<UTC time>.json)")
    ap.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    ap.add_argument("--tmp", default=None, help="directory for the databases (default: system tmp)")
    args = ap.parse_args(argv)

    try:
        import huey  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        print(f"missing benchmark dependency ({exc}); pip install -e '.[bench]'", file=sys.stderr)
        return 2

    only = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(ALL)
    if unknown:
        ap.error(f"unknown scenarios {sorted(unknown)}")
    syncs = ["FULL", "NORMAL"] if args.sync == "both" else [args.sync]
    reps = args.reps or (1 if args.quick else 3)
    params = QUICK_PARAMS if args.quick else FULL_PARAMS
    root = args.tmp or tempfile.gettempdir()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.time()
    info = machine()
    log(f"task_queue benchmarks ({'quick' if args.quick else 'full'}, {reps} rep(s)); {info}")
    raw: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for scenario in only:
        for sync in syncs:
            if scenario == "B6":
                runs = measure_b6(sync, params["B6"], reps, root, log)
                rows += rows_for("B6", sync, runs)
                raw[f"B6/{sync}"] = runs
            elif scenario == "B7":
                runs = measure_b7(sync, params["B7"], reps, root, log)
                rows += rows_for("B7", sync, runs)
                raw[f"B7/{sync}"] = runs
            elif scenario == "B5":
                for sub in ("B5", "B5x"):
                    runs = measure_simple(sub, sync, params[sub], reps, root, log)
                    rows += rows_for(sub, sync, runs)
                    raw[f"{sub}/{sync}"] = runs
            else:
                runs = measure_simple(scenario, sync, params[scenario], reps, root, log)
                rows += rows_for(scenario, sync, runs)
                raw[f"{scenario}/{sync}"] = runs
    info["loadavg_end"] = os.getloadavg()
    elapsed = time.time() - started
    print(table(rows))
    print(f"\n{reps} rep(s), medians; ratio = ours/huey (B1, B2, B4, B5), ours/floor (B3), "
          f"big/small (B6). {elapsed:.0f}s. Load average at start/end: "
          f"{info.get('loadavg_start')} / {info['loadavg_end']}")  # fmt: skip
    if not args.no_save:
        out = args.out
        if out is None:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            out = os.path.join(HERE, "results", f"{stamp}{'-quick' if args.quick else ''}.json")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        doc = {
            "command": " ".join([os.path.relpath(sys.argv[0]), *(argv or sys.argv[1:])]),
            "mode": "quick" if args.quick else "full",
            "reps": reps,
            "params": {k: params[k] for k in params},
            "machine": info,
            "seconds": elapsed,
            "table": rows,
            "runs": raw,
        }
        with open(out, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {os.path.relpath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
