"""PostgreSQL benchmarks: task_queue against pgqueuer (asyncpg) and procrastinate,
side by side in one run on the same server.

    .venv/bin/pip install -e '.[bench]'       # pgqueuer, asyncpg, procrastinate
    source .ci/lib/cleanup.sh; source .ci/lib/postgres.sh; pg_start   # or your own server
    .venv/bin/python benchmarks/postgres.py [--dsn DSN] [--n 20000] [--reps 3]
                                            [--only drain,enqueue] [--out FILE | --no-save]

Scenarios (each measurement a fresh process on a fresh database, created and
dropped on the server of ``--dsn``/TASK_QUEUE_TEST_PG_DSN; the systems'
repetitions interleave, so a noisy neighbour hits all alike; medians shown):

* ``drain``: ``--n`` no-op tasks enqueued beforehand (not timed), then timed
  from the worker's start until every task is recorded done. Ours: one
  ``Worker(concurrency=4)`` in the process. pgqueuer: ``QueueManager.run``
  with its defaults (batch_size 10, asyncpg driver), ``mode=drain``, an async
  no-op entrypoint. procrastinate: ``run_worker_async(concurrency=4,
  wait=False)`` with a sync no-op task (so it runs in threads, as ours).
* ``enqueue``: ``--n`` tasks in batches of 1,000 from one caller: ours
  ``enqueue_many``, pgqueuer ``Queries.enqueue`` with lists, procrastinate
  ``batch_defer_async``.

The CI-style throwaway server has fsync, synchronous_commit and
full_page_writes off (``.ci/lib/postgres.sh``): the figures compare the
libraries' own costs, not the disk's. The JSON goes to
``benchmarks/results/postgres-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ["ours", "pgqueuer", "procrastinate"]
SCENARIOS = ["drain", "enqueue"]
BATCH = 1000


# -- one measurement (runs in its own process) --------------------------------------


def _database_dsn(dsn: str, database: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def ours(scenario: str, dsn: str, n: int) -> dict[str, Any]:
    from task_queue import TaskQueue, Worker

    queue = TaskQueue(dsn)
    specs = [{"name": "noop", "task_type": "noop"} for _ in range(n)]
    try:
        if scenario == "enqueue":
            t0 = time.perf_counter()
            for i in range(0, n, BATCH):
                queue.enqueue_many(specs[i : i + BATCH])
            return {"seconds": time.perf_counter() - t0}
        for i in range(0, n, BATCH):
            queue.enqueue_many(specs[i : i + BATCH])
        t0 = time.perf_counter()
        with Worker(queue, {"noop": lambda payload: None}, concurrency=4):
            while queue.get_queue_stats()["completed"] < n:
                time.sleep(0.05)
        seconds = time.perf_counter() - t0
        assert queue.get_queue_stats()["completed"] == n
        return {"seconds": seconds}
    finally:
        queue.close()


def pgqueuer(scenario: str, dsn: str, n: int) -> dict[str, Any]:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    async def run() -> dict[str, Any]:
        conn = await asyncpg.connect(dsn)
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()

        async def enqueue_all() -> None:
            for i in range(0, n, BATCH):
                k = min(BATCH, n - i)
                await queries.enqueue(["noop"] * k, [None] * k, [0] * k)

        if scenario == "enqueue":
            t0 = time.perf_counter()
            await enqueue_all()
            seconds = time.perf_counter() - t0
            await conn.close()
            return {"seconds": seconds}
        await enqueue_all()
        # The worker on its own connection, as pgqueuer deploys it.
        worker_conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
        done = 0

        @qm.entrypoint("noop")
        async def noop(job: Any) -> None:
            nonlocal done
            done += 1

        t0 = time.perf_counter()
        await qm.run(mode=QueueExecutionMode.drain)
        seconds = time.perf_counter() - t0
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        await worker_conn.close()
        await conn.close()
        assert done == n and left == 0, (done, left)
        return {"seconds": seconds}

    return asyncio.run(run())


def procrastinate(scenario: str, dsn: str, n: int) -> dict[str, Any]:
    import logging

    import procrastinate as pc

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    app = pc.App(connector=pc.PsycopgConnector(conninfo=dsn))
    done = 0

    @app.task(name="noop")
    def noop() -> None:
        nonlocal done
        done += 1

    async def run() -> dict[str, Any]:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

            async def enqueue_all() -> None:
                for i in range(0, n, BATCH):
                    await noop.batch_defer_async(*({} for _ in range(min(BATCH, n - i))))

            if scenario == "enqueue":
                t0 = time.perf_counter()
                await enqueue_all()
                return {"seconds": time.perf_counter() - t0}
            await enqueue_all()
            t0 = time.perf_counter()
            await app.run_worker_async(concurrency=4, wait=False, install_signal_handlers=False)
            seconds = time.perf_counter() - t0
            assert done == n, done
            return {"seconds": seconds}

    return asyncio.run(run())


RUNNERS = {"ours": ours, "pgqueuer": pgqueuer, "procrastinate": procrastinate}


def one(system: str, scenario: str, admin_dsn: str, n: int) -> dict[str, Any]:
    """A fresh database for one measurement, dropped after it."""
    import psycopg

    database = f"bench_{system}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        result = RUNNERS[system](scenario, _database_dsn(admin_dsn, database), n)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    result["rate"] = n / result["seconds"]
    return result


# -- the run ------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("psycopg", "psycopg-pool", "pgqueuer", "asyncpg", "procrastinate"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def _server(dsn: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes")
        }
    return settings


def _commit() -> tuple[str, bool]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE).stdout

    return git("rev-parse", "--short", "HEAD").strip(), bool(
        git("status", "--porcelain", "--", "../task_queue").strip()
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["_one"]:
        _, system, scenario, dsn, n = argv
        print(json.dumps(one(system, scenario, dsn, int(n))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("TASK_QUEUE_TEST_PG_DSN"))
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error(
            "no server: pass --dsn or set TASK_QUEUE_TEST_PG_DSN (source .ci/lib/cleanup.sh; "
            "source .ci/lib/postgres.sh; pg_start)"
        )
    scenarios = args.only.split(",")
    systems = args.systems.split(",")
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for scenario in scenarios:
            for system in systems:
                cmd = [sys.executable, __file__, "_one", system, scenario, args.dsn, str(args.n)]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                if proc.returncode != 0:
                    print(f"!! {system} {scenario}: {proc.stderr[-2000:]}", file=sys.stderr)
                    runs.append({"system": system, "scenario": scenario, "rep": rep,
                                 "error": proc.stderr[-2000:]})  # fmt: skip
                    continue
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                runs.append({"system": system, "scenario": scenario, "rep": rep, **result})
                print(f"{scenario:8} {system:14} {result['rate']:10,.0f}/s", file=sys.stderr)
    table: dict[str, dict[str, float]] = {}
    for scenario in scenarios:
        for system in systems:
            rates = [
                r["rate"]
                for r in runs
                if r["scenario"] == scenario and r["system"] == system and "rate" in r
            ]
            if rates:
                table.setdefault(scenario, {})[system] = statistics.median(rates)
    print(f"\n| scenario ({args.n:,} tasks, {args.reps} reps, medians) | " + " | ".join(systems)
          + " | ours / pgqueuer |")  # fmt: skip
    print("|---|" + "---|" * (len(systems) + 1))
    for scenario, rates in table.items():
        cells = [f"{rates[s]:,.0f}/s" if s in rates else "-" for s in systems]
        ratio = (
            f"{rates['ours'] / rates['pgqueuer']:.1f}x"
            if "ours" in rates and "pgqueuer" in rates
            else "-"
        )
        print(f"| {scenario} | " + " | ".join(cells) + f" | {ratio} |")
    commit, dirty = _commit()
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "n": args.n,
        "reps": args.reps,
        "table": table,
        "runs": runs,
        "server": _server(args.dsn),
        "versions": _versions(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "commit": commit,
        "task_queue_dirty": dirty,
    }
    if not args.no_save:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = args.out or os.path.join(HERE, "results", f"postgres-{stamp}.json")
        with open(out, "w") as handle:
            json.dump(report, handle, indent=1)
        print(f"\nsaved {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
