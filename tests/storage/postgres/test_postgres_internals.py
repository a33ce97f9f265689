"""The PostgreSQL backend's own internals (the contract suite covers its
behaviour): migrations (once, under several processes; foreign and newer
schemas refused), the plans the hot statements need, HOT lease renewals, the
debounced NOTIFY, and the server clock.

Skipped, saying why, without TASK_QUEUE_TEST_PG_DSN.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.contract import T0, claim, enqueue
from support.postgres import fresh_schema, pg_dsn

from task_queue import NotAQueueDatabaseError, TaskQueue
from task_queue.clock import ManualClock
from task_queue.storage.base import Completion
from task_queue.storage.postgres import PostgresStorage
from task_queue.storage.postgres.clock import ServerClock
from task_queue.storage.postgres.notify import Notifier
from task_queue.storage.postgres.schema import MIGRATIONS, SCHEMA_VERSION


@pytest.fixture
def schema() -> Iterator[str]:
    name, drop = fresh_schema(pg_dsn(), "internals")
    yield name
    drop()


def sql(query: str, *params: object, schema: str | None = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        if schema is not None:
            conn.execute(f'SET search_path = "{schema}"')
        cur = conn.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


# -- migrations ----------------------------------------------------------------------


def test_a_new_schema_is_migrated_and_each_migration_recorded_once(schema: str) -> None:
    PostgresStorage(pg_dsn(), schema=schema).close()
    PostgresStorage(pg_dsn(), schema=schema).close()
    rows = sql("SELECT version, count(*) FROM task_queue_migrations GROUP BY 1", schema=schema)
    assert rows == [(v, 1) for v in sorted(MIGRATIONS)]


def test_processes_opening_a_new_schema_at_once_migrate_it_once(schema: str) -> None:
    script = textwrap.dedent(
        f"""
        from task_queue.storage.postgres import PostgresStorage
        PostgresStorage({pg_dsn()!r}, schema={schema!r}).close()
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    rows = sql("SELECT version FROM task_queue_migrations", schema=schema)
    assert sorted(v for (v,) in rows) == sorted(MIGRATIONS)


