"""Where an enqueue's time goes: schema costs and the engine round trip.

    .venv/bin/python benchmarks/cost_breakdown.py [--sync NORMAL] [--seconds 1]

Plain sqlite3 on a copy of our schema with one piece removed or changed at
a time (the count triggers, the scheduled-task index, all secondary
indexes, AUTOINCREMENT, RETURNING; 1 KiB pages instead of 4 KiB), inserting
(a) one row per commit and (b) 1,000 rows per transaction, next to a table
shaped like huey's (what its enqueue writes); then the cost of one round
trip through the storage engine thread with a unit that does nothing, and
of validating and encoding one task. Evidence for benchmarks/README.md, not
a target.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scenarios as S

from task_queue.spec import TaskSpec


def rate(fn: Callable[[int], int], seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += fn(n)
    return n / (time.perf_counter() - t0)


def variant_db(path: str, sync: str, variant: str) -> sqlite3.Connection:
    if variant == "1 KiB pages":
        # The page size is fixed when the first table is made.
        made = sqlite3.connect(path)
        made.execute("PRAGMA page_size = 1024")
        made.execute("CREATE TABLE first (x)")
        made.execute("DROP TABLE first")
        made.close()
    conn = S.floor_connection(path, sync)
    ddl = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'tasks'"
        " AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    ).fetchall()
    drop: list[tuple[str, str]] = []
    if variant == "no count triggers":
        drop = [(k, n) for k, n, _ in ddl if k == "trigger"]
    elif variant == "no scheduled-task index":
        drop = [(k, n) for k, n, _ in ddl if n == "idx_tasks_scheduled"]
    elif variant == "no secondary indexes":
        drop = [(k, n) for k, n, _ in ddl if k == "index"]
    elif variant == "bare table":
        drop = [(k, n) for k, n, _ in ddl]
    for kind, name in drop:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    if variant == "no AUTOINCREMENT":
        table = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ALTER TABLE tasks RENAME TO tasks_old")
        conn.execute(table.replace(" AUTOINCREMENT", ""))
        conn.execute("DROP TABLE tasks_old")
        for _, _, sql in ddl:
            conn.execute(sql)
        conn.execute("COMMIT")
    return conn


def insert_rates(sync: str, seconds: float, d: str) -> list[dict[str, Any]]:
    sql = S.queries()["insert_task"]
    plain = sql.replace("RETURNING id", "").rstrip().rstrip(";")
    rows = []
    variants = [
        "as is", "no count triggers", "no scheduled-task index", "no secondary indexes",
        "bare table", "no AUTOINCREMENT", "1 KiB pages", "no RETURNING (executemany)",
    ]  # fmt: skip
    rows.append(huey_like(sync, seconds, d))
    for i, variant in enumerate(variants):
        path = os.path.join(d, f"v{i}.db")
        conn = variant_db(path, sync, variant)

        def one(n: int, conn: sqlite3.Connection = conn) -> int:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, S.insert_params(n, time.time())).fetchall()
            conn.execute("COMMIT")
            return 1

        def batch(n: int, conn: sqlite3.Connection = conn, variant: str = variant) -> int:
            now = time.time()
            params = [S.insert_params(n + k, now) for k in range(1000)]
            conn.execute("BEGIN IMMEDIATE")
            if variant.startswith("no RETURNING"):
                conn.executemany(plain, params)
            else:
                for p in params:
                    conn.execute(sql, p).fetchall()
            conn.execute("COMMIT")
            return 1000

        r1 = rate(one, seconds)
        rb = rate(batch, seconds)
        conn.close()
        rows.append({"variant": variant, "one_per_commit": r1, "batch_1000": rb})
        print(f"  {variant:<28} one/commit {r1:>9,.0f}/s   1000/txn {rb:>9,.0f}/s", flush=True)
    return rows


def huey_like(sync: str, seconds: float, d: str) -> dict[str, Any]:
    """huey's SqliteStorage table and index, one 80-byte message per commit."""
    conn = sqlite3.connect(os.path.join(d, "huey.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    conn.execute(
        "CREATE TABLE task (id INTEGER NOT NULL PRIMARY KEY, queue TEXT NOT NULL,"
        " data BLOB NOT NULL, priority REAL NOT NULL DEFAULT 0.0)"
    )
    conn.execute("CREATE INDEX task_priority_id ON task (priority DESC, id ASC)")
    insert = "INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)"

    def one(n: int) -> int:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(insert, ("bench", b"x" * 80, 0.0))
        conn.execute("COMMIT")
        return 1

    r1 = rate(one, seconds)
    conn.close()
    print(f"  {'huey-shaped table':<28} one/commit {r1:>9,.0f}/s", flush=True)
    return {"variant": "huey-shaped table", "one_per_commit": r1, "batch_1000": None}


def round_trip(sync: str, d: str, calls: int = 3000) -> dict[str, float]:
    """One request through the engine thread and back, doing nothing."""
    q = S.open_ours(os.path.join(d, "rt.db"), sync)
    engine = q.storage._engine

    def nothing(conn: sqlite3.Connection) -> None:
        return None

    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        engine.call(nothing, readonly=True, savepoint=False)
        times.append(time.perf_counter() - t0)
    prep = []
    for i in range(calls):
        t0 = time.perf_counter()
        TaskSpec(f"task {i}", "noop", {"i": i}).encode(time.time())
        prep.append(time.perf_counter() - t0)
    q.close()
    return {
        "engine_round_trip_us": statistics.median(times) * 1e6,
        "enqueue_validation_encode_us": statistics.median(prep) * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sync", default="NORMAL")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tq-cost-") as d:
        print(f"insert rates, synchronous={args.sync}:")
        rows = insert_rates(args.sync, args.seconds, d)
        rt = round_trip(args.sync, d)
        print(f"engine round trip (no-op unit, read-only): {rt['engine_round_trip_us']:.0f} us")
        print(f"enqueue validation + JSON encode: {rt['enqueue_validation_encode_us']:.0f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sync": args.sync, "inserts": rows, **rt}, f, indent=1)


if __name__ == "__main__":
    main()
