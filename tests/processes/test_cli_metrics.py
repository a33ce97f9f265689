"""``task-queue worker --metrics-port``: the command serves the worker's
Prometheus metrics and the queue's gauges (issue 11, section 2), scraped
over HTTP while it runs and parsed with prometheus_client's parser."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families
from support import wait_until

from task_queue import TaskQueue

CHECKOUT = Path(__file__).resolve().parents[2]

TASKS = """
from task_queue import handler


@handler("echo")
def echo(payload):
    return payload


@handler("boom", max_retries=0)
def boom(payload):
    raise ValueError("boom")
"""


def command(cwd: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "task_queue", "--db", str(cwd / "queue.db"), *args]


def env() -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if k != "TASK_QUEUE_DB"}
    found["PYTHONPATH"] = os.pathsep.join(p for p in (str(CHECKOUT), found.get("PYTHONPATH")) if p)
    return found


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.slow
def test_the_worker_command_serves_its_metrics(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    with TaskQueue(tmp_path / "queue.db") as queue:
        ok = [queue.enqueue(f"e{i}", "echo", i) for i in range(3)]
        bad = queue.enqueue("b", "boom")
    log = tmp_path / "worker.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            command(tmp_path, "worker", "tasks", "--metrics-port", "0",
                    "--metrics-addr", "127.0.0.1"),
            stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path, env=env(),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        found = wait_until(
            lambda: re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", log.read_text()),
            timeout=30,
        )
        port = int(found.group(1))
        with TaskQueue(tmp_path / "queue.db") as queue:
            for task_id in [*ok, bad]:
                queue.wait(task_id, timeout=30)
        samples = wait_until(
            lambda: (
                (s := scrape(port))
                and sum(v for (n, _), v in s.items() if n == "task_queue_tasks_finished_total") == 4
                and s
            ),
            timeout=30,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    labels = {"task_type": "echo", "queue": "default"}
    assert value("task_queue_tasks_finished_total", **labels, outcome="completed") == 3
    assert value("task_queue_tasks_finished_total", task_type="boom", queue="default",
                 outcome="failed") == 1  # fmt: skip
    assert value("task_queue_tasks_started_total", **labels) == 3
    assert value("task_queue_task_duration_seconds_count", **labels) == 3
    assert value("task_queue_tasks", status="completed", queue="default") == 3
    assert value("task_queue_tasks", status="failed", queue="default") == 1
    assert ("process_cpu_seconds_total", frozenset()) in samples  # the default registry's own


def test_a_metrics_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            command(tmp_path, "worker", "tasks", "--metrics-port", str(port),
                    "--metrics-addr", "127.0.0.1", "--log-level", "warning"),
            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env(),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("task-queue") and f"cannot serve metrics on 127.0.0.1:{port}" in line


def test_the_metrics_port_is_checked_like_every_number(tmp_path: Path) -> None:
    proc = subprocess.run(
        command(tmp_path, "worker", "tasks", "--metrics-port", "70000"),
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env(),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "must be from 0 to 65535" in proc.stderr


def test_the_commands_outcome_lines_carry_the_task_fields(tmp_path: Path) -> None:
    """The command's JSON log: each outcome line has task_id, task_type,
    queue and attempt, as the library's own lines do."""
    (tmp_path / "tasks.py").write_text(TASKS)
    with TaskQueue(tmp_path / "queue.db") as queue:
        task_id = queue.enqueue("e", "echo", 1, queue_name="q")
    proc = subprocess.run(
        command(tmp_path, "worker", "tasks", "--burst", "--log-format", "json"),
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env(),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    [done] = [r for r in records if r.get("event") == "task_completed"]
    assert (done["task_id"], done["task_type"], done["queue"], done["attempt"]) == (
        task_id, "echo", "q", 1,
    )  # fmt: skip
