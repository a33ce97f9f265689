"""One benchmark measurement per process.

Run by ``benchmarks/run.py`` as::

    python benchmarks/scenarios.py SCENARIO SYSTEM SYNC WORKDIR PARAMS_JSON

and prints one JSON object (the measurement) as its last stdout line.
SYSTEM is ``ours`` (task_queue), ``huey`` (huey's SqliteHuey) or ``sqlite``
(plain sqlite3 running the same statements: the floor). SYNC is ``FULL`` or
``NORMAL`` (PRAGMA synchronous, with WAL for all three).
"""

from __future__ import annotations

import gc
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
NOOP = "noop"


# -- helpers -------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.002) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spec(i: int) -> dict[str, Any]:
    return {"name": f"task {i}", "task_type": NOOP, "payload": {"i": i}}


def open_ours(path: str, sync: str) -> Any:
    from task_queue import TaskQueue

    return TaskQueue(path, synchronous=sync)


def completed_counter(path: str) -> Callable[[], int]:
    """How many tasks are committed as completed, read on a separate connection."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def completed() -> int:
        row = conn.execute("SELECT sum(n) FROM task_counts WHERE status = 'completed'").fetchone()
        return int(row[0] or 0)

    return completed


def preload_ours(path: str, sync: str, n: int) -> None:
    q = open_ours(path, sync)
    try:
        for start in range(0, n, 1000):
            q.enqueue_many(spec(i) for i in range(start, min(n, start + 1000)))
    finally:
        q.close()


def make_huey(path: str, sync: str, **kwargs: Any) -> Any:
    """SqliteHuey with PRAGMA synchronous set exactly like ours.

    SqliteHuey's own ``fsync`` option only chooses between FULL (True) and
    OFF (False); NORMAL needs the storage's connection factory extended.
    journal_mode is WAL by default, as ours.
    """
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    level = {"FULL": 2, "NORMAL": 1}[sync]

    class Storage(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> sqlite3.Connection:
            conn = super()._create_connection()
            conn.execute(f"PRAGMA synchronous = {level}")
            return conn

    return SqliteHuey("bench", filename=path, storage_class=Storage, **kwargs)


def huey_pragmas(huey: Any) -> dict[str, Any]:
    conn = huey.storage.conn
    return {
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
    }


def ours_pragmas(q: Any) -> dict[str, Any]:
    """The pragmas of the queue's own connection (synchronous is per connection)."""

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        return {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
        }

    return dict(q.storage._engine.call(read, readonly=True, savepoint=False))


def huey_consumer(huey: Any, workers: int = 4) -> Any:
    from huey.consumer import Consumer

    return Consumer(
        huey, workers=workers, worker_type="thread", periodic=False, check_worker_health=False
    )


