"""How fast the dashboard's pages answer at a million tasks (issue 11: every
page under 100 ms on this machine; measured here, not asserted in tests).

    .venv/bin/python benchmarks/dashboard.py              # build 1,000,000 tasks, time the pages
    .venv/bin/python benchmarks/dashboard.py --db big.db  # reuse (or keep) a file built before
    .venv/bin/python benchmarks/dashboard.py --tasks 100000 --reps 10

The file comes from ``benchmarks/dashboard_data.py`` (a week of work: most
tasks completed, a dead-letter set, the newest live, ten queues, twenty
types). Each page is requested ``--reps`` times (after one warm-up) in two
ways, and the median and the worst are kept:

* **in-process**: through the WSGI app with Werkzeug's test client (the
  queue's reads, the view, the template; no HTTP);
* **server**: over HTTP from this process to ``python -m
  task_queue.dashboard`` in its own process (the real server, keep-alive off:
  a new connection per request, as a browser's first request).

Results go to ``benchmarks/results/dashboard-<UTC time>.json``; the table
(markdown) to stdout. "worst cases" are filters the kept counts cannot
narrow (a rare task type among a million finished tasks) and are
reported, not hidden: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

#: The pages timed: (label, path). {failed_id} etc. are filled from the file.
PAGES = [
    ("overview", "/"),
    ("overview, refresh fragment", "/?fragment=1"),
    ("tasks, newest", "/tasks"),
    ("tasks, page 2,000 deep (keyset)", "/tasks?after={deep_cursor}"),
    ("tasks, pending", "/tasks?status=pending"),
    ("tasks, running", "/tasks?status=running"),
    ("tasks, waiting", "/tasks?status=waiting"),
    ("tasks, completed", "/tasks?status=completed"),
    ("tasks, completed, page 2", "/tasks?status=completed&after={completed_cursor}"),
    ("tasks, cancelled", "/tasks?status=cancelled"),
    ("tasks, one common type", "/tasks?type=type_00"),
    ("tasks, one queue", "/tasks?queue=emails"),
    ("tasks, the smallest queue (0.1%)", "/tasks?queue=tiny"),
    ("tasks, pending in the smallest queue", "/tasks?status=pending&queue=tiny"),
    ("tasks, running of one type", "/tasks?status=running&type=type_10"),
    ("tasks, an unknown queue", "/tasks?queue=nowhere"),
    ("failed", "/failed"),
    ("failed, one queue", "/failed?queue=tiny"),
    ("failed, a rare type", "/failed?type=rare_type"),
    ("task detail, failed with 4 attempts", "/tasks/{failed_id}"),
    ("task detail, completed", "/tasks/{completed_id}"),
    ("task detail, running with progress", "/tasks/{running_id}"),
    ("search by id (redirect)", "/tasks?id={completed_id}"),
    ("schedules", "/schedules"),
    ("static CSS", "/static/dashboard.css"),
]
#: Filters nothing kept narrows: a walk of the finished tasks or of the
#: table, bounded to the dashboard's scan_rows per page (views.SCAN_ROWS).
WORST = [
    ("worst: a rare type (0.01%), any status", "/tasks?type=rare_type"),
    ("worst: a rare type, 'Search older tasks'", "/tasks?type=rare_type&after={rare_cursor}"),
    ("worst: a type no task has", "/tasks?type=no_such_type"),
    ("worst: completed of a rare type", "/tasks?status=completed&type=rare_type"),
    (
        "worst: completed of a rare type, 'Search older tasks'",
        "/tasks?status=completed&type=rare_type&after={rare_completed_cursor}",
    ),
]


def _ids(path: str) -> dict[str, str]:
    from urllib.parse import quote

    from task_queue import TaskQueue
    from task_queue.dashboard.views import SCAN_ROWS

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    one = lambda sql: str(conn.execute(sql).fetchone()[0])  # noqa: E731
    values = {
        "failed_id": one("SELECT max(task_id) FROM task_attempts"),
        "completed_id": one("SELECT max(id) FROM tasks WHERE status = 'completed'"),
        "running_id": one(
            "SELECT max(id) FROM tasks WHERE status = 'running' AND progress IS NOT NULL"
        ),
    }
    conn.close()
    with TaskQueue(path) as queue:
        total = sum(sum(c.values()) for c in queue.queue_stats().values())
        values["deep_cursor"] = str(total - 2000 * 50)
        values["completed_cursor"] = queue.list_tasks(status="completed").next or ""
        # Where the first page of a rare type stopped (its "Search older tasks" link).
        for key, status in (("rare_cursor", None), ("rare_completed_cursor", "completed")):
            page = queue.list_tasks(status=status, task_type="rare_type", scan=SCAN_ROWS)
            values[key] = quote(page.next or "", safe="")
    return values


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(times) * 1000, 2),
        "max_ms": round(max(times) * 1000, 2),
    }


def time_in_process(path: str, pages: list[tuple[str, str]], reps: int) -> dict[str, Any]:
    from werkzeug.test import Client

    from task_queue.dashboard import create_app

    app = create_app(path)
    client = Client(app)
    results = {}
    try:
        for label, url in pages:
            status = client.get(url).status_code  # warm-up (and the status)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                response = client.get(url)
                response.get_data()
                times.append(time.perf_counter() - t0)
            results[label] = {"url": url, "status": status, **_summary(times)}
    finally:
        app.close()
    return results


def time_server(path: str, pages: list[tuple[str, str]], reps: int) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "task_queue.dashboard", "--db", path, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": os.path.dirname(HERE)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            raise RuntimeError(f"the dashboard did not start: {line!r}")
        port = int(match.group(1))

        def get(url: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", url)
            response = conn.getresponse()
            response.read()
            conn.close()
            return response.status

        results = {}
        for label, url in pages:
            status = get(url)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                get(url)
                times.append(time.perf_counter() - t0)
            results[label] = {"url": url, "status": status, **_summary(times)}
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="the queue file: built there if missing, kept afterwards")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tmp", help="where a temporary file goes (default: system temp)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    import dashboard_data

    tmp = None
    path = args.db
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="task-queue-dashboard-bench-", dir=args.tmp)
        path = os.path.join(tmp.name, "big.db")
    built = None
    if not os.path.exists(path):
        print(f"building {args.tasks:,} tasks in {path} ...", file=sys.stderr, flush=True)
        built = dashboard_data.build(path, args.tasks)
        print(f"built in {built['build_seconds']:.0f} s", file=sys.stderr, flush=True)
    try:
        ids = _ids(path)
        pages = [(label, url.format(**ids)) for label, url in PAGES + WORST]
        print("timing in-process ...", file=sys.stderr, flush=True)
        wsgi = time_in_process(path, pages, args.reps)
        print("timing through the server ...", file=sys.stderr, flush=True)
        server = time_server(path, pages, args.reps)
    finally:
        if tmp is not None:
            tmp.cleanup()

    worst_labels = {label for label, _ in WORST}
    lines = [
        "| page | in-process median / max (ms) | server median / max (ms) | < 100 ms |",
        "|---|---|---|---|",
    ]
    for label, _ in pages:
        a, b = wsgi[label], server[label]
        ok = "yes" if max(a["median_ms"], b["median_ms"]) < 100 else "**no**"
        lines.append(
            f"| {label} | {a['median_ms']:.1f} / {a['max_ms']:.1f} | "
            f"{b['median_ms']:.1f} / {b['max_ms']:.1f} | {ok} |"
        )
    table = "\n".join(lines)
    print(table)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "task_queue"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
    )
    record = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "task_queue_dirty": dirty,
        "tasks": args.tasks if built else None,
        "built": built,
        "reps": args.reps,
        "machine": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "platform": platform.platform(),
        },
        "in_process": wsgi,
        "server": server,
        "worst_cases": sorted(worst_labels),
        "table": table,
    }
    if not args.no_save:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = os.path.join(HERE, "results", f"dashboard-{stamp}.json")
        with open(out, "w") as f:
            json.dump(record, f, indent=2)
        print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
