"""Entry points for the tests' worker and producer processes.

Run as a script, never imported into a forked child: ``python tests/support/procs.py
<command> '<json arguments>'``. Each process opens its own TaskQueue, as a
real deployment does. Tests start these with :func:`start` (subprocess, so
nothing of the test process, its threads or its open queues is inherited).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def start(command: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``command`` of this module in a fresh Python process."""
    return subprocess.Popen(
        [sys.executable, str(HERE), command, json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _append(path: str, line: str) -> None:
    # One write() of a whole line on an O_APPEND descriptor: lines from
    # several threads never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def pool(
    db: str,
    out: str,
    expect: int,
    concurrency: int = 4,
    lease: float = 30.0,
    peers: list[str] | None = None,
) -> None:
    """A Worker pool that logs every execution to ``out`` ("<pid> <task id>").
    Writes ``out``.ready once working; stops once ``expect`` tasks are finished.

    With ``peers`` (the ``out`` files of all pools in the race), an execution
    goes on only once two processes have logged one: on a loaded machine one
    pool once took all 600 tasks before the others were scheduled, leaving
    nothing to race for. Holding its first tasks unfinished also keeps its
    claims at ``concurrency`` (no durations yet, so no prefetch): the rest
    stay for the others to claim."""
    from task_queue import TaskQueue, Worker, current_task

    pid = os.getpid()
    raced = threading.Event()

    def two_have_run() -> bool:
        pids = {
            line.split()[0]
            for path in peers or ()
            if os.path.exists(path)
            for line in Path(path).read_text().splitlines(keepends=True)
            if line.endswith("\n")  # a whole line: never a pid cut short
        }
        return len(pids) >= 2

    def wait_for_a_rival() -> None:
        if not raced.is_set():
            # tests/support/wait.py: this runs as a script from that directory.
            from wait import wait_until  # type: ignore[import-not-found]

            wait_until(two_have_run, timeout=60)
            raced.set()

    def count(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        _append(out, f"{pid} {ctx.task.id}")
        if peers:
            wait_for_a_rival()
        time.sleep(0.001)  # a little work, so the processes share the load
        return {"pid": pid}

    with TaskQueue(db, lease_seconds=lease) as queue:
        worker = Worker(queue, {"count": count}, concurrency=concurrency, poll_interval=0.02)
        worker.start()
        Path(out + ".ready").touch()
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                stats = queue.get_queue_stats()
                if stats["completed"] + stats["failed"] >= expect:
                    break
                time.sleep(0.02)
        finally:
            worker.stop(10)


def hang(db: str, markers: str, lease: float) -> None:
    """A worker whose "hang" handler writes ``markers``/started-<id> and then
    blocks until cancelled. Runs until killed."""
    from task_queue import TaskQueue, Worker, current_task

    def hang_handler(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        Path(markers, f"started-{ctx.task.id}").write_text(str(os.getpid()))
        ctx.wait(600)
        return "hang finished"

    queue = TaskQueue(db, lease_seconds=lease)
    Worker(queue, {"hang": hang_handler}, concurrency=1, prefetch=0).run()


def run_worker(db: str, log: str, concurrency: int, drain_timeout: float, duration: float) -> None:
    """``Worker.run()`` in the main thread, as a service would; ``work``
    tasks log "start <id>", take ``duration`` seconds (cut short only by a
    cancellation) and log "done <id>"."""
    from task_queue import TaskQueue, Worker, current_task

    logging.basicConfig(
        level=logging.INFO,
        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(log + ".log")],
    )

    def work(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        _append(log, f"start {ctx.task.id}")
        cancelled = ctx.wait(duration)
        _append(log, f"{'cancelled' if cancelled else 'done'} {ctx.task.id}")
        return {"task": ctx.task.id}

    with TaskQueue(db) as queue:
        worker = Worker(queue, {"work": work}, concurrency=concurrency, drain_timeout=drain_timeout)
        _append(log, "ready")
        worker.run()
    _append(log, "exited")


def enqueue(db: str, task_type: str, n: int) -> None:
    """Enqueue ``n`` tasks and print their ids as JSON."""
    from task_queue import TaskQueue

    with TaskQueue(db) as queue:
        ids = [queue.enqueue(f"{task_type} {i}", task_type, {"i": i}) for i in range(n)]
    print(json.dumps(ids))


def metrics_worker(db: str, port_file: str, n: int, queue_name: str, task_type: str) -> None:
    """Enqueue ``n`` tasks of ``task_type`` in ``queue_name``, serve this
    process's Prometheus metrics on a free port (written to ``port_file``)
    and run a Worker for them until SIGTERM."""
    from prometheus_client import CollectorRegistry

    from task_queue import TaskQueue, Worker
    from task_queue.contrib import prometheus

    with TaskQueue(db) as queue:
        registry = CollectorRegistry()
        prometheus.install(queue, registry)
        server, _ = prometheus.serve(0, registry, addr="127.0.0.1")
        queue.enqueue_many(
            [{"name": f"{task_type}-{i}", "task_type": task_type, "queue_name": queue_name}
             for i in range(n)]
        )  # fmt: skip
        worker = Worker(queue, {task_type: lambda p: None}, concurrency=2, queues=[queue_name])
        Path(port_file + ".tmp").write_text(str(server.server_port))
        os.replace(port_file + ".tmp", port_file)
        worker.run()  # until SIGTERM
        server.shutdown()
        server.server_close()


def traced_worker(db: str, spans: str) -> None:
    """A Worker for "traced" tasks with tracing on, exporting each finished
    span as one JSON line to ``spans``; writes ``spans``.ready once working,
    runs until SIGTERM."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from task_queue import TaskQueue, Worker
    from task_queue.contrib.opentelemetry import instrument

    class JsonLines(SpanExporter):
        def export(self, batch: Any) -> SpanExportResult:
            for span in batch:
                assert isinstance(span, ReadableSpan) and span.context is not None
                _append(spans, json.dumps({
                    "name": span.name, "kind": span.kind.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}",
                    "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
                    "links": [[f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}"]
                              for link in span.links],
                    "attributes": dict(span.attributes or {}),
                    "status": span.status.status_code.name,
                    "events": [event.name for event in span.events],
                }))  # fmt: skip
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))

    def traced(payload: Any) -> Any:
        if payload == "fail":
            raise ValueError("failed in the worker process")
        return os.getpid()

    with TaskQueue(db) as queue:
        instrument(queue, provider)
        worker = Worker(queue, {"traced": traced}, concurrency=1, poll_interval=0.02)
        Path(spans + ".ready").touch()
        worker.run()  # until SIGTERM
    provider.shutdown()


COMMANDS = {
    "pool": pool, "hang": hang, "run_worker": run_worker, "enqueue": enqueue,
    "metrics_worker": metrics_worker, "traced_worker": traced_worker,
}  # fmt: skip

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](**json.loads(sys.argv[2]))
