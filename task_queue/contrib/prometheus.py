"""Prometheus metrics for a queue: counters and histograms from events, and
gauges read from the database on each scrape (``task_queue[prometheus]``).

    from task_queue.contrib import prometheus

    prometheus.install(queue)      # the middleware and the collector, default registry
    prometheus.serve(9100)         # GET http://host:9100/metrics

What this process did (counters and histograms, from the events of its
queue and Workers, labelled ``task_type`` and ``queue``):

=======================================  ======================================
``task_queue_tasks_enqueued_total``      new tasks committed (unique_key hits
                                         and dependents are not new)
``task_queue_tasks_started_total``       attempts a Worker started
``task_queue_tasks_finished_total``      attempts finished, by ``outcome``:
                                         ``completed``, ``retried`` (failed,
                                         to run again), ``failed`` (for good),
                                         ``timed_out`` (failed with
                                         TaskTimeout, retried or not: counted
                                         here *instead* of retried/failed),
                                         ``cancelled`` (cancelled while it ran)
``task_queue_tasks_rescued_total``       lost claims this process rescued (their
                                         worker died or stalled past its lease)
``task_queue_task_duration_seconds``     how long handlers ran (attempts whose
                                         outcome committed)
``task_queue_task_wait_seconds``         from due (``run_at``) to started
=======================================  ======================================

Each attempt a Worker starts is counted once in ``finished`` when its
outcome commits; attempts not counted are those still running, those given
back at shutdown (pending again, no retry used), those whose claim was lost
to a rescue (the rescuer counts ``rescued``) and a completion fenced out
because the claim went meanwhile. A completion or failure recorded by hand
(``complete_task``/``fail_task``) is counted too, without a duration.

What the file holds (gauges, read on each scrape, the same from every
process on the file; cheap at any size: the counts the schema keeps, the
pauses table and one index seek):

=======================================  ======================================
``task_queue_tasks``                     tasks per ``status`` and ``queue``
``task_queue_oldest_due_age_seconds``    how long the longest-waiting due
                                         pending task has waited (0: none;
                                         paused queues included)
``task_queue_queue_paused``              1 for a paused ``queue``, else 0
=======================================  ======================================

Several processes: each serves its own counters on its own port; scrape
every one, and sum the counters over them (``sum without (instance)
(rate(task_queue_tasks_finished_total[5m]))``); the gauges are the same
everywhere, so take one (``max without (instance) (task_queue_tasks)``)
rather than a sum. README "Metrics (Prometheus)" says more.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..errors import StorageError, TaskTimeout
from ..events import Event, EventKind, Middleware
from ..queue import TaskQueue

LOGGER = logging.getLogger(__name__)

#: Histogram buckets (seconds): from 5 ms to an hour.
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0, float("inf"),
)  # fmt: skip

#: The outcomes of ``task_queue_tasks_finished_total``.
OUTCOMES = ("completed", "failed", "retried", "cancelled", "timed_out")

_TIMEOUT = f"{TaskTimeout.__module__}.{TaskTimeout.__qualname__}"
_LABELS = ("task_type", "queue")


class PrometheusMiddleware(Middleware):
    """Counters and histograms of what a queue and its Workers do in this
    process, updated from events (add it with ``queue.add_hook``, or use
    :func:`install`). One per registry (``registry``: default the
    prometheus_client default registry); to observe several TaskQueue
    objects of one process, add the same middleware to each."""

    def __init__(
        self, registry: CollectorRegistry | None = None, buckets: Sequence[float] = BUCKETS
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self.enqueued = Counter(
            "task_queue_tasks_enqueued_total", "New tasks committed.", _LABELS, registry=registry
        )
        self.started = Counter(
            "task_queue_tasks_started_total", "Attempts a Worker started.", _LABELS,
            registry=registry,
        )  # fmt: skip
        self.finished = Counter(
            "task_queue_tasks_finished_total",
            "Attempts finished, by outcome: completed, retried, failed (for good), "
            "timed_out (instead of retried or failed), cancelled (while running).",
            (*_LABELS, "outcome"), registry=registry,
        )  # fmt: skip
        self.rescued = Counter(
            "task_queue_tasks_rescued_total",
            "Lost claims rescued by this process (their worker died or stalled).",
            _LABELS, registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "task_queue_task_duration_seconds", "Seconds handlers ran.", _LABELS,
            buckets=buckets, registry=registry,
        )  # fmt: skip
        self.wait = Histogram(
            "task_queue_task_wait_seconds", "Seconds from due (run_at) to started.", _LABELS,
            buckets=buckets, registry=registry,
        )  # fmt: skip

    def on_event(self, event: Event) -> None:
        """Count ``event`` (called by the queue's hooks, in the emitting thread)."""
        kind = event.kind
        if kind is EventKind.ENQUEUED:
            if event.spec is not None:
                self.enqueued.labels(event.spec.task_type, event.spec.queue_name).inc()
            return
        task = event.task
        if task is None:
            return
        labels = (task.task_type, task.queue_name)
        if kind is EventKind.STARTED:
            self.started.labels(*labels).inc()
            self.wait.labels(*labels).observe(max(0.0, event.at - task.run_at))
        elif kind is EventKind.COMPLETED:
            self._finished(labels, "completed", event.duration)
        elif kind is EventKind.RETRY_SCHEDULED:
            timed_out = event.error_class == _TIMEOUT
            self._finished(labels, "timed_out" if timed_out else "retried", event.duration)
        elif kind is EventKind.DEAD_LETTERED:
            timed_out = event.error_class == _TIMEOUT
            self._finished(labels, "timed_out" if timed_out else "failed", event.duration)
        elif kind is EventKind.LEASE_LOST:
            if event.status == "cancelled":  # a running attempt whose task was cancelled
                self._finished(labels, "cancelled", None)
        elif kind is EventKind.RESCUED:
            self.rescued.labels(*labels).inc()

    def _finished(self, labels: tuple[str, str], outcome: str, duration: float | None) -> None:
        self.finished.labels(*labels, outcome).inc()
        if duration is not None:
            self.duration.labels(*labels).observe(duration)


class QueueCollector:
    """Gauges read from the queue's database at each scrape: the same from
    every process on the file. Register it in a registry
    (``registry.register(QueueCollector(queue))``, or :func:`install`).

    A read that fails (the database busy past its timeout, the queue
    closed) is logged and leaves the gauges out of that scrape."""

    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue

    def describe(self) -> Iterable[Metric]:
        """The gauges, without values: a registry calls this when the
        collector is registered, instead of reading the database."""
        return list(_gauges())

    def collect(self) -> Iterable[Metric]:
        """Read the gauges (called by the registry at each scrape)."""
        queue = self.queue
        try:
            stats = queue.queue_stats()
            paused = queue.paused()
            oldest = queue.oldest_due()
        except StorageError as exc:
            LOGGER.warning("reading the queue gauges failed: %s", exc)
            return []
        tasks, age, paused_gauge = _gauges()
        for name, counts in stats.items():
            for status, n in counts.items():
                tasks.add_metric([status, name], n)
            paused_gauge.add_metric([name], 1.0 if name in paused else 0.0)
        age.add_metric([], 0.0 if oldest is None else max(0.0, queue.clock.time() - oldest))
        return [tasks, age, paused_gauge]


def _gauges() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "task_queue_tasks", "Tasks per status and queue, as stored.",
            labels=["status", "queue"],
        ),
        GaugeMetricFamily(
            "task_queue_oldest_due_age_seconds",
            "Seconds the longest-waiting due pending task has waited (0: none waits).",
            labels=[],
        ),
        GaugeMetricFamily(
            "task_queue_queue_paused", "1 if the queue is paused, else 0.", labels=["queue"]
        ),
    )  # fmt: skip


def install(
    queue: TaskQueue, registry: CollectorRegistry | None = None
) -> tuple[PrometheusMiddleware, QueueCollector]:
    """Add a :class:`PrometheusMiddleware` to ``queue`` and register a
    :class:`QueueCollector` for it in ``registry`` (default: the
    prometheus_client default registry); returns both."""
    registry = REGISTRY if registry is None else registry
    middleware = PrometheusMiddleware(registry)
    collector = QueueCollector(queue)
    registry.register(collector)
    queue.add_hook(middleware)
    return middleware, collector


def serve(
    port: int, registry: CollectorRegistry | None = None, addr: str = "0.0.0.0"
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``registry`` (default: the default registry) at
    ``http://addr:port/metrics`` from a daemon thread (prometheus_client's
    ``start_http_server``); port 0 picks a free one (``server.server_port``).
    Returns the server (``shutdown()`` stops it) and its thread."""
    return start_http_server(port, addr=addr, registry=REGISTRY if registry is None else registry)


__all__ = ["BUCKETS", "OUTCOMES", "PrometheusMiddleware", "QueueCollector", "install", "serve"]
