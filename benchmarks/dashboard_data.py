"""A queue file of a million tasks that looks lived in, built fast.

Used by ``benchmarks/dashboard.py`` (and handy for trying the dashboard by
hand: ``python benchmarks/dashboard_data.py big.db``). The file is what a
week of work leaves: ids in time order, most tasks completed, a dead-letter
set of failed ones with tracebacks and attempt histories, some cancelled,
the newest still pending, running or waiting, a few scheduled ahead, over
ten queues of very different sizes and twenty task types (one rare, one
hostile), plus workers and schedules.

Built like ``benchmarks/scenarios.py``'s ``build_pending``: the schema comes
from ``TaskQueue`` itself; then, with plain sqlite3, the tasks table's
indexes and triggers are dropped, the rows inserted, the indexes and
triggers recreated from their own DDL and ``task_counts`` (per queue and
status) recomputed, so the file ends up as if every task had been enqueued
and run.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from typing import Any

#: (queue, weight): a big default queue, a few mid-sized ones, a tiny one.
QUEUES = [
    ("default", 40), ("emails", 20), ("reports", 10), ("images", 10), ("billing", 6),
    ("exports", 5), ("webhooks", 4), ("search", 3), ("cleanup", 1.9), ("tiny", 0.1),
]  # fmt: skip
#: Twenty types; ``rare_type`` is 1 task in 10,000; the last is a hostile name.
TYPES = [f"type_{i:02d}" for i in range(18)] + ["rare_type", "<script>alert(1)</script>"]
TYPE_WEIGHTS = [1.0 / (i + 1) for i in range(18)] + [0.0003, 0.01]

SCHEDULES = [
    ("nightly-report", "type_03", "0 2 * * *", "reports"),
    ("cleanup", "type_07", "every 10m", "cleanup"),
]


def _traceback(i: int) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/tasks.py", line 42, in handle\n'
        "    response = client.post(url, json=payload, timeout=10)\n"
        '  File "/srv/app/http.py", line 118, in post\n'
        "    raise ConnectionError(f'connect to {host} failed')\n"
        f"ConnectionError: connect to api-{i % 7}.example.com failed\n"
    )


def build(
    path: str, n: int = 1_000_000, *, seed: int = 11, now: float | None = None
) -> dict[str, Any]:
    """Create the queue file at ``path`` with ``n`` tasks (see the module
    docstring); returns what was built and how long it took."""
    from task_queue import TaskQueue

    TaskQueue(path).close()  # the schema, by the library itself
    rng = random.Random(seed)
    now = time.time() if now is None else now
    span = 7 * 86400.0  # a week of history
    start = now - span
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    t0 = time.perf_counter()
    ddl = conn.execute(
        "SELECT type, name, sql FROM sqlite_master"
        " WHERE tbl_name = 'tasks' AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    ).fetchall()
    conn.execute("BEGIN IMMEDIATE")
    for kind, name, _ in ddl:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    queue_names = [q for q, _ in QUEUES]
    queue_weights = [w for _, w in QUEUES]
    # The newest 2% are live (pending, running, waiting); the rest finished.
    live_from = int(n * 0.98)
    columns = (
        "id, name, task_type, payload, priority, status, worker_id, created_at, scheduled_at,"
        " started_at, completed_at, max_retries, retry_count, error_message, result, attempts,"
        " run_at, lease_expires_at, claim_token, owner_host, owner_pid, queue_name,"
        " error_traceback, first_started_at, progress"
    )
    insert = f"INSERT INTO tasks ({columns}) VALUES ({', '.join('?' * 25)})"
    attempts_insert = (
        "INSERT INTO task_attempts (task_id, attempt, worker_id, started_at, finished_at,"
        " outcome, error_class, error, traceback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    statuses: dict[str, int] = {}
    chunk = 50_000
    for first in range(1, n + 1, chunk):
        last = min(n, first + chunk - 1)
        qs = rng.choices(queue_names, queue_weights, k=last - first + 1)
        ts = rng.choices(TYPES, TYPE_WEIGHTS, k=last - first + 1)
        rows = []
        history = []
        for offset, task_id in enumerate(range(first, last + 1)):
            created = start + span * (task_id / n) * 0.999
            task_type = ts[offset]
            queue_name = qs[offset]
            r = rng.random()
            if task_id >= live_from:
                status = (
                    "pending" if r < 0.8 else "running" if r < 0.85 else "waiting" if r < 0.9
                    else "completed"
                )  # fmt: skip
            else:
                status = (
                    "completed" if r < 0.92 else "failed" if r < 0.96 else "cancelled"
                    if r < 0.98 else "pending" if r < 0.985 else "completed"
                )  # fmt: skip
            statuses[status] = statuses.get(status, 0) + 1
            worker = f"web-{task_id % 3}:{1000 + task_id % 5}"
            started = created + rng.random() * 2
            done = started + rng.random() * 5
            name = f"{task_type} #{task_id}"
            if task_id % 100_000 == 7:
                name = "<img src=x onerror=alert(1)> hostile name"
            payload = json.dumps({"user_id": task_id % 9973, "attempt_key": f"k{task_id}"})
            row: list[Any] = [
                task_id, name, task_type, payload, rng.choice((1, 2, 2, 2, 3, 4)), status,
                None, created, None, None, None, 3, 0, None, None, 0, created, None, None,
                None, None, queue_name, None, None, None,
            ]  # fmt: skip
            if status == "completed":
                row[6], row[9], row[10], row[14], row[15] = worker, started, done, '{"ok": true}', 1
                row[23] = started
            elif status == "failed":
                row[6], row[9], row[10], row[12], row[15] = worker, started, done, 3, 4
                row[13] = f"ConnectionError: connect to api-{task_id % 7}.example.com failed"
                row[22] = _traceback(task_id)
                row[23] = started - 60
                if task_id % 10 == 0:  # some attempt histories (most were purged, say)
                    for attempt in range(1, 5):
                        history.append(
                            (task_id, attempt, worker, started - 60 + attempt * 10,
                             started - 55 + attempt * 10, "retried" if attempt < 4 else "failed",
                             "builtins.ConnectionError", row[13], row[22])
                        )  # fmt: skip
            elif status == "cancelled":
                row[10] = done
            elif status == "running":
                row[6], row[9], row[15], row[23] = worker, now - rng.random() * 30, 1, now - 30
                row[17], row[18] = now + 30, rng.getrandbits(62)
                row[19], row[20] = "bench-host", 1000 + task_id % 5
                if task_id % 2:
                    row[24] = json.dumps(
                        {"current": task_id % 100, "total": 100, "message": "working",
                         "updated_at": now}
                    )  # fmt: skip
            elif status == "pending" and task_id < live_from:
                # Scheduled ahead (or a retry backing off).
                row[16] = now + rng.random() * 86400
                row[8] = row[16]
            rows.append(row)
        conn.executemany(insert, rows)
        conn.executemany(attempts_insert, history)
    for _, _, sql in ddl:
        conn.execute(sql)
    conn.execute("DELETE FROM task_counts")
    conn.execute(
        "INSERT INTO task_counts (queue_name, status, n)"
        " SELECT queue_name, status, count(*) FROM tasks GROUP BY queue_name, status"
    )
    for w in range(6):
        conn.execute(
            "INSERT INTO workers (worker_id, name, host, pid, queues, concurrency, started_at,"
            " last_seen, stopped_at, processed, failed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f"web-{w}:{1000 + w}", f"worker-{w}", f"web-{w % 3}", 1000 + w,
             None if w % 2 else "default,emails", 8, now - 3600, now - w, None, 1000 * w, w),
        )  # fmt: skip
    for name, task_type, expression, queue_name in SCHEDULES:
        conn.execute(
            "INSERT INTO schedules (name, task_type, expression, queue_name, misfire, next_fire,"
            " last_slot, last_task_id, declared_at) VALUES (?, ?, ?, ?, 'latest', ?, ?, ?, ?)",
            (name, task_type, expression, queue_name, now + 600, now - 600, n // 2, now - 60),
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"rows": n, "statuses": statuses, "build_seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(build(args.path, args.tasks)), file=sys.stdout)


if __name__ == "__main__":
    main()
