"""Prometheus metrics (issue 11, section 2): the real endpoint scraped over
HTTP after real tasks ran, parsed with prometheus_client's own parser; the
counts match what ran, the gauges match the database, a second process's
counters are its own while the gauges agree."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from support import procs, wait_until

from task_queue import RetryPolicy, TaskQueue, Worker, current_task
from task_queue.contrib import prometheus
from task_queue.storage.sqlite.sql import QUERIES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """GET /metrics and parse it: (sample name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples that have ``labels`` (and any others)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
def served(db_path: str) -> Iterator[tuple[TaskQueue, int]]:
    registry = CollectorRegistry()
    # A short lease: the heartbeat (lease / 3) tells a cancelled handler soon.
    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0), lease_seconds=1.5) as queue:
        prometheus.install(queue, registry)
        server, thread = prometheus.serve(0, registry, addr="127.0.0.1")
        try:
            yield queue, server.server_port
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def test_a_scrape_after_real_tasks_counts_what_ran(served: tuple[TaskQueue, int]) -> None:
    queue, port = served
    flaky_calls: dict[int, int] = {}
    started_long = threading.Event()

    def flaky(payload: Any) -> str:
        ctx = current_task()
        assert ctx is not None
        flaky_calls[ctx.task.id] = flaky_calls.get(ctx.task.id, 0) + 1
        if flaky_calls[ctx.task.id] == 1:
            raise ValueError("first attempt fails")
        return "ok"

    def bad(payload: Any) -> None:
        raise RuntimeError("always")

    def slow(payload: Any) -> None:
        while True:  # Python code: the asynchronous TaskTimeout stops it
            time.sleep(0.001)

    def long(payload: Any) -> None:
        started_long.set()
        ctx = current_task()
        assert ctx is not None
        ctx.wait(30)  # until cancelled

    handlers = {"ok": lambda p: p, "flaky": flaky, "bad": bad, "slow": slow, "long": long}
    ok = [queue.enqueue(f"ok{i}", "ok", i, queue_name="a") for i in range(5)]
    retried = [queue.enqueue(f"flaky{i}", "flaky", max_retries=1) for i in range(2)]
    dead = queue.enqueue("bad", "bad", max_retries=0)
    timed = queue.enqueue("slow", "slow", max_retries=1, timeout=0.2)
    cancelled = queue.enqueue("long", "long")
    queue.pause("p")
    for i in range(3):
        queue.enqueue(f"held{i}", "ok", queue_name="p")  # waits: its queue is paused
    queue.enqueue("later", "ok", queue_name="a", delay=3600)  # pending, not due
    before = scrape(port)
    assert total(before, "task_queue_tasks_enqueued_total") == 14
    assert value(before, "task_queue_tasks", status="pending", queue="p") == 3
    assert value(before, "task_queue_queue_paused", queue="p") == 1

    with Worker(queue, handlers, concurrency=3, queues=["a", "default"]):
        for task_id in [*ok, *retried, dead, timed]:
            queue.wait(task_id, timeout=30)
        assert started_long.wait(10)
        queue.cancel_task(cancelled)
        queue.wait(cancelled, timeout=10)
        samples = wait_until(
            lambda: (s := scrape(port))
            and value(s, "task_queue_tasks_finished_total", task_type="long", queue="default",
                      outcome="cancelled") == 1
            and s,
        )  # fmt: skip

    def finished(task_type: str, outcome: str, queue_name: str = "default") -> float:
        return value(
            samples, "task_queue_tasks_finished_total", task_type=task_type, queue=queue_name,
            outcome=outcome,
        )  # fmt: skip

    assert value(samples, "task_queue_tasks_enqueued_total", task_type="ok", queue="a") == 6
    assert value(samples, "task_queue_tasks_enqueued_total", task_type="ok", queue="p") == 3
    assert (
        value(samples, "task_queue_tasks_enqueued_total", task_type="flaky", queue="default") == 2
    )
    assert finished("ok", "completed", "a") == 5
    assert (finished("flaky", "retried"), finished("flaky", "completed")) == (2, 2)
    assert finished("bad", "failed") == 1
    # A timed-out attempt counts as timed_out, not as retried or failed.
    assert finished("slow", "timed_out") == 2
    assert finished("slow", "retried") == finished("slow", "failed") == 0
    assert finished("long", "cancelled") == 1
    # Every attempt started is counted once when it finished.
    started = total(samples, "task_queue_tasks_started_total")
    assert started == 5 + 4 + 1 + 2 + 1
    assert total(samples, "task_queue_tasks_finished_total") == started
    assert total(samples, "task_queue_task_wait_seconds_count") == started
    # Durations: every attempt whose outcome committed (not the cancelled one).
    count = "task_queue_task_duration_seconds_count"
    assert value(samples, count, task_type="ok", queue="a") == 5
    assert value(samples, count, task_type="flaky", queue="default") == 4
    assert value(samples, count, task_type="slow", queue="default") == 2
    assert value(samples, "task_queue_task_duration_seconds_sum", task_type="slow",
                 queue="default") >= 0.3  # two attempts of ~0.2 s  # fmt: skip
    assert value(samples, "task_queue_task_duration_seconds_bucket", task_type="ok", queue="a",
                 le="+Inf") == 5  # fmt: skip

    # The gauges are the database's counts.
    for name, counts in queue.queue_stats().items():
        for status, n in counts.items():
            assert value(samples, "task_queue_tasks", status=status, queue=name) == n
    assert value(samples, "task_queue_tasks", status="completed", queue="a") == 5
    assert value(samples, "task_queue_tasks", status="failed", queue="default") == 2
    assert value(samples, "task_queue_tasks", status="cancelled", queue="default") == 1
    assert value(samples, "task_queue_queue_paused", queue="p") == 1
    assert value(samples, "task_queue_queue_paused", queue="a") == 0
    # The paused queue's tasks are due and waiting.
    oldest = queue.oldest_due()
    assert oldest is not None
    age = value(samples, "task_queue_oldest_due_age_seconds")
    assert 0 < age <= time.time() - oldest + 1


