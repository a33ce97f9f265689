"""Interleaved A/B runs of one scenario between source trees.

    .venv/bin/python benchmarks/ab.py B4 FULL 5 /work/main /tmp/experiment huey
    .venv/bin/python benchmarks/ab.py B4 FULL 4 /work/main /tmp/experiment@0.0005

Each argument after the repetitions is a checkout of this repository (its
``task_queue`` is imported through PYTHONPATH, its ``benchmarks/scenarios.py``
runs the measurement), ``huey`` or ``floor`` (scenarios.py's other systems,
run from this tree). ``TREE@SECONDS`` runs that tree with
``sys.setswitchinterval(SECONDS)`` set before anything is imported. The
runs are interleaved (A, B, A, B, ...), each in a fresh process on a fresh
database, so a noisy neighbour hits both alike; medians are printed. For
trying a change against its parent before keeping it: run.py is for the
figures the READMEs quote.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

from run import FULL_PARAMS

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: The scenarios' sizes: run.py's full mode, for the scenarios with one figure.
PARAMS = {name: FULL_PARAMS[name] for name in ("B1", "B2", "B3", "B4", "B5")}

# Sets the switch interval of a run that asks for one (TREE@SECONDS):
# Python imports sitecustomize from PYTHONPATH at start-up.
SITECUSTOMIZE = """\
import os, sys
if os.environ.get("AB_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["AB_SWITCH_INTERVAL"]))
"""


def run_one(scenario: str, sync: str, target: str, site: str) -> float:
    """One measurement of ``target``: the rate (B1-B4) or p50 in ms (B5)."""
    tree, _, interval = target.partition("@")
    system = {"huey": "huey", "floor": "sqlite"}.get(tree, "ours")
    if system != "ours":
        tree = ROOT
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.abspath(tree), site]))
    if interval:
        env["AB_SWITCH_INTERVAL"] = interval
    workdir = tempfile.mkdtemp(prefix="ab-")
    try:
        done = subprocess.run(
            [sys.executable, os.path.join(tree, "benchmarks", "scenarios.py"), scenario, system,
             sync, workdir, json.dumps(PARAMS[scenario])],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode:
        raise SystemExit(f"{target} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["rate"] if "rate" in result else result["p50_ms"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scenario", choices=sorted(PARAMS))
    ap.add_argument("sync", choices=["FULL", "NORMAL"])
    ap.add_argument("reps", type=int)
    ap.add_argument("targets", nargs="+", help="trees, huey, floor; TREE@SECONDS")
    args = ap.parse_args(argv)
    site = tempfile.mkdtemp(prefix="ab-site-")
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write(SITECUSTOMIZE)
    values: dict[str, list[float]] = defaultdict(list)
    try:
        for rep in range(args.reps):
            for target in args.targets:
                value = run_one(args.scenario, args.sync, target, site)
                values[target].append(value)
                print(f"rep {rep + 1}/{args.reps} {target}: {value:,.2f}", file=sys.stderr)
    finally:
        shutil.rmtree(site, ignore_errors=True)
    unit = "p50 ms" if args.scenario == "B5" else "tasks/s"
    for target, got in values.items():
        runs = ", ".join(f"{v:,.0f}" if unit == "tasks/s" else f"{v:.2f}" for v in sorted(got))
        print(f"{target:40s} median {statistics.median(got):>10,.2f} {unit}  [{runs}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
