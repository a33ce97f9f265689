"""The examples run as a user would run them, and do what they say."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_env() -> dict[str, str]:
    # The checkout first on the path, so the examples import this task_queue
    # even where it is not installed.
    path = os.pathsep.join(p for p in (str(EXAMPLES.parent), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": path}


def run_example(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=run_env(),
        cwd=EXAMPLES.parent,
    )


def lines_matching(pattern: str, text: str) -> list[Any]:
    return re.findall(pattern, text, flags=re.MULTILINE)


# -- demo.py -------------------------------------------------------------------


def check_demo_output(out: str) -> None:
    assert out.rstrip().endswith("✅ Demo completed successfully!")
    enqueued = lines_matching(r"^📝 Enqueued task #(\d+): (.+) \(priority: (\w+)", out)
    assert [(int(i), name) for i, name, _ in enqueued] == [
        (1, "Send welcome email"),
        (2, "Generate sales report"),
        (3, "Process image 1"),
        (4, "Process image 2"),
        (5, "Process image 3"),
        (6, "Daily cleanup"),
        (7, "Send newsletter"),
        (8, "Scheduled cleanup"),
    ]
    assert "📊 Initial Queue Stats:\n   pending: 8\n" in out
    assert lines_matching(r"^🔧 Worker started: (Worker-\d)$", out) == [
        "Worker-1",
        "Worker-2",
        "Worker-3",
    ]
    started = [int(i) for i in lines_matching(r"^⚙️  Processing task #(\d+):", out)]
    assert sorted(started) == [1, 2, 3, 4, 5, 7, 8], "each due task ran exactly once"
    # Priority order (claims are atomic and in priority order; the prints of
    # concurrent workers may swap places, so only coarse order is checked):
    # the three first claims take the HIGH tasks and the first NORMAL one,
    # the LOW task starts after the first NORMAL ones, the one scheduled
    # two seconds ahead starts last.
    assert set(started[:3]) == {1, 2, 3}
    assert started.index(7) > started.index(3)
    assert started[-1] == 8
    completed = sorted(int(i) for i in lines_matching(r"^✅ Task #(\d+) completed", out))
    assert completed == [1, 2, 3, 4, 5, 7, 8]
    final = out.split("📊 Final Queue Stats:\n", 1)[1]
    assert final.startswith("   completed: 7\n   pending: 1\n\n")
    recent_part = final.split("✅ Recently Completed Tasks:", 1)[1].split("⏰", 1)[0]
    recent = lines_matching(r"^   #(\d+): (.+)$", recent_part)
    assert len(recent) == 5
    assert recent[0] == ("8", "Scheduled cleanup"), "the task that ran last comes first"
    assert "6" not in [task_id for task_id, _ in recent]
    assert "⏰ Still pending (scheduled for later):\n   #6: Daily cleanup (due " in out


def test_demo_prints_the_expected_output() -> None:
    proc = run_example("examples/demo.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_demo_output(proc.stdout)
    # Nothing went wrong inside the library (it logs warnings to stderr).
    assert proc.stderr == ""


@pytest.mark.slow
def test_demo_file_is_refused_unless_reset_and_reruns_identically(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    first = run_example("examples/demo.py", "--db", str(db))
    assert first.returncode == 0, first.stdout + first.stderr
    check_demo_output(first.stdout)
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT id, status FROM tasks ORDER BY id").fetchall()
    conn.close()
    assert [s for _, s in rows] == ["completed"] * 5 + ["pending"] + ["completed"] * 2

    refused = run_example("examples/demo.py", "--db", str(db))
    assert refused.returncode == 2
    assert "--reset" in refused.stderr

    again = run_example("examples/demo.py", "--db", str(db), "--reset")
    assert again.returncode == 0, again.stdout + again.stderr
    check_demo_output(again.stdout)


# -- producer_consumer.py -----------------------------------------------------


def test_producer_consumer_across_processes() -> None:
    proc = run_example("examples/producer_consumer.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "enqueueing it again returned 13 (same task)" in out
    results = lines_matching(r"^  #(\d+) (.+): (\w+) after (\d+) attempt", out)
    assert len(results) == 13
    assert all(status == "completed" for _, _, status, _ in results)
    assert results[-1][1:] == ("Sync SKU-42", "completed", "2"), "retried once, then succeeded"
    assert "'running': 0" in out and "'completed': 13" in out
    assert "worker process exited with code 0" in out
    assert out.rstrip().endswith("✅ producer/consumer example finished")
    # The worker drained on SIGTERM instead of dying mid-task.
    assert "received signal" in proc.stderr and "consumer stopped" in proc.stderr


def test_producer_consumer_keeps_the_file(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    proc = run_example("examples/producer_consumer.py", "--db", str(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from task_queue import TaskQueue

    with TaskQueue(db) as queue:
        assert queue.get_queue_stats()["completed"] == 13


# -- project/: tasks.py and enqueue.py, run with `task-queue worker` -------------


def run_in(cwd: Path, *args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, encoding="utf-8",
        timeout=60, cwd=cwd, env={**run_env(), "TASK_QUEUE_DB": str(db)},
    )  # fmt: skip


def test_project_enqueues_then_the_command_runs_its_tasks(tmp_path: Path) -> None:
    project = EXAMPLES / "project"
    db = tmp_path / "project.db"
    enqueued = run_in(project, "enqueue.py", db=db)
    assert enqueued.returncode == 0, enqueued.stderr
    ids = [int(line) for line in enqueued.stdout.split()]
    assert len(ids) == 4
    # From the project's directory, as a user would: `tasks` is ./tasks.py.
    worker = run_in(project, "-m", "task_queue", "worker", "tasks", "--burst", db=db)
    assert worker.returncode == 0, worker.stderr
    assert "handlers flaky_sum,greet (from TASK_HANDLERS)" in worker.stderr
    from task_queue import TaskQueue

    with TaskQueue(db) as queue:
        tasks = [queue.get_task(i) for i in ids]
    assert [t.status for t in tasks] == ["completed"] * 4
    assert [t.result for t in tasks[:3]] == [
        {"greeting": "Hello, Ada!"}, {"greeting": "Hello, Grace!"}, {"greeting": "Hello, Linus!"}
    ]  # fmt: skip
    assert (tasks[3].result, tasks[3].attempts) == (6, 2), "failed once, retried, then added"
    assert f"task {ids[3]} (flaky_sum) failed after " in worker.stderr


def test_readme_command_line_session_runs_as_written(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Command line\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    assert lines[0] == "source .venv/bin/activate && cd examples/project"
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "project", project)
    outputs = []
    for line in lines[1:]:
        words = shlex.split(line)
        if words[0] == "task-queue":
            argv = [sys.executable, "-m", "task_queue", *words[1:]]
        else:
            assert words[0] == "python", line
            argv = [sys.executable, *words[1:]]
        env = {k: v for k, v in run_env().items() if k != "TASK_QUEUE_DB"}
        proc = subprocess.run(
            argv, capture_output=True, text=True, encoding="utf-8", timeout=60, cwd=project,
            env=env,
        )  # fmt: skip
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
        outputs.append(proc.stdout)
    assert (project / "taskqueue.db").exists(), "the default file, in the current directory"
    assert "pending        4" in outputs[1]
    assert json.loads(outputs[-1])["counts"]["completed"] == 4


# -- flask_app.py ----------------------------------------------------------------


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def flask_app(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("flask")
    app = load_example("flask_app").create_app(str(tmp_path / "web.db"), concurrency=2)
    yield app
    app.extensions["task_queue"]["shutdown"]()


def test_flask_enqueue_then_poll_status(flask_app: Any) -> None:
    client = flask_app.test_client()
    resp = client.post("/signup", json={"email": "ada@example.com"})
    assert resp.status_code == 202
    body = resp.get_json()
    task_id = body["task_id"]
    assert body["status_url"] == f"/tasks/{task_id}"

    def finished() -> dict[str, Any] | None:
        data: dict[str, Any] = client.get(body["status_url"]).get_json()
        return data if data["status"] == "completed" else None

    task = wait_until(finished, timeout=10)
    assert task["result"] == {"delivered_to": "ada@example.com"}
    assert task["attempts"] == 1
    assert client.get("/stats").get_json() == {
        "pending": 0,
        "running": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "waiting": 0,
    }


def test_flask_double_submit_while_queued_gives_one_task(flask_app: Any) -> None:
    # Stop the worker so the first task is certainly still pending.
    flask_app.extensions["task_queue"]["worker"].stop(timeout=5)
    client = flask_app.test_client()
    first = client.post("/signup", json={"email": "bob@example.com"}).get_json()
    second = client.post("/signup", json={"email": "bob@example.com"}).get_json()
    assert first["task_id"] == second["task_id"]
    assert client.get("/stats").get_json()["pending"] == 1


def test_flask_bad_requests(flask_app: Any) -> None:
    client = flask_app.test_client()
    assert client.post("/signup", data="not json").status_code == 400
    assert client.post("/signup", json={"email": 42}).status_code == 400
    assert client.get("/tasks/999").status_code == 404
    assert client.get("/stats").get_json()["pending"] == 0


# -- README ------------------------------------------------------------------------


def test_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "quick_start.py"
    script.write_text(code, encoding="utf-8")
    for _ in range(2):  # a second run finds the first run's task in tasks.db
        proc = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=run_env(),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "sending 'Welcome!' to user@example.com" in proc.stdout
        assert "completed {'sent': True}" in proc.stdout
    assert "'completed': 2" in proc.stdout
    assert "'running': 0" in proc.stdout


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_same_tests() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    head = readme.split("\n---\n", 1)[0]
    blocks = [b.split("```", 1)[0].strip() for b in head.split("```bash\n")[1:]]
    assert blocks == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python examples/demo.py",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest",
    ]
    ci = (EXAMPLES.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in ci
    assert "pip install --quiet -e '.[test]'" in ci
    assert '"$venv/bin/python" -m pytest\n' in ci  # the README's command: every test
    assert os.access(EXAMPLES.parent / ".ci" / "run", os.X_OK)


def test_flask_app_run_as_a_user_writes_nothing_into_the_current_directory(
    tmp_path: Path,
) -> None:
    """Regression: it created webapp.db in the current directory, though the
    README says the examples use a temporary database unless given --db."""
    pytest.importorskip("flask")
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "flask_app.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=run_env(),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("queue file: "), first
        assert str(tmp_path) not in first
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []


def test_readme_examples_table_commands_work_after_the_setup_commands() -> None:
    """Regression: the table said `python examples/demo.py`, which fails
    after the set-up commands (no virtualenv is active)."""
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Examples", 1)[1].split("\n\n", 2)[1]
    commands = re.findall(r"^\| `([^`]+)`", table, re.MULTILINE)
    assert commands, table
    assert all(c.startswith(".venv/bin/python examples/") for c in commands), commands


def test_etl_pipeline_runs_and_prints_progress_while_it_waits() -> None:
    proc = run_example("examples/etl_pipeline.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "enqueued the pipeline: tasks 1..5" in out
    assert re.search(r"#1 extract orders\s+running\s+\d+/60 reading the source", out)
    for country in ("DE", "FR", "NL"):
        assert re.search(rf"transform {country}\s+completed 20/20 summing {country}", out)
    assert "report: {'DE': 991, 'FR': 1024, 'NL': 956} (60 rows)" in out
    # The load step ran only after all three transforms completed.
    assert out.index("#5 load report      completed") > max(
        out.index(f"transform {c}     completed") for c in ("DE", "FR", "NL")
    )
