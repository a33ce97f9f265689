"""OpenTelemetry tracing for a queue (``task_queue[opentelemetry]``):
a PRODUCER span around each enqueue and a CONSUMER span around each
attempt, per OpenTelemetry's messaging semantic conventions, with the W3C
trace context of the enqueuing code stored in the task and continued by
whichever worker runs it, in this process or another.

    from task_queue.contrib.opentelemetry import instrument

    instrument(queue)   # in the process that enqueues and in the workers' ones

What it records:

* ``send <queue>`` (PRODUCER) around ``enqueue()``/``enqueue_many()``:
  a child of the caller's current span; the commit and the enqueued events
  happen inside it. Its context is what each task carries (``meta["otel"]``,
  the W3C ``traceparent``/``tracestate`` and baggage of the global
  propagator), unless the caller put a creation context of its own there.
  ``messaging.message.id`` is the task id, once committed (one task per
  call); a batch has ``messaging.batch.message_count`` instead. A call that
  fails (PayloadError, storage error) ends the span with status ERROR.
* ``process <queue>`` (CONSUMER) around each attempt of a handler, in the
  executor thread (current while the handler runs, so its own spans nest
  under it): a **child** of the task's creation context, so the enqueue and
  every attempt form one trace, and it also carries a **link** to that
  context, as the conventions ask of process spans (a backend that follows
  links rather than parents finds it too). Each attempt of a retried task
  is its own span under the same ``send``. An attempt that raises records
  the exception and ends with status ERROR and ``error.type``.

Attributes: ``messaging.system`` ("task_queue"), ``messaging.operation.type``
and ``messaging.operation.name`` ("send" / "process"),
``messaging.destination.name`` (the queue name), ``messaging.message.id``;
on process spans also ``messaging.client.id`` (the worker id) and the
system's own ``messaging.task_queue.task.type`` and
``messaging.task_queue.task.attempt``.

Only the API is needed here; the application configures the SDK (a
TracerProvider, its exporters) as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from .. import __version__
from ..events import Middleware
from ..queue import TaskQueue
from ..task import Task

if TYPE_CHECKING:
    from ..spec import TaskSpec

#: The key of ``task.meta`` holding the propagated context (a carrier dict).
META_KEY = "otel"
#: ``messaging.system``.
SYSTEM = "task_queue"


class TracingMiddleware(Middleware):
    """Spans around enqueues and attempts (see the module docstring). Add
    it with ``queue.add_hook(TracingMiddleware())`` or :func:`instrument`.

    tracer_provider: where the spans go (default: the global one, as set
        by ``opentelemetry.trace.set_tracer_provider``, even later).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(__name__, __version__, tracer_provider=tracer_provider)

    # -- the producer ------------------------------------------------------------
    def around_enqueue(
        self, specs: Sequence[TaskSpec], enqueue: Callable[[], list[int]]
    ) -> list[int]:
        """A PRODUCER span around one enqueue call (current inside it)."""
        queues = {spec.queue_name for spec in specs}
        destination = next(iter(queues)) if len(queues) == 1 else None
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        if destination is not None:
            attributes["messaging.destination.name"] = destination
        if len(specs) != 1:
            attributes["messaging.batch.message_count"] = len(specs)
        with self._tracer.start_as_current_span(
            "send" if destination is None else f"send {destination}",
            kind=SpanKind.PRODUCER, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            try:
                ids = enqueue()
            except BaseException as exc:
                _record_error(span, exc)
                raise
            if len(ids) == 1:
                span.set_attribute("messaging.message.id", str(ids[0]))
            return ids

    def before_enqueue(self, spec: TaskSpec) -> Mapping[str, Any] | None:
        """The current context (the send span) as the task's creation context."""
        if spec.meta is not None and META_KEY in spec.meta:
            return None  # the caller's own creation context: kept as it is
        carrier: dict[str, str] = {}
        inject(carrier)
        return {META_KEY: carrier} if carrier else None

    # -- the consumer ------------------------------------------------------------
    def run_attempt(self, task: Task, run: Callable[[], Any]) -> Any:
        """A CONSUMER span around one attempt, continuing the task's trace."""
        carrier = (task.meta or {}).get(META_KEY)
        # From an empty context: the parent is the task's creation context
        # (or none: a root span), never whatever this thread had.
        parent = extract(carrier, context=Context()) if isinstance(carrier, dict) else Context()
        creation = trace.get_current_span(parent).get_span_context()
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": task.queue_name,
            "messaging.message.id": str(task.id),
            "messaging.task_queue.task.type": task.task_type,
            "messaging.task_queue.task.attempt": task.attempts,
        }
        if task.worker_id is not None:
            attributes["messaging.client.id"] = task.worker_id
        with self._tracer.start_as_current_span(
            f"process {task.queue_name}", context=parent, kind=SpanKind.CONSUMER,
            attributes=attributes, links=[Link(creation)] if creation.is_valid else None,
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            try:
                return run()
            except BaseException as exc:
                _record_error(span, exc)
                raise


def _record_error(span: trace.Span, exc: BaseException) -> None:
    kind = type(exc)
    try:
        message = f"{kind.__name__}: {exc}"
    except Exception:  # a hostile __str__
        message = kind.__name__
    with contextlib.suppress(Exception):  # the same hostile __str__, in the SDK
        span.record_exception(exc)
    span.set_attribute("error.type", f"{kind.__module__}.{kind.__qualname__}")
    span.set_status(Status(StatusCode.ERROR, message))


def instrument(
    queue: TaskQueue, tracer_provider: trace.TracerProvider | None = None
) -> TracingMiddleware:
    """Add a :class:`TracingMiddleware` to ``queue`` (and so to its
    Workers); returns it (``queue.remove_hook(it)`` undoes this)."""
    middleware = TracingMiddleware(tracer_provider)
    queue.add_hook(middleware)
    return middleware


__all__ = ["META_KEY", "SYSTEM", "TracingMiddleware", "instrument"]
