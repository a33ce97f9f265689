"""The W3C trace context of the enqueuing code travels with the task: a
worker in another process continues the trace (issue 11, section 3)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import procs, wait_until

from task_queue import TaskQueue
from task_queue.contrib.opentelemetry import instrument

pytestmark = pytest.mark.slow


def test_a_worker_in_another_process_continues_the_enqueuers_trace(
    db_path: str, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans_file = tmp_path / "spans.jsonl"
    with TaskQueue(db_path) as queue:
        instrument(queue, provider)
        with provider.get_tracer("app").start_as_current_span("request") as request:
            ok = queue.enqueue("ok", "traced", "ok")
            failing = queue.enqueue("fail", "traced", "fail", max_retries=0)
        worker = procs.start("traced_worker", db=db_path, spans=str(spans_file))
        try:
            queue.wait(ok, timeout=60)
            queue.wait(failing, timeout=60)

            def exported() -> list[dict[str, Any]]:
                if not spans_file.exists():
                    return []
                lines = spans_file.read_text().splitlines()
                return [json.loads(line) for line in lines]

            remote = wait_until(lambda: len(exported()) == 2 and exported(), timeout=30)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
    provider.shutdown()

    trace_id = f"{request.get_span_context().trace_id:032x}"
    sends = {
        dict(s.attributes or {})["messaging.message.id"]: s
        for s in exporter.get_finished_spans()
        if s.name == "send default"
    }
    by_task = {span["attributes"]["messaging.message.id"]: span for span in remote}
    assert set(by_task) == set(sends) == {str(ok), str(failing)}
    for task_id, span in by_task.items():
        send = sends[task_id]
        send_id = f"{send.context.span_id:016x}"
        assert span["name"] == "process default" and span["kind"] == "CONSUMER"
        assert span["trace_id"] == trace_id  # the enqueuing code's trace, continued
        assert span["parent_id"] == send_id
        assert span["links"] == [[trace_id, send_id]]
    assert by_task[str(ok)]["status"] == "UNSET"
    assert by_task[str(failing)]["status"] == "ERROR"
    assert by_task[str(failing)]["events"] == ["exception"]
    assert by_task[str(failing)]["attributes"]["error.type"] == "builtins.ValueError"