def preload_huey(huey: Any, task: Any, n: int) -> None:
    """Insert n serialized huey messages in one transaction (setup only, not timed)."""
    rows = [(huey.name, huey.serialize_task(task.s(i)), 0) for i in range(n)]
    conn = sqlite3.connect(huey.storage.filename, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()


def floor_connection(path: str, sync: str) -> sqlite3.Connection:
    """A plain connection on our schema, with our pragmas."""
    q = open_ours(path, sync)  # creates the schema
    q.close()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def insert_params(i: int, now: float) -> dict[str, Any]:
    # A superset of insert_task's named parameters.
    return {
        "name": f"task {i}", "task_type": NOOP, "payload": json.dumps({"i": i}), "priority": 2,
        "now": now, "scheduled_at": None, "max_retries": 3, "run_at": now, "timeout": None,
        "unique_key": None, "queue_name": "default", "meta": None, "status": "pending",
        "waiting_on": 0, "depends_on": None, "completed_at": None, "error_message": None,
        "concurrency_key": None,
    }  # fmt: skip


def queries() -> dict[str, str]:
    from task_queue.storage.sqlite.sql import QUERIES

    return QUERIES


# -- B1 / B2: enqueue one call per task -----------------------------------------


def run_enqueue(system: str, sync: str, path: str, seconds: float, threads: int) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if system == "ours":
        q = open_ours(path, sync)
        extra["pragmas"] = ours_pragmas(q)

        def make_one() -> Callable[[int], Any]:
            return lambda i: q.enqueue(name=f"task {i}", task_type=NOOP, payload={"i": i})

        close = q.close
    elif system == "huey":
        huey = make_huey(path, sync)
        extra["pragmas"] = huey_pragmas(huey)
        task = huey.task()(lambda i: None)

        def make_one() -> Callable[[int], Any]:
            return lambda i: task(i)

        def close() -> None:
            huey.storage.close()

    elif system == "sqlite":
        if threads != 1:
            raise ValueError("the floor is single-threaded")
        conn = floor_connection(path, sync)
        sql = queries()["insert_task"]

        def make_one() -> Callable[[int], Any]:
            def one(i: int) -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(sql, insert_params(i, time.time())).fetchall()
                conn.execute("COMMIT")

            return one

        close = conn.close
    else:
        raise ValueError(system)

    counts = [0] * threads
    start_gate = threading.Barrier(threads + 1)
    deadline = [0.0]

    errors: list[BaseException] = []

    def loop(k: int) -> None:
        one = make_one()
        start_gate.wait()
        n = 0
        base = k * 10_000_000
        try:
            while time.perf_counter() < deadline[0]:
                one(base + n)
                n += 1
        except BaseException as exc:
            errors.append(exc)
        counts[k] = n

    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    gc.collect()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start_gate.wait()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    close()
    if errors:
        raise errors[0]
    total = sum(counts)
    return {
        "rate": total / elapsed, "tasks": total, "seconds": elapsed,
        "cpu_us_per_task": cpu / max(1, total) * 1e6, **extra,
    }  # fmt: skip


# -- B3: enqueue_many in batches of 1,000 -------------------------------------------


def run_enqueue_many(system: str, sync: str, path: str, seconds: float) -> dict[str, Any]:
    batch = 1000
    if system == "ours":
        q = open_ours(path, sync)

        def one(base: int) -> None:
            q.enqueue_many([spec(base + i) for i in range(batch)])

        close = q.close
    elif system == "sqlite":
        conn = floor_connection(path, sync)
        sql = queries()["insert_task"]

        def one(base: int) -> None:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            for i in range(batch):
                conn.execute(sql, insert_params(base + i, now)).fetchall()
            conn.execute("COMMIT")

        close = conn.close
    else:
        raise ValueError(f"B3 has no {system} variant (huey has no batch enqueue)")
    gc.collect()
    n = 0
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 5 * batch:
        one(n)
        n += batch
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    close()
    return {"rate": n / elapsed, "tasks": n, "seconds": elapsed, "cpu_us_per_task": cpu / n * 1e6}


# -- B4: drain pre-enqueued no-op tasks with 4 threads ----------------------------


def run_drain(
    system: str, sync: str, path: str, n: int, preload: bool = True, floor_batch: int = 516
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if system == "ours":
        from task_queue import Worker

        if preload:
            preload_ours(path, sync, n)
        q = open_ours(path, sync)
        completed = completed_counter(path)
        worker = Worker(q, {NOOP: lambda payload: None}, concurrency=4)
        gc.collect()
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        worker.start()
        wait_for(lambda: completed() >= n, timeout=600, interval=0.005)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        worker.stop()
        q.close()
    elif system == "huey":
        # Results enabled (huey's default); a no-op returning None stores no
        # result (store_none=False), so huey writes one row per task less
        # than we do (we always record completion): this favours huey.
        huey = make_huey(path, sync)
        extra["pragmas"] = huey_pragmas(huey)
        done = [0]
        lock = threading.Lock()

        def noop(i: int) -> None:
            with lock:
                done[0] += 1

        task = huey.task()(noop)
        preload_huey(huey, task, n)
        consumer = huey_consumer(huey)
        gc.collect()
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        consumer.start()
        wait_for(lambda: done[0] >= n, timeout=600, interval=0.005)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        consumer.stop(graceful=True)
        huey.storage.close()
    elif system == "sqlite":
        # The floor: our own statements with the Worker's batching and no
        # library around them, in one thread. Each transaction records the
        # previous batch's completions (complete_many) and claims the next
        # ``floor_batch`` tasks, as the Worker's dispatcher does with the
        # completions it borrows from the recorder: 516 = 4 executors + 4 x
        # 128 prefetched, what the Worker holds of sub-millisecond tasks.
        preload_ours(path, sync, n)
        conn = floor_connection(path, sync)
        Q = queries()
        claim_sql, complete_sql = Q["claim"], Q["complete_many"]
        types = json.dumps([NOOP])
        done_n = 0
        held: list[Any] = []
        token = 0
        gc.collect()
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        while done_n < n:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            if held:
                items = json.dumps([[row[0], token, None] for row in held])
                conn.execute(complete_sql, {"items": items, "now": now}).fetchall()
                done_n += len(held)
            token = random.getrandbits(63)
            params = {
                "worker_id": "floor", "now": now, "lease_expires_at": now + 30,
                "limit": floor_batch, "token": token, "types": types,
                "queues": None, "owner_pid": os.getpid(), "owner_host": "floor",
            }  # fmt: skip
            held = conn.execute(claim_sql, params).fetchall() if done_n < n else []
            conn.execute("COMMIT")
            if not held and done_n < n:
                raise RuntimeError("floor claimed nothing")
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        conn.close()
        extra["floor_batch"] = floor_batch
    else:
        raise ValueError(system)
    return {
        "rate": n / elapsed, "tasks": n, "seconds": elapsed, "cpu_us_per_task": cpu / n * 1e6,
        **extra,
    }  # fmt: skip


# -- B5: enqueue-to-handler-start latency ---------------------------------------


def _gap() -> float:
    return random.uniform(0.06, 0.12)


def run_latency(system: str, sync: str, path: str, samples: int, remote: bool) -> dict[str, Any]:
    """Latency from the enqueue call to the handler's first line.

    Same process: perf_counter stamps; the next task is enqueued after the
    previous one started and a random 60-120 ms idle gap. Other process: a
    producer process enqueues with wall-clock stamps at the same gaps.
    """
    lat: list[float] = []
    started = threading.Event()
    clock = time.time if remote else time.perf_counter

    def record(t0: float) -> None:
        lat.append(clock() - t0)
        started.set()

    if system == "ours":
        from task_queue import Worker

        q = open_ours(path, sync)
        worker = Worker(q, {NOOP: lambda payload: record(payload["t0"])}, concurrency=4)
        worker.start()

        def enqueue() -> None:
            q.enqueue(name="lat", task_type=NOOP, payload={"t0": clock()})

        def stop() -> None:
            worker.stop()
            q.close()

    elif system == "huey":
        huey = make_huey(path, sync)
        task = huey.task(name="lat")(record)
        consumer = huey_consumer(huey)
        consumer.start()

        def enqueue() -> None:
            task(clock())

        def stop() -> None:
            consumer.stop(graceful=True)
            huey.storage.close()

    else:
        raise ValueError(system)
    time.sleep(0.3)  # let the consumer settle into its idle state
    try:
        if remote:
            proc = subprocess.Popen(
                [sys.executable, __file__, "_producer", system, sync, path, str(samples)]
            )
            wait_for(lambda: len(lat) >= samples, timeout=60 + samples * 2.5, interval=0.01)
            proc.wait(timeout=30)
        else:
            for _ in range(samples):
                started.clear()
                enqueue()
                if not started.wait(30):
                    raise TimeoutError("handler did not start")
                time.sleep(_gap())
    finally:
        stop()
    return {
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": max(lat) * 1000,
        "samples": len(lat),
    }


def producer(system: str, sync: str, path: str, samples: int) -> None:
    """The other process of B5: enqueue with wall-clock stamps."""
    if system == "ours":
        q = open_ours(path, sync)
        for _ in range(samples):
            time.sleep(_gap())
            q.enqueue(name="lat", task_type=NOOP, payload={"t0": time.time()})
        q.close()
    else:
        huey = make_huey(path, sync)
        task = huey.task(name="lat")(lambda t0: None)
        for _ in range(samples):
            time.sleep(_gap())
            task(time.time())
        huey.storage.close()


# -- B6: claim cost at 1,000,000 pending vs 1,000; stats time ----------------------


#: B6 spreads its pending tasks over this many named queues; the claims
#: serve two of them (a Worker with its own pool).
B6_QUEUES = [f"q{i}" for i in range(10)]
B6_SERVED = ["q3", "q7"]


def build_pending(path: str, sync: str, n: int) -> dict[str, Any]:
    """Create our schema and n due pending tasks over B6_QUEUES, fast.

    Plain sqlite3: the tasks table's indexes and triggers are dropped, the
    rows inserted, the indexes recreated from their own DDL and the
    per-queue counts fixed up, so the file ends up exactly as if every row
    had been enqueued.
    """
    q = open_ours(path, sync)
    q.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    t0 = time.perf_counter()
    ddl = conn.execute(
        "SELECT type, name, sql FROM sqlite_master"
        " WHERE tbl_name = 'tasks' AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    ).fetchall()
    now = time.time() - 60
    conn.execute("BEGIN IMMEDIATE")
    for kind, name, _ in ddl:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    chunk = 100_000
    for start in range(0, n, chunk):
        rows = [
            (f"task {i}", NOOP, f'{{"i": {i}}}', 2, "pending", now, 3, now + i * 1e-6,
             B6_QUEUES[i % len(B6_QUEUES)])
            for i in range(start, min(n, start + chunk))
        ]  # fmt: skip
        conn.executemany(
            "INSERT INTO tasks (name, task_type, payload, priority, status, created_at,"
            " max_retries, run_at, queue_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    for _, _, sql in ddl:
        conn.execute(sql)
    conn.execute("DELETE FROM task_counts")
    conn.execute(
        "INSERT INTO task_counts (queue_name, status, n)"
        " SELECT queue_name, status, count(*) FROM tasks GROUP BY queue_name, status"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"build_seconds": time.perf_counter() - t0, "rows": n, "queues": len(B6_QUEUES)}


def run_claim_cost(sync: str, path: str, claims: int) -> dict[str, Any]:
    q = open_ours(path, sync)
    try:
        t0 = time.perf_counter()
        stats = q.get_queue_stats()
        first_stats = time.perf_counter() - t0
        pending = stats["pending"]
        one: list[float] = []
        batch: list[float] = []
        for _ in range(claims):
            t0 = time.perf_counter()
            got = q.dequeue(queues=B6_SERVED)
            one.append(time.perf_counter() - t0)
            assert got is not None
            t0 = time.perf_counter()
            got_many = q.claim(8, task_types=[NOOP], queues=B6_SERVED)
            batch.append(time.perf_counter() - t0)
            assert len(got_many) == 8
            # Untimed: give them back so the pending count stays put.
            for task in [got, *got_many]:
                q.release_task(task)
        stat_times = []
        for _ in range(20):
            t0 = time.perf_counter()
            q.get_queue_stats()
            stat_times.append(time.perf_counter() - t0)
    finally:
        q.close()
    return {
        "pending": pending,
        "queues": len(B6_QUEUES),
        "served": len(B6_SERVED),
        "dequeue_ms": statistics.median(one) * 1000,
        "claim8_ms": statistics.median(batch) * 1000,
        "stats_first_ms": first_stats * 1000,
        "stats_ms": statistics.median(stat_times) * 1000,
    }


# -- B7: memory while processing many tasks -------------------------------------


def run_memory(sync: str, path: str, n: int, warmup: int) -> dict[str, Any]:
    from task_queue import Worker

    preload_ours(path, sync, n)
    gc.collect()
    q = open_ours(path, sync)
    completed = completed_counter(path)
    worker = Worker(q, {NOOP: lambda payload: None}, concurrency=4)
    rss_start = rss_bytes()
    worker.start()
    wait_for(lambda: completed() >= warmup, timeout=600, interval=0.005)
    rss_warm = rss_bytes()
    peak = rss_warm
    t0 = time.perf_counter()
    while completed() < n:
        peak = max(peak, rss_bytes())
        time.sleep(0.05)
        if time.perf_counter() - t0 > 900:
            raise TimeoutError("B7 did not finish")
    rss_end = rss_bytes()
    worker.stop()
    q.close()
    return {
        "growth_mb": (rss_end - rss_warm) / 2**20,
        "peak_growth_mb": (max(peak, rss_end) - rss_warm) / 2**20,
        "rss_start_mb": rss_start / 2**20,
        "rss_after_warmup_mb": rss_warm / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "tasks": n,
        "warmup": warmup,
    }


# -- entry point --------------------------------------------------------------------


def measure(scenario: str, system: str, sync: str, workdir: str, p: dict[str, Any]) -> Any:
    path = os.path.join(workdir, p.get("db", "bench.db"))
    if scenario == "B1":
        return run_enqueue(system, sync, path, p["seconds"], 1)
    if scenario == "B2":
        return run_enqueue(system, sync, path, p["seconds"], 8)
    if scenario == "B3":
        return run_enqueue_many(system, sync, path, p["seconds"])
    if scenario == "B4":
        return run_drain(system, sync, path, p["n"])
    if scenario == "B5":
        return run_latency(system, sync, path, p["samples"], remote=False)
    if scenario == "B5x":
        return run_latency(system, sync, path, p["samples"], remote=True)
    if scenario == "B6build":
        return build_pending(path, sync, p["n"])
    if scenario == "B6":
        return run_claim_cost(sync, path, p["claims"])
    if scenario == "B7":
        return run_memory(sync, path, p["n"], p["warmup"])
    raise ValueError(f"unknown scenario {scenario}")


def main(argv: list[str]) -> None:
    if argv[0] == "_producer":
        producer(argv[1], argv[2], argv[3], int(argv[4]))
        return
    scenario, system, sync, workdir, params = argv
    result = measure(scenario, system, sync, workdir, json.loads(params))
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
