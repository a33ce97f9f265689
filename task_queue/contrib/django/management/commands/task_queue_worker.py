"""``manage.py task_queue_worker``: run a Worker for a TaskQueueBackend.

    manage.py task_queue_worker [--backend default] [--queue-name default]
                                [--concurrency 4] [--burst] [--drain-timeout 30]

It imports every installed app's ``tasks`` module (and OPTIONS["modules"])
so their Tasks register, then claims and runs those tasks from the queues
named (``--queue-name a,b``; ``*`` for every queue; by default the
``default`` queue, as django-tasks-db's ``db_worker`` does) until SIGINT or
SIGTERM: the first drains (running tasks may finish, up to
``--drain-timeout``, then go back to the queue unfinished, no retry used),
a second gives them back at once. ``--burst`` runs every task due now in
those queues and exits 0 once none is left (it does not wait for later
``run_after`` times or retry backoffs). ``--concurrency 1`` runs one task
at a time, claimed only when the thread is free: strict claim order
(priority, then due time, then enqueue order).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from .....checks import check_queue_name
from .....worker import Worker
from .....worker.burst import BurstCheck
from .....worker.signals import ShutdownSignals
from ... import execution, registry
from ...backend import TaskQueueBackend
from ...compat import DEFAULT_TASK_QUEUE_NAME, task_backends
from ...options import shown


class Command(BaseCommand):
    """The ``task_queue_worker`` management command."""

    help = "Run a task_queue Worker for Django tasks until SIGINT/SIGTERM (or, with --burst, idle)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The command's options (see the module docstring)."""
        parser.add_argument(
            "--backend", default="default", help="the TASKS alias to work for (default: default)"
        )
        parser.add_argument(
            "--queue-name",
            default=DEFAULT_TASK_QUEUE_NAME,
            help="queues to serve, comma-separated, or * for every queue (default: default)",
        )
        parser.add_argument(
            "--concurrency", type=int, default=4, help="threads running tasks (default 4)"
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="run every task due now, then exit 0 (later schedules and retries are not "
            "waited for)",
        )
        parser.add_argument(
            "--drain-timeout",
            type=float,
            default=30.0,
            help="seconds running tasks may take to finish at shutdown (default 30)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the worker (returns when it stopped)."""
        backend = self._backend(options["backend"])
        queues = self._queues(options["queue_name"], backend)
        concurrency = options["concurrency"]
        if concurrency < 1:
            raise CommandError(f"--concurrency must be >= 1, got {concurrency}")
        settings = backend.backend_options
        registry.discover(settings.modules)
        tasks = registry.registered()
        queue = backend.queue
        worker = Worker(
            queue,
            execution.handlers(tasks, queue.attempts),
            concurrency=concurrency,
            name=f"django-{backend.alias}",
            queues=queues,
            # One thread, nothing claimed ahead: each task is claimed when
            # the thread is free, so a later, higher-priority one goes first.
            prefetch=0 if concurrency == 1 else None,
            drain_timeout=options["drain_timeout"],
        )
        self.stdout.write(
            f"task_queue_worker: {worker.name} on {shown(queue.path)}, queues "
            f"{'*' if queues is None else ','.join(queues)}, {concurrency} thread(s), "
            f"{len(tasks)} task(s){', burst' if options['burst'] else ''}"
        )
        _run(worker, BurstCheck(worker, queue) if options["burst"] else None)
        self.stdout.write(
            f"task_queue_worker: {worker.name} stopped ({worker.processed} completed, "
            f"{worker.failed} failed attempts)"
        )

    def _backend(self, alias: str) -> TaskQueueBackend:
        try:
            backend = task_backends[alias]
        except Exception as exc:
            raise CommandError(f"no TASKS backend {alias!r}: {exc}") from exc
        if not isinstance(backend, TaskQueueBackend):
            raise CommandError(
                f"TASKS[{alias!r}] is {type(backend).__name__}, not a TaskQueueBackend"
            )
        return backend

    def _queues(self, spec: str, backend: TaskQueueBackend) -> list[str] | None:
        if spec.strip() == "*":
            return None
        names = [name.strip() for name in spec.split(",") if name.strip()]
        if not names:
            raise CommandError("--queue-name needs a queue name, a comma list, or *")
        for name in names:
            try:
                check_queue_name(name)
            except ValueError as exc:
                raise CommandError(f"--queue-name: {exc}") from None
            if backend.queues and name not in backend.queues:
                raise CommandError(
                    f"--queue-name: {name!r} is not in TASKS[{backend.alias!r}]['QUEUES'] "
                    f"{sorted(backend.queues)}"
                )
        return names


def _run(worker: Worker, until: Callable[[], bool] | None) -> None:
    """``worker.run()``, stopping early once ``until()`` is true."""
    if until is None:
        worker.run()
        return
    # What Worker.run(until=...) will do once it is in the core: SIGINT and
    # SIGTERM drain as run() does; until() is polled every poll interval.
    interval = min(0.2, max(0.01, worker.options.poll_interval))
    with ShutdownSignals(on_second=worker._force_stop) as signals:
        worker.start()
        try:
            while not signals.requested.wait(interval):
                if worker.join(0) or until():
                    break
        finally:
            worker.stop(worker.drain_timeout)
