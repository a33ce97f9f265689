"""examples/fastapi_app.py with FastAPI's TestClient (the lifespan starts
and stops the Worker), and the result endpoint of examples/flask_app.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fastapi_example() -> ModuleType:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")  # the TestClient's transport
    return load_example("fastapi_app")


@pytest.fixture
def client(fastapi_example: ModuleType, tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    app = fastapi_example.create_app(str(tmp_path / "web.db"), concurrency=2)
    with TestClient(app) as test_client:  # runs the lifespan: Worker started
        yield test_client
    # The lifespan's exit stopped the Worker and closed the queue.
    assert app.state.worker.join(0)


def test_fastapi_enqueue_then_await_the_result(client: Any) -> None:
    resp = client.post("/signup", json={"email": "ada@example.com"})
    assert resp.status_code == 202
    body = resp.json()
    task_id = body["task_id"]
    assert body["status_url"] == f"/tasks/{task_id}"
    result = client.get(body["result_url"], params={"timeout": 10})
    assert result.status_code == 200
    assert result.json() == {"status": "completed", "result": {"delivered_to": "ada@example.com"}}
    status = client.get(body["status_url"]).json()
    assert (status["status"], status["attempts"]) == ("completed", 1)
    assert client.get("/stats").json()["completed"] == 1


def test_fastapi_result_times_out_with_504_and_other_errors(client: Any) -> None:
    client.app.state.worker.stop(timeout=5)  # nothing runs: the task stays pending
    first = client.post("/signup", json={"email": "bob@example.com"}).json()
    again = client.post("/signup", json={"email": "bob@example.com"}).json()
    assert first["task_id"] == again["task_id"]  # unique_key while queued
    resp = client.get(first["result_url"], params={"timeout": 0.2})
    assert resp.status_code == 504 and resp.json()["status"] == "pending"
    assert client.get("/tasks/999").status_code == 404
    assert client.get("/tasks/999/result").status_code == 404
    assert client.get(first["result_url"], params={"timeout": 600}).status_code == 400
    assert client.post("/signup", json={"email": "no-at-sign"}).status_code == 400
    assert client.post("/signup", json={"mail": "x@y"}).status_code == 422
    queue = client.app.state.queue
    queue.cancel_task(first["task_id"])
    assert client.get(first["result_url"]).status_code == 409
    assert client.get("/stats").json()["cancelled"] == 1


def test_fastapi_app_without_a_worker_only_enqueues(
    fastapi_example: ModuleType, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    app = fastapi_example.create_app(str(tmp_path / "web.db"), run_worker=False)
    with TestClient(app) as client:
        task_id = client.post("/signup", json={"email": "eve@example.com"}).json()["task_id"]
        assert client.get("/stats").json()["pending"] == 1
        assert not app.state.worker.join(0)  # never started
    # Another process's Worker would run it: here, the same file afterwards.
    from task_queue import TaskQueue, Worker

    with TaskQueue(tmp_path / "web.db") as queue, Worker(queue, fastapi_example.handlers):
        assert queue.result(task_id, timeout=10) == {"delivered_to": "eve@example.com"}


def test_fastapi_app_run_as_a_user_serves_and_writes_nothing_into_the_cwd(
    fastapi_example: ModuleType, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "fastapi_app.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        # The checkout first on the path, as the other examples' tests do.
        env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
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


@pytest.fixture
def flask_app(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("flask")
    app = load_example("flask_app").create_app(str(tmp_path / "web.db"), concurrency=2)
    yield app
    app.extensions["task_queue"]["shutdown"]()


def test_flask_waits_for_the_result_with_a_timeout(flask_app: Any) -> None:
    client = flask_app.test_client()
    body = client.post("/signup", json={"email": "ada@example.com"}).get_json()
    resp = client.get(body["result_url"], query_string={"timeout": 10})
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "completed", "result": {"delivered_to": "ada@example.com"}}
    flask_app.extensions["task_queue"]["worker"].stop(timeout=5)
    pending = client.post("/signup", json={"email": "bob@example.com"}).get_json()
    resp = client.get(pending["result_url"], query_string={"timeout": 0.2})
    assert resp.status_code == 504
    assert client.get("/tasks/999/result").status_code == 404
    wait_until(lambda: client.get("/stats").get_json()["pending"] == 1)
