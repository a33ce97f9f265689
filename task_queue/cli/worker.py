"""``task-queue worker``: import the handlers, run a Worker until a signal
(or, with ``--burst``, until nothing is left to do), log what happens.

Logging is configured here, by the command, never by the library (which
only logs to the ``task_queue`` logger, with a NullHandler).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..events import Event, EventKind
from ..queue import TaskQueue
from ..registry import TASK_HANDLERS, HandlerRegistry
from ..worker import Worker, WorkerOptions
from ..worker.burst import BurstCheck
from .common import CliError, busy_timeout, db_path, shown
from .format import clean, elapsed

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

LOGGER = logging.getLogger(__name__)

#: What each outcome event is called in the log.
OUTCOMES = {
    EventKind.COMPLETED: "completed",
    EventKind.RETRY_SCHEDULED: "failed",
    EventKind.DEAD_LETTERED: "failed for good",
    EventKind.RELEASED: "given back",
    EventKind.LEASE_LOST: "lost its claim (cancelled or rescued)",
    EventKind.RESCUED: "rescued from a worker that stopped renewing its claim",
}


def run(args: argparse.Namespace) -> int:
    """The ``worker`` command."""
    configure_logging(args.log_level, args.log_format)
    handlers, sources = load_handlers(args.modules)
    options = WorkerOptions(
        concurrency=args.concurrency, async_concurrency=args.async_concurrency,
        queues=args.queues, drain_timeout=args.drain_timeout,
        poll_interval=args.poll_interval, prefetch=args.prefetch, name=args.name,
    )  # fmt: skip
    path = db_path(args)
    outcomes = OutcomeLog()
    with TaskQueue(path, busy_timeout=busy_timeout(args, None), hooks=[outcomes]) as queue:
        worker = Worker(queue, handlers, options=options)
        LOGGER.info(
            "worker %s starting: db %s, queues %s, concurrency %d, handlers %s (from %s)%s",
            worker.name, shown(path), "all" if options.queues is None else ",".join(options.queues),
            options.concurrency, ",".join(sorted(handlers)), ", ".join(sources),
            ", burst" if args.burst else "",
            extra={
                "event": "worker_started", "db": shown(path), "queues": options.queues,
                "concurrency": options.concurrency, "handlers": sorted(handlers),
                "pid": os.getpid(), "burst": args.burst,
            },
        )  # fmt: skip
        metrics = None if args.metrics_port is None else serve_metrics(queue, args)
        try:
            worker.run(until=BurstCheck(worker, queue) if args.burst else None)
        finally:
            if metrics is not None:
                metrics.shutdown()
                metrics.server_close()
        LOGGER.info(
            "worker %s stopped: %d completed, %d failed attempts",
            worker.name, worker.processed, worker.failed,
            extra={"event": "worker_stopped", "completed": worker.processed,
                   "failed": worker.failed},
        )  # fmt: skip
    return 0


def serve_metrics(queue: TaskQueue, args: argparse.Namespace) -> WSGIServer:
    """``--metrics-port``: this process's Prometheus metrics and the queue's
    gauges (task_queue.contrib.prometheus, default registry), served from a
    daemon thread; returns the server."""
    try:
        from ..contrib import prometheus
    except ImportError:
        raise CliError(
            "--metrics-port needs prometheus-client: pip install 'task_queue[prometheus]'"
        ) from None
    try:
        server, _ = prometheus.serve(args.metrics_port, addr=args.metrics_addr)
    except (OSError, ValueError) as exc:  # in use, a bad address...
        reason = getattr(exc, "strerror", None) or exc
        raise CliError(
            f"cannot serve metrics on {clean(args.metrics_addr)}:{args.metrics_port}: {reason}"
        ) from None
    prometheus.install(queue)
    port = server.server_port
    LOGGER.info(
        "metrics at http://%s:%d/metrics", args.metrics_addr, port,
        extra={"event": "metrics_serving", "addr": args.metrics_addr, "port": port},
    )  # fmt: skip
    return server


def load_handlers(specs: Sequence[str]) -> tuple[HandlerRegistry, list[str]]:
    """Import each ``pkg.mod`` (its handlers fill TASK_HANDLERS) or
    ``pkg.mod:name`` (``name`` is a HandlerRegistry); the one registry they
    make, and where it came from. Several registries are merged (the same
    type in two of them is refused)."""
    # `python -m` puts the current directory first on the path, the console
    # script does not: `task-queue worker tasks` should find ./tasks.py too.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    registries: dict[int, tuple[HandlerRegistry, str]] = {}
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        module = _import(spec, module_name)
        if not attr:
            registries.setdefault(id(TASK_HANDLERS), (TASK_HANDLERS, "TASK_HANDLERS"))
            continue
        found: Any = module
        for part in attr.split("."):
            if not hasattr(found, part):
                raise CliError(f"cannot use {clean(spec)}: {module_name} has no attribute {attr}")
            found = getattr(found, part)
        if not isinstance(found, HandlerRegistry):
            raise CliError(
                f"cannot use {clean(spec)}: it is a {type(found).__name__}, not a HandlerRegistry"
            )
        registries.setdefault(id(found), (found, spec))
    chosen = list(registries.values())
    registry = chosen[0][0] if len(chosen) == 1 else _merge(chosen)
    if not registry:
        names = " and ".join(name for _, name in chosen)
        raise CliError(f"no handlers: {', '.join(map(clean, specs))} registered none in {names}")
    return registry, [name for _, name in chosen]


def _import(spec: str, module_name: str) -> Any:
    if not module_name:
        raise CliError(f"cannot import {clean(spec)}: no module name", 2)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {clean(module_name)}: {exc}") from None
    except Exception as exc:  # the module's own code failed while importing
        raise CliError(f"cannot import {clean(module_name)}: {type(exc).__name__}: {exc}") from None


def _merge(chosen: list[tuple[HandlerRegistry, str]]) -> HandlerRegistry:
    merged = HandlerRegistry()
    origin: dict[str, str] = {}
    for registry, name in chosen:
        for task_type, fn in registry.items():
            if task_type in origin and merged[task_type] is not fn:
                raise CliError(
                    f"task type {clean(task_type)} has handlers in both {origin[task_type]} "
                    f"and {name}"
                )
        try:
            merged.merge(registry)  # options, limits and schedules along
        except ValueError as exc:
            raise CliError(f"cannot use {name} with the others: {clean(str(exc))}") from None
        origin.update(dict.fromkeys(registry, name))
    return merged


class OutcomeLog:
    """A queue hook: one INFO line per task outcome (id, type, outcome,
    duration), with the same as ``extra`` fields for JSON logs (and the
    task's queue and attempt, as the library's own lines have them)."""

    def __call__(self, event: Event) -> None:
        """Log ``event`` if it is an outcome."""
        outcome = OUTCOMES.get(event.kind)
        if outcome is None:
            return
        task = event.task
        task_type = None if task is None else task.task_type
        parts = [f"task {event.task_id}"]
        if task_type is not None:
            parts.append(f"({clean(task_type)})")
        parts.append(outcome)
        if event.kind is EventKind.RESCUED and event.status:
            parts.append(f"({event.status} now)")
        if event.duration is not None:
            word = "in" if event.kind is EventKind.COMPLETED else "after"
            parts.append(f"{word} {elapsed(event.duration)}")
        if event.retry_at is not None:
            parts[-1] += ","
            parts.append(f"retry at {_local(event.retry_at)}")
        if event.error:
            parts.append(f"- {clean(event.error)}")
        LOGGER.info(
            " ".join(parts),
            extra={
                "event": "task_" + event.kind.value, "task_id": event.task_id,
                "task_type": task_type, "outcome": event.kind.value,
                "duration": event.duration, "error": event.error, "retry_at": event.retry_at,
                "queue": None if task is None else task.queue_name,
                "attempt": None if task is None else task.attempts,
            },
        )  # fmt: skip


# -- logging -------------------------------------------------------------------

#: Attributes every LogRecord has; anything else came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}  # fmt: skip


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (local ISO-8601), level, logger,
    message, and every ``extra`` field of the record."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line of JSON."""
        created = dt.datetime.fromtimestamp(record.created).astimezone()
        doc: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=True)


class LibraryLines(logging.Filter):
    """Above DEBUG, passes the library's warnings and errors, and of its
    INFO lines only those saying a signal arrived: the others (a worker
    started or stopped, a task completed) would repeat in the library's
    words the lines this command logs itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True to show ``record``."""
        if record.levelno >= logging.WARNING or not record.name.startswith("task_queue."):
            return True
        if record.name == __name__:
            return True
        return "received signal" in str(record.msg)


def configure_logging(level: str, fmt: str) -> None:
    """Log to stderr at ``level`` (from the library, this command and the
    handlers' own loggers), as text or JSON lines."""
    number = logging.getLevelName(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if number > logging.DEBUG:
        handler.addFilter(LibraryLines())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(number)


def _local(when: float) -> str:
    return dt.datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")
