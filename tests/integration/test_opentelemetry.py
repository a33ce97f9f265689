"""OpenTelemetry tracing (issue 11, section 3), with the SDK's in-memory
exporter: a PRODUCER span around enqueue, a CONSUMER span around each
attempt, continuing the enqueuing code's trace (the cross-process case is
in tests/processes/test_trace_across_processes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support import wait_until

from task_queue import PayloadError, RetryPolicy, TaskQueue, Worker, current_task
from task_queue.contrib.opentelemetry import META_KEY, TracingMiddleware, instrument


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def traced(db_path: str, provider: TracerProvider) -> Iterator[TaskQueue]:
    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0)) as queue:
        instrument(queue, provider)
        yield queue


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def run_all(queue: TaskQueue, handlers: dict[str, Any], ids: list[int]) -> None:
    with Worker(queue, handlers, concurrency=2):
        for task_id in ids:
            queue.wait(task_id, timeout=10)


def test_the_run_span_continues_the_trace_of_the_enqueuing_code(
    traced: TaskQueue, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        task_id = traced.enqueue("thumb", "resize", {"path": "cat.png"}, queue_name="images")
    stored = traced.get_task(task_id)
    assert stored is not None and stored.meta is not None

    def resize(payload: Any) -> str:
        with tracer.start_as_current_span("inside the handler"):
            return "ok"

    run_all(traced, {"resize": resize}, [task_id])
    wait_until(lambda: spans(exporter, "process images"))

    [send] = spans(exporter, "send images")
    [process] = spans(exporter, "process images")
    [inner] = spans(exporter, "inside the handler")
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    # send: a child of the caller's span; its context is stored with the task.
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert send.context.trace_id == request.get_span_context().trace_id
    traceparent = stored.meta[META_KEY]["traceparent"]
    assert f"{send.context.trace_id:032x}-{send.context.span_id:016x}" in traceparent
    assert dict(send.attributes or {}) == {
        "messaging.system": "task_queue",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "images",
        "messaging.message.id": str(task_id),
    }
    # process: a child of send (one trace) and linked to it.
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    attributes = dict(process.attributes or {})
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.operation.name"] == "process"
    assert attributes["messaging.destination.name"] == "images"
    assert attributes["messaging.message.id"] == str(task_id)
    assert attributes["messaging.task_queue.task.type"] == "resize"
    assert attributes["messaging.task_queue.task.attempt"] == 1
    assert ":Worker-" in str(attributes["messaging.client.id"])  # the worker_id
    assert process.status.status_code is StatusCode.UNSET
    # The handler's own spans nest under the process span.
    assert inner.parent is not None and inner.parent.span_id == process.context.span_id


def test_failed_attempts_record_the_exception_and_each_attempt_has_its_span(
    traced: TaskQueue, exporter: InMemorySpanExporter
) -> None:
    calls: list[int] = []

    def flaky(payload: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first attempt fails")
        return "ok"

    task_id = traced.enqueue("flaky", "flaky", max_retries=1)
    run_all(traced, {"flaky": flaky}, [task_id])
    wait_until(lambda: len(spans(exporter, "process default")) == 2)
    [send] = spans(exporter, "send default")
    first, second = sorted(
        spans(exporter, "process default"),
        key=lambda s: int(dict(s.attributes or {})["messaging.task_queue.task.attempt"]),  # type: ignore[arg-type]
    )
    for span in (first, second):
        assert span.parent is not None and span.parent.span_id == send.context.span_id
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ValueError: first attempt fails"
    assert dict(first.attributes or {})["error.type"] == "builtins.ValueError"
    [event] = first.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "ValueError"
    assert second.status.status_code is StatusCode.UNSET
    assert "error.type" not in dict(second.attributes or {})


def test_a_timeout_is_recorded_on_the_attempt_span(
    traced: TaskQueue, exporter: InMemorySpanExporter
) -> None:
    def spin(payload: Any) -> None:
        while True:
            ctx = current_task()
            assert ctx is not None
            ctx.check()

    task_id = traced.enqueue("spin", "spin", timeout=0.1, max_retries=0)
    run_all(traced, {"spin": spin}, [task_id])
    [process] = wait_until(lambda: spans(exporter, "process default"))
    assert process.status.status_code is StatusCode.ERROR
    assert dict(process.attributes or {})["error.type"] == "task_queue.errors.TaskTimeout"


def test_enqueue_many_is_one_send_span_for_the_batch(
    traced: TaskQueue, exporter: InMemorySpanExporter
) -> None:
    ids = traced.enqueue_many(
        [{"name": f"n{i}", "task_type": "t", "queue_name": q} for i, q in enumerate("aab")]
    )
    [send] = spans(exporter, "send")  # two queues: no destination in the name
    attributes = dict(send.attributes or {})
    assert attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in attributes
    assert "messaging.destination.name" not in attributes
    run_all(traced, {"t": lambda p: None}, ids)
    processed = wait_until(
        lambda: (
            (found := [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER])
            and len(found) == 3
            and found
        )
    )
    assert sorted(s.name for s in processed) == ["process a", "process a", "process b"]
    for span in processed:
        assert span.parent is not None and span.parent.span_id == send.context.span_id


def test_a_failed_enqueue_ends_its_span_in_error(
    traced: TaskQueue, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(PayloadError):
        traced.enqueue("bad", "t", {1, 2})
    [send] = spans(exporter, "send default")
    assert send.status.status_code is StatusCode.ERROR
    assert dict(send.attributes or {})["error.type"] == "task_queue.errors.PayloadError"
    assert traced.get_queue_stats()["pending"] == 0


def test_a_task_enqueued_without_tracing_gets_a_root_span(
    db_path: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with TaskQueue(db_path) as queue:
        task_id = queue.enqueue("untraced", "t")
        queue.add_hook(TracingMiddleware(provider))
        run_all(queue, {"t": lambda p: None}, [task_id])
    [process] = wait_until(lambda: spans(exporter, "process default"))
    assert process.parent is None and list(process.links) == []


def test_a_creation_context_given_by_the_caller_is_kept(
    traced: TaskQueue, exporter: InMemorySpanExporter
) -> None:
    theirs = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    task_id = traced.enqueue_many([{"name": "n", "task_type": "t", "meta": {META_KEY: theirs}}])[0]
    task = traced.get_task(task_id)
    assert task is not None and task.meta == {META_KEY: theirs}
    run_all(traced, {"t": lambda p: None}, [task_id])
    [process] = wait_until(lambda: spans(exporter, "process default"))
    assert f"{process.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert process.parent is not None and f"{process.parent.span_id:016x}" == "b7ad6b7169203331"


def test_outside_any_span_the_send_span_starts_the_trace(
    traced: TaskQueue, exporter: InMemorySpanExporter
) -> None:
    task_id = traced.enqueue("a", "t")
    [send] = spans(exporter, "send default")
    assert send.parent is None
    run_all(traced, {"t": lambda p: None}, [task_id])
    [process] = wait_until(lambda: spans(exporter, "process default"))
    assert process.context.trace_id == send.context.trace_id
