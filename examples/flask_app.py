"""Flask integration: enqueue from a request, Worker threads in the same process,
a status endpoint and one that waits for the result (the shape of
examples/fastapi_app.py, with the blocking methods).

    pip install flask            # or: pip install -e '.[examples]'
    python examples/flask_app.py               # http://127.0.0.1:5000, a temporary queue file
    python examples/flask_app.py --db web.db   # or a file of your own, kept

    curl -X POST localhost:5000/signup -H 'Content-Type: application/json' \\
         -d '{"email": "ada@example.com"}'
    # -> 202 {"task_id": 1, "status_url": "/tasks/1", "result_url": "/tasks/1/result"}
    curl localhost:5000/tasks/1        # -> {"status": "completed", "result": {...}, ...}
    curl 'localhost:5000/tasks/1/result?timeout=5'  # waits up to 5 s; 504 if not done by then
    curl localhost:5000/stats

The request handler only enqueues (a few hundred microseconds; the task is
durable when the response goes out); the slow work runs in the Worker's
threads. ``create_app()`` is an application factory, so tests can build an
app on a temporary file and drive it with ``app.test_client()``. A request
waiting for a result holds a server thread: keep its timeout short.

Deployment notes:

* one TaskQueue and one Worker per process; create them in the process that
  uses them (with a pre-forking server such as gunicorn, call ``create_app``
  in each worker process, i.e. do not use ``--preload``);
* several processes (web workers, or a separate ``Worker.run()`` process)
  may share the same file; each task still runs in one place at a time;
* the Worker is stopped gracefully when the process exits (``atexit``).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
import tempfile
import time
from typing import Any

try:
    from flask import Flask, jsonify, request
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("This example needs Flask: pip install flask  (or: pip install -e '.[examples]')")

from task_queue import (
    HandlerRegistry,
    Task,
    TaskCancelled,
    TaskFailedError,
    TaskPriority,
    TaskQueue,
    Worker,
)

# An explicit registry (instead of the global TASK_HANDLERS): this app's
# workers run exactly these task types.
handlers = HandlerRegistry()


@handlers.handler("send_welcome_email", max_retries=5)
def send_welcome_email(payload: dict[str, Any]) -> dict[str, Any]:
    # Idempotent in a real app: e.g. record "welcome sent" for the address
    # and skip if it is already recorded (delivery is at least once).
    time.sleep(0.05)  # talk to the mail server
    return {"delivered_to": payload["email"]}


def task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "type": task.task_type,
        "status": task.status.value,
        "attempts": task.attempts,
        "result": task.result,
        "error": task.error_message,
        "created_at": task.created_at,
        "completed_at": task.completed_at,
    }


def create_app(db_path: str, *, concurrency: int = 4) -> Flask:
    app = Flask(__name__)
    queue = TaskQueue(db_path)
    worker = Worker(queue, handlers, concurrency=concurrency, name="web-worker")
    worker.start()

    def shutdown() -> None:
        worker.stop(timeout=10)  # unfinished tasks go back to pending
        queue.close()

    atexit.register(shutdown)
    app.extensions["task_queue"] = {"queue": queue, "worker": worker, "shutdown": shutdown}

    @app.post("/signup")
    def signup() -> Any:
        data = request.get_json(silent=True)
        email = data.get("email") if isinstance(data, dict) else None
        if not isinstance(email, str) or "@" not in email:
            return jsonify(error="expected JSON {'email': '<address>'}"), 400
        task_id = queue.enqueue(
            f"Welcome email to {email}",
            "send_welcome_email",
            {"email": email},
            priority=TaskPriority.HIGH,
            # A double-submitted form does not send two emails while the
            # first is still queued or running.
            unique_key=f"welcome:{email}",
        )
        return jsonify(
            task_id=task_id,
            status_url=f"/tasks/{task_id}",
            result_url=f"/tasks/{task_id}/result",
        ), 202

    @app.get("/tasks/<int:task_id>")
    def task_status(task_id: int) -> Any:
        task = queue.get_task(task_id)
        if task is None:
            return jsonify(error=f"no task {task_id}"), 404
        return jsonify(task_json(task))

    @app.get("/tasks/<int:task_id>/result")
    def task_result(task_id: int) -> Any:
        timeout = request.args.get("timeout", default=10.0, type=float)
        if timeout is None or not 0 <= timeout <= 60:
            return jsonify(error="timeout must be between 0 and 60 seconds"), 400
        if queue.get_task(task_id) is None:
            return jsonify(error=f"no task {task_id}"), 404
        try:
            result = queue.result(task_id, timeout=timeout)
        except TimeoutError:
            return jsonify(status="pending", error="not finished yet"), 504
        except TaskFailedError as exc:
            return jsonify(status="failed", error=exc.message), 500
        except TaskCancelled as exc:
            return jsonify(status="cancelled", error=str(exc)), 409
        return jsonify(status="completed", result=result)

    @app.get("/stats")
    def stats() -> Any:
        return jsonify(queue.get_queue_stats())

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="task_queue + Flask example")
    parser.add_argument("--db", help="queue file (default: a temporary one, removed at exit)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.db is None:
        # Like every example: a temporary database unless told otherwise.
        tmp = tempfile.TemporaryDirectory(prefix="task-queue-flask-")
        atexit.register(tmp.cleanup)  # registered first, so it runs after shutdown()
        args.db = os.path.join(tmp.name, "webapp.db")
    print(f"queue file: {args.db}", flush=True)
    app = create_app(args.db)
    # SIGTERM (systemd, Docker) exits through atexit, so the Worker drains;
    # Ctrl-C (KeyboardInterrupt) does too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    # No reloader: it would run the app (and its Worker) in a second process.
    app.run(host=args.host, port=args.port, use_reloader=False)


if __name__ == "__main__":
    main()
