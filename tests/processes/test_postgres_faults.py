"""PostgreSQL faults under real worker processes (the PostgreSQL backend only).

* a worker process SIGKILLed mid-task: its tasks are rescued (by lease
  expiry: the rescuers here see its pid gone, as on SQLite) and every task
  completes, with the last execution's result;
* the server restarted under running workers (``pg_ctl restart``): they
  reconnect and carry on; nothing acknowledged is lost, nothing stays
  running;
* the listener connection killed (``pg_terminate_backend``): polling covers
  the gap, the listener reconnects, and wake-ups are instant again;
* a long transaction holding back the xmin horizon: the queue stays
  correct (only slower: dead rows pile up behind the old snapshot, ~85%
  of the claim throughput lost in a probe), and the storage's own sessions
  carry the guard (``idle_in_transaction_session_timeout``). README,
  "Running on PostgreSQL", says which settings guard the rest.

Each test runs on a fresh schema of the server in TASK_QUEUE_TEST_PG_DSN
and skips, saying why, without one.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Procs, read_exec_logs, wait_until
from support.postgres import fresh_schema, pg_dsn

from task_queue import TaskQueue
from task_queue.storage.postgres import PostgresStorage

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URI of a fresh schema (TaskQueue(url) in any process)."""
    import psycopg

    dsn = pg_dsn()
    schema, drop = fresh_schema(dsn, "faults")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    options = urllib.parse.quote(f"-csearch_path={schema}")
    yield f"{dsn}{'&' if '?' in dsn else '?'}options={options}"
    drop()


def _sql(sql: str, *params: object) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def _work(n: int, sleep: float = 0.005) -> list[dict[str, object]]:
    return [
        {"name": f"t{i}", "task_type": "work", "payload": {"sleep": sleep}, "max_retries": 50}
        for i in range(n)
    ]


def _all_finished(queue: TaskQueue, total: int) -> bool:
    stats = queue.get_queue_stats()
    return stats["completed"] == total and stats["running"] == 0 and stats["pending"] == 0


def test_a_worker_sigkilled_mid_task_loses_nothing(
    procs: Procs, exec_dir: Path, pg_url: str
) -> None:
    queue = TaskQueue(pg_url)
    try:
        ids = queue.enqueue_many(_work(400, sleep=0.02))
        workers = [
            procs.start("worker", db=pg_url, log_dir=str(exec_dir), concurrency=4, lease=2.0)
            for _ in range(2)
        ]
        victim = workers[0]
        in_flight = wait_until(
            lambda: read_exec_logs(exec_dir, [victim.pid]).open_in(victim.pid),
            timeout=60,
            interval=0.01,
        )
        procs.kill(victim)
        procs.start("worker", db=pg_url, log_dir=str(exec_dir), concurrency=4, lease=2.0)
        wait_until(lambda: _all_finished(queue, len(ids)), timeout=120, interval=0.1)
        # The tasks the victim had in flight ran again, elsewhere; each
        # result is that of its last execution (never the dead one's).
        for task in queue.get_tasks([e.task_id for e in in_flight]):
            assert task.status == "completed"
            assert task.result["pid"] != victim.pid
            assert task.attempts >= 2
    finally:
        queue.close()


def _restart_command() -> list[str]:
    pg_ctl = os.environ.get("TASK_QUEUE_TEST_PG_CTL")
    data = os.environ.get("TASK_QUEUE_TEST_PG_DATA")
    if not pg_ctl or not data:
        pytest.skip(
            "restarting the server needs TASK_QUEUE_TEST_PG_CTL and TASK_QUEUE_TEST_PG_DATA "
            "(.ci/lib/postgres.sh exports them for the throwaway server it starts)"
        )
    command = [pg_ctl, "-D", data, "-m", "fast", "-w", "-t", "60", "restart"]
    log = os.environ.get("TASK_QUEUE_TEST_PG_LOG")
    if log:
        command[1:1] = ["-l", log]
    if os.geteuid() == 0:
        # initdb and postgres refuse to run as root.
        command = ["runuser", "-u", "postgres", "--", *command]
    return command


