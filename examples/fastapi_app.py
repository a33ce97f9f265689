"""FastAPI integration: enqueue from async endpoints, a Worker started and
stopped by the app's lifespan, results awaited without blocking the loop.

    pip install fastapi uvicorn         # or: pip install -e '.[fastapi]'
    python examples/fastapi_app.py                # http://127.0.0.1:8000, a temporary queue file
    python examples/fastapi_app.py --db web.db    # or a file of your own, kept

    curl -X POST localhost:8000/signup -H 'Content-Type: application/json' \\
         -d '{"email": "ada@example.com"}'
    # -> 202 {"task_id": 1, "status_url": "/tasks/1", "result_url": "/tasks/1/result"}
    curl localhost:8000/tasks/1                    # -> {"status": "completed", ...}
    curl 'localhost:8000/tasks/1/result?timeout=5' # waits up to 5 s; 504 if not done by then
    curl localhost:8000/stats

Endpoints use the ``a``-methods (``aenqueue``, ``aget_task``, ``aresult``,
``aget_queue_stats``): they never block the event loop, not even while
another process holds the database's write lock, and awaiting a result
takes no thread. The task is durable when the 202 goes out.

The handler is ``async def``: the Worker runs it on an event loop of its
own (up to ``async_concurrency`` at once, default 200), so it may await
HTTP calls and the like without a thread each. Sync handlers run in the
Worker's threads as usual.

Deployment notes (README, "Using it from a web app"):

* the lifespan runs once per server process: with ``uvicorn --workers 4``
  (or gunicorn with uvicorn workers) each process opens its own TaskQueue
  and runs its own Worker on the same file, which is fine; create them in
  the lifespan, never at import time in a process that forks;
* or pass ``run_worker=False`` (``--no-worker``) and run the Worker in a
  process of its own (``Worker(TaskQueue(path), handlers).run()``), so web
  processes only enqueue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

try:
    import uvicorn
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit(
        "This example needs FastAPI: pip install fastapi uvicorn (or: pip install -e '.[fastapi]')"
    )

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
async def send_welcome_email(payload: dict[str, Any]) -> dict[str, Any]:
    # Idempotent in a real app: e.g. record "welcome sent" for the address
    # and skip if it is already recorded (delivery is at least once).
    await asyncio.sleep(0.05)  # talk to the mail service
    return {"delivered_to": payload["email"]}


class Signup(BaseModel):
    email: str


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


def create_app(db_path: str, *, concurrency: int = 4, run_worker: bool = True) -> FastAPI:
    """The app; its lifespan opens the queue and starts (then stops) a Worker."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue = TaskQueue(db_path)
        worker = Worker(queue, handlers, concurrency=concurrency, name="web-worker")
        if run_worker:
            # start() and stop() wait on the database (stop() on running
            # tasks, up to its timeout): off the event loop.
            await asyncio.to_thread(worker.start)
        app.state.queue, app.state.worker = queue, worker
        try:
            yield
        finally:
            if run_worker:
                await asyncio.to_thread(worker.stop, 10)  # unfinished tasks go back to pending
            queue.close()

    app = FastAPI(title="task_queue + FastAPI", lifespan=lifespan)

    def queue_of(request: Request) -> TaskQueue:
        queue: TaskQueue = request.app.state.queue
        return queue

    @app.post("/signup", status_code=202)
    async def signup(body: Signup, request: Request) -> dict[str, Any]:
        if "@" not in body.email:
            raise HTTPException(400, "expected JSON {'email': '<address>'}")
        task_id = await queue_of(request).aenqueue(
            f"Welcome email to {body.email}",
            "send_welcome_email",
            {"email": body.email},
            priority=TaskPriority.HIGH,
            # A double-submitted form does not send two emails while the
            # first is still queued or running.
            unique_key=f"welcome:{body.email}",
        )
        return {
            "task_id": task_id,
            "status_url": f"/tasks/{task_id}",
            "result_url": f"/tasks/{task_id}/result",
        }

    @app.get("/tasks/{task_id}")
    async def task_status(task_id: int, request: Request) -> dict[str, Any]:
        task = await queue_of(request).aget_task(task_id)
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        return task_json(task)

    @app.get("/tasks/{task_id}/result")
    async def task_result(task_id: int, request: Request, timeout: float = 10.0) -> Any:
        queue = queue_of(request)
        if not 0 <= timeout <= 60:
            raise HTTPException(400, "timeout must be between 0 and 60 seconds")
        if await queue.aget_task(task_id) is None:
            raise HTTPException(404, f"no task {task_id}")
        try:
            result = await queue.aresult(task_id, timeout=timeout)
        except TimeoutError:
            return JSONResponse({"status": "pending", "error": "not finished yet"}, 504)
        except TaskFailedError as exc:
            return JSONResponse({"status": "failed", "error": exc.message}, 500)
        except TaskCancelled as exc:
            return JSONResponse({"status": "cancelled", "error": str(exc)}, 409)
        return {"status": "completed", "result": result}

    @app.get("/stats")
    async def stats(request: Request) -> dict[str, int]:
        return await queue_of(request).aget_queue_stats()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="task_queue + FastAPI example")
    parser.add_argument("--db", help="queue file (default: a temporary one, removed at exit)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--no-worker", action="store_true", help="only enqueue (a Worker elsewhere)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="task-queue-fastapi-") as tmp:
        # Like every example: a temporary database unless told otherwise.
        db = args.db or os.path.join(tmp, "webapp.db")
        print(f"queue file: {db}", flush=True)
        app = create_app(db, run_worker=not args.no_worker)
        # uvicorn handles SIGINT/SIGTERM: the lifespan's exit drains the Worker.
        uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