def test_a_schema_with_a_foreign_tasks_table_is_refused_and_left_alone(schema: str) -> None:
    sql(f'CREATE SCHEMA "{schema}"')
    sql("CREATE TABLE tasks (id int, what text)", schema=schema)
    with pytest.raises(NotAQueueDatabaseError):
        PostgresStorage(pg_dsn(), schema=schema)
    tables = sql("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema)
    assert tables == [("tasks",)]


def test_a_newer_schema_version_is_refused(schema: str) -> None:
    PostgresStorage(pg_dsn(), schema=schema).close()
    sql("INSERT INTO task_queue_migrations VALUES (%s, 0, 0)", SCHEMA_VERSION + 1, schema=schema)
    with pytest.raises(NotAQueueDatabaseError, match="newer"):
        PostgresStorage(pg_dsn(), schema=schema)


def test_a_postgresql_uri_opens_a_postgres_queue_and_refuses_sqlite_options(
    schema: str,
) -> None:
    import urllib.parse

    sql(f'CREATE SCHEMA "{schema}"')
    dsn = pg_dsn()
    url = f"{dsn}{'&' if '?' in dsn else '?'}options=" + urllib.parse.quote(
        f"-csearch_path={schema}"
    )
    with TaskQueue(url) as queue:
        assert isinstance(queue.storage, PostgresStorage)
        assert isinstance(queue.clock, ServerClock)
        task_id = queue.enqueue("a", "t")
        assert queue.get_task(task_id).status == "pending"
    with pytest.raises(ValueError, match="SQLite"):
        TaskQueue(url, busy_timeout=1.0)
    # An injected clock wins over the server's (tests drive time by hand).
    clock = ManualClock()
    with TaskQueue(url, clock=clock) as queue:
        assert queue.clock is clock


# -- plans and HOT --------------------------------------------------------------------


def test_lease_renewals_are_hot_updates(schema: str) -> None:
    storage = PostgresStorage(pg_dsn(), schema=schema)
    try:
        for n in range(50):
            enqueue(storage, name=f"t{n}")
        tasks = claim(storage, T0, limit=50)
        before = sql(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'tasks'"
            " AND schemaname = %s",
            schema,
        )
        for k in range(10):
            assert len(storage.renew([t.claim for t in tasks], T0 + k, 30.0)) == 50
        # The statistics collector reports with a delay.
        deadline = time.monotonic() + 10
        while True:
            after = sql(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE relname = 'tasks' AND schemaname = %s",
                schema,
            )
            updates = after[0][0] - before[0][0]
            if updates >= 500 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        hot = after[0][1] - before[0][1]
        assert updates >= 500
        assert hot / updates > 0.8, (hot, updates)
    finally:
        storage.close()


def test_the_claim_walks_its_index_even_without_statistics(schema: str) -> None:
    storage = PostgresStorage(pg_dsn(), schema=schema)
    try:
        storage.enqueue([_task(n) for n in range(5000)], T0)  # never analyzed since
        plan = storage._read(_explain_claim)
        assert "idx_tasks_claim" in plan
        assert "Sort" not in plan.split("CTE picked")[1].split("->  Nested Loop")[0]
    finally:
        storage.close()


def _task(n: int) -> Any:
    from support.contract import new_task

    return new_task(name=f"t{n}")


def _explain_claim(tx: Any) -> str:
    from task_queue.storage.postgres.units import Q

    params = {
        "worker_id": "w", "now": T0, "lease_expires_at": T0 + 30, "token": 1, "limit": 50,
        "types": ["job"], "queues": None, "owner_host": "h", "owner_pid": 1,
    }  # fmt: skip
    tx.cur.execute("BEGIN")
    try:
        tx.cur.execute(Q["claim_plan"])
        tx.cur.execute("EXPLAIN " + Q["claim"], params)
        return "\n".join(row[0] for row in tx.cur.fetchall())
    finally:
        tx.cur.execute("ROLLBACK")


# -- the debounced NOTIFY ---------------------------------------------------------------


def test_notify_is_debounced_first_at_once_then_one_trailing() -> None:
    sent: list[float] = []
    done = threading.Event()

    def send() -> None:
        sent.append(time.monotonic())
        done.set()

    notifier = Notifier(send, interval=0.05)
    try:
        assert notifier.now_or_later() is True  # the first: the caller sends it
        for _ in range(100):
            assert notifier.now_or_later() is False  # folded into one trailing
        assert done.wait(2.0)
        time.sleep(0.15)
        assert len(sent) == 1
        time.sleep(0.06)
        assert notifier.now_or_later() is True  # quiet again: at once
    finally:
        notifier.close()


def test_closing_sends_the_trailing_notify_still_owed() -> None:
    # A process that completed its last tasks and closed within the debounce
    # interval dropped that NOTIFY: other processes' waiters never heard of
    # those completions (CI: 11 of 500 waiters timed out).
    sent: list[str] = []
    notifier = Notifier(lambda: sent.append("notify"), interval=60.0)
    assert notifier.now_or_later() is True  # the first: the caller sends it
    assert notifier.now_or_later() is False  # owed, 60 s from now
    notifier.close()
    assert sent == ["notify"]
    quiet = Notifier(lambda: sent.append("again"), interval=60.0)
    assert quiet.now_or_later() is True
    quiet.close()
    assert sent == ["notify"], "nothing owed: nothing sent at close"


def test_many_writes_send_few_notifications(schema: str) -> None:
    storage = PostgresStorage(pg_dsn(), schema=schema)
    other = PostgresStorage(pg_dsn(), schema=schema)
    try:
        feed = other.change_feed()
        listener = other._listener
        assert listener is not None
        feed.changed()
        start = listener.position()
        t0 = time.monotonic()
        for n in range(200):
            enqueue(storage, name=f"t{n}")
        elapsed = time.monotonic() - t0
        time.sleep(0.2)
        assert feed.changed() is True
        received = listener.position() - start
        # At most one per 50 ms, plus the first and a trailing one.
        assert received <= elapsed / 0.05 + 2, (received, elapsed)
    finally:
        storage.close()
        other.close()


def test_completions_in_another_process_wake_its_feed(schema: str) -> None:
    mine = PostgresStorage(pg_dsn(), schema=schema)
    other = PostgresStorage(pg_dsn(), schema=schema)
    try:
        task_id = enqueue(other)
        [held] = claim(other, T0)
        feed = mine.change_feed()
        feed.changed()
        time.sleep(0.06)  # past the debounce window of the enqueue
        assert other.complete([Completion(held.claim, None)], T0) == {held.claim}
        assert feed.changed() is True
        assert mine.get(task_id).status == "completed"
    finally:
        mine.close()
        other.close()


# -- the server clock ---------------------------------------------------------------------


def test_the_server_clock_applies_the_measured_offset() -> None:
    def sample() -> tuple[float, float, float]:
        now = time.time()
        return now, now + 100.0, now  # the server is 100 s ahead

    clock = ServerClock(sample)
    assert abs(clock.offset - 100.0) < 0.01
    assert abs(clock.time() - (time.time() + 100.0)) < 0.05


def test_the_server_clock_agrees_with_the_server(schema: str) -> None:
    storage = PostgresStorage(pg_dsn(), schema=schema)
    try:
        [(server,)] = sql("SELECT extract(epoch FROM clock_timestamp())::float8")
        assert abs(storage.server_clock().time() - server) < 0.5
    finally:
        storage.close()


def test_a_notification_wakes_an_idle_worker_at_once(schema: str) -> None:
    # poll_interval 5 s and the 1 s sweep: only the pushed wake-up (the
    # feed's on_change) starts the task within 0.3 s.
    from task_queue import Worker

    started: list[float] = []
    worker_queue = TaskQueue(storage=PostgresStorage(pg_dsn(), schema=schema))
    producer = TaskQueue(storage=PostgresStorage(pg_dsn(), schema=schema))
    try:
        handlers = {"t": lambda payload: started.append(time.time())}
        with Worker(worker_queue, handlers, concurrency=1, poll_interval=5.0):
            time.sleep(1.5)  # idle: past the first claims and sweeps
            latencies = []
            for _ in range(3):
                time.sleep(0.3)
                t0 = time.time()
                task_id = producer.enqueue("x", "t")
                producer.wait(task_id, timeout=10)
                latencies.append(started[-1] - t0)
        assert sorted(latencies)[1] < 0.3, latencies
    finally:
        worker_queue.close()
        producer.close()


# -- retries and fork ------------------------------------------------------------------------


def test_a_deadlock_is_retried_and_the_unit_runs_again(schema: str) -> None:
    import psycopg.errors

    storage = PostgresStorage(pg_dsn(), schema=schema)
    calls: list[int] = []

    def unit(tx: Any) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.errors.DeadlockDetected("deadlock detected (simulated)")
        return int(tx.one("server_time")[0] > 0)

    try:
        assert storage._run("a unit", unit) == 1
        assert len(calls) == 3
    finally:
        storage.close()


def test_conflicts_that_persist_become_database_busy(schema: str) -> None:
    import psycopg.errors

    from task_queue import DatabaseBusyError

    storage = PostgresStorage(pg_dsn(), schema=schema)

    def unit(tx: Any) -> None:
        raise psycopg.errors.SerializationFailure("could not serialize (simulated)")

    try:
        with pytest.raises(DatabaseBusyError):
            storage._run("a unit", unit)
    finally:
        storage.close()


def test_a_child_after_fork_opens_its_own_connections(schema: str) -> None:
    import os

    storage = PostgresStorage(pg_dsn(), schema=schema)
    try:
        first = enqueue(storage, name="parent")
        pid = os.fork()
        if pid == 0:  # the child: never the parent's sockets
            code = 1
            try:
                child_task = enqueue(storage, name="child")
                code = 0 if storage.get(child_task) is not None else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        # The parent's pool still works (the child closed none of its sessions).
        assert storage.get(first) is not None
        assert {t.name for t in storage.list_by_status("pending", 10)} == {"parent", "child"}
    finally:
        storage.close()


def test_an_interrupt_says_what_it_left_behind(schema: str) -> None:
    # As the SQLite engine does (task_queue/interrupted.py): before the
    # commit, nothing was written; during a statement that is its own
    # commit, unknown; enqueue() turns these into exc.task_ids.
    storage = PostgresStorage(pg_dsn(), schema=schema)

    def interrupted(tx: Any) -> None:
        tx.one("server_time")
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt) as in_transaction:
            storage._run("a unit", interrupted, transaction=True)
        assert isinstance(
            getattr(in_transaction.value, "task_queue_error", None), KeyboardInterrupt
        )
        with pytest.raises(KeyboardInterrupt) as autocommit:
            storage._run("a unit", interrupted, transaction=False)
        assert getattr(autocommit.value, "task_queue_unknown", None) is True
        assert storage.counts() == {}  # and the storage still works
    finally:
        storage.close()