def test_a_server_restart_under_running_workers_loses_nothing(
    procs: Procs, exec_dir: Path, pg_url: str
) -> None:
    restart = _restart_command()
    queue = TaskQueue(pg_url)
    try:
        ids = queue.enqueue_many(_work(1500, sleep=0.003))
        for _ in range(2):
            procs.start("worker", db=pg_url, log_dir=str(exec_dir), concurrency=4, lease=5.0)
        wait_until(lambda: queue.get_queue_stats()["completed"] >= 200, timeout=60)
        done = subprocess.run(restart, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        # Enqueued after the restart, through connections the restart broke.
        late = wait_until(lambda: _enqueue_retrying(queue, 100), timeout=60)
        total = len(ids) + len(late)
        wait_until(lambda: _all_finished(queue, total), timeout=180, interval=0.2)
        assert all(p.poll() is None for p in procs.started), procs.dump()
        # Nothing was run twice without a cause: a task ran again only if a
        # connection loss made its completion fail (then it was renewed or
        # rescued and completed once more). None is left running.
        assert queue.get_queue_stats()["failed"] == 0
    finally:
        queue.close()


def _enqueue_retrying(queue: TaskQueue, n: int) -> list[int] | None:
    from task_queue import StorageError

    try:
        return queue.enqueue_many(_work(n))
    except StorageError:
        return None  # a connection the restart broke: the caller retries


def _listeners() -> list[int]:
    rows = _sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'task_queue-listener'"
        " AND datname = current_database()"
    )
    return [int(pid) for (pid,) in rows]


def test_a_killed_listener_connection_is_covered_by_polling_then_reconnects(
    procs: Procs, exec_dir: Path, pg_url: str
) -> None:
    queue = TaskQueue(pg_url)
    try:
        before = set(_listeners())
        procs.start("worker", db=pg_url, log_dir=str(exec_dir), concurrency=2, lease=5.0)
        theirs = wait_until(lambda: set(_listeners()) - before, timeout=30)
        first = queue.enqueue("warm-up", "work")
        wait_until(lambda: queue.get_task(first).status == "completed", timeout=30)

        for pid in theirs:
            assert _sql("SELECT pg_terminate_backend(%s)", pid) == [(True,)]
        # While it is gone, polling covers: the task still starts soon.
        during = queue.enqueue("during", "work")
        wait_until(lambda: queue.get_task(during).status == "completed", timeout=10)

        # It reconnects (a new listener backend), and wake-ups are instant again.
        wait_until(lambda: (set(_listeners()) - before) - theirs, timeout=30)
        latencies = []
        for n in range(5):
            time.sleep(0.3)  # idle, so only a wake-up (or the 1 s sweep) starts it
            t0 = time.time()
            task_id = queue.enqueue(f"after-{n}", "work")
            task = wait_until(
                lambda i=task_id: (t := queue.get_task(i)).status == "completed" and t,
                timeout=10,
                interval=0.005,
            )
            latencies.append(task.started_at - t0)
        assert sorted(latencies)[2] < 0.25, latencies
    finally:
        queue.close()


def test_a_long_transaction_holding_back_xmin_slows_but_never_breaks_the_queue(
    procs: Procs, exec_dir: Path, pg_url: str
) -> None:
    import psycopg

    queue = TaskQueue(pg_url)
    storage = queue.storage
    assert isinstance(storage, PostgresStorage)
    # The guard on the storage's own sessions: a session of ours left idle
    # inside a transaction is ended by the server.
    [(guard,)] = storage._read(lambda tx: tx.rows("session_guard"))
    assert guard == "1min"
    holder = psycopg.connect(pg_dsn())
    try:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pg_class").fetchall()  # takes the snapshot
        ids = queue.enqueue_many(_work(1500, sleep=0.0))
        procs.start("worker", db=pg_url, log_dir=str(exec_dir), concurrency=4, lease=5.0)
        wait_until(lambda: _all_finished(queue, len(ids)), timeout=180, interval=0.2)
        [(backend_xmin_age,)] = _sql(
            "SELECT max(age(backend_xmin)) FROM pg_stat_activity WHERE backend_xmin IS NOT NULL"
        )
        assert backend_xmin_age is not None  # the old snapshot was held throughout
    finally:
        holder.close()
    queue.close()