def test_gauges_follow_the_database_at_each_scrape(served: tuple[TaskQueue, int]) -> None:
    queue, port = served
    assert value(scrape(port), "task_queue_oldest_due_age_seconds") == 0
    queue.enqueue("a", "t", queue_name="q")
    samples = scrape(port)
    assert value(samples, "task_queue_tasks", status="pending", queue="q") == 1
    assert value(samples, "task_queue_queue_paused", queue="q") == 0
    queue.pause("q")
    queue.resume("q")
    queue.pause("other")
    samples = scrape(port)
    assert value(samples, "task_queue_queue_paused", queue="q") == 0
    assert value(samples, "task_queue_queue_paused", queue="other") == 1
    assert value(samples, "task_queue_tasks", status="pending", queue="other") == 0


class Untouchable:
    """A queue that must not be read."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the collector read the queue at registration ({name})")


def test_registering_the_collector_reads_nothing() -> None:
    registry = CollectorRegistry()
    registry.register(prometheus.QueueCollector(Untouchable()))  # type: ignore[arg-type]
    names = {m.name for m in prometheus.QueueCollector(Untouchable()).describe()}  # type: ignore[arg-type]
    assert names == {"task_queue_tasks", "task_queue_oldest_due_age_seconds",
                     "task_queue_queue_paused"}  # fmt: skip


@pytest.mark.sqlite_only("reads SQLite's query plans; PostgreSQL's counts: tests/storage/postgres")
def test_the_gauges_read_only_kept_counts_and_one_index_seek(db_path: str) -> None:
    """Cheap at a million rows: the collector reads the per-queue counts the
    schema keeps, the pauses and the oldest due time (an index seek), never
    the tasks themselves."""
    called: list[str] = []
    with TaskQueue(db_path) as queue:
        queue.enqueue_many([{"name": "n", "task_type": "t"} for _ in range(100)])
        storage = queue.storage
        for method in ("queue_counts", "paused", "oldest_due", "counts"):
            original = getattr(storage, method)

            def spy(*args: Any, _name: str = method, _original: Any = original) -> Any:
                called.append(_name)
                return _original(*args)

            setattr(storage, method, spy)
        list(prometheus.QueueCollector(queue).collect())
    assert sorted(set(called)) == ["oldest_due", "paused", "queue_counts"]
    conn = sqlite3.connect(db_path)
    try:
        for name in ("queue_counts", "paused_queues", "oldest_due"):
            plan = conn.execute(f"EXPLAIN QUERY PLAN {QUERIES[name]}", {"now": 0.0}).fetchall()
            details = " | ".join(str(row[-1]) for row in plan)
            assert "SCAN tasks" not in details, (name, details)
            if name == "oldest_due":
                assert "idx_tasks_scheduled" in details
    finally:
        conn.close()


def test_a_failed_read_leaves_the_gauges_out(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = TaskQueue(db_path)
    collector = prometheus.QueueCollector(queue)
    queue.close()
    assert list(collector.collect()) == []
    assert "reading the queue gauges failed" in caplog.text


@pytest.mark.slow
def test_each_process_serves_its_own_counters_and_the_same_gauges(
    served: tuple[TaskQueue, int], tmp_path: Path
) -> None:
    queue, port = served
    port_file = tmp_path / "child.port"
    child = procs.start(
        "metrics_worker", db=queue.path, port_file=str(port_file), n=7, queue_name="cq",
        task_type="child",
    )  # fmt: skip
    try:
        ids = [queue.enqueue(f"p{i}", "parent", queue_name="pq") for i in range(4)]
        with Worker(queue, {"parent": lambda p: None}, concurrency=2, queues=["pq"]):
            for task_id in ids:
                queue.wait(task_id, timeout=30)
            wait_until(lambda: port_file.exists(), timeout=30)
            child_port = int(port_file.read_text())
            wait_until(lambda: queue.get_queue_stats("cq")["completed"] == 7, timeout=30)
            wait_until(
                lambda: total(scrape(child_port), "task_queue_tasks_finished_total") == 7,
                timeout=30,
            )
            mine, theirs = scrape(port), scrape(child_port)
    finally:
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err

    def by_type(samples: Samples, name: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for (n, labels), v in samples.items():
            if n == name:
                task_type = dict(labels)["task_type"]
                found[task_type] = found.get(task_type, 0) + v
        return found

    # Counters: each process counts what it did itself.
    assert by_type(mine, "task_queue_tasks_enqueued_total") == {"parent": 4}
    assert by_type(theirs, "task_queue_tasks_enqueued_total") == {"child": 7}
    assert by_type(mine, "task_queue_tasks_finished_total") == {"parent": 4}
    assert by_type(theirs, "task_queue_tasks_finished_total") == {"child": 7}

    # Gauges: the database's, the same from either process.
    def gauges(samples: Samples) -> Samples:
        names = ("task_queue_tasks", "task_queue_queue_paused")
        return {k: v for k, v in samples.items() if k[0] in names}

    assert gauges(mine) == gauges(theirs)
    assert value(mine, "task_queue_tasks", status="completed", queue="cq") == 7
    assert value(theirs, "task_queue_tasks", status="completed", queue="pq") == 4
