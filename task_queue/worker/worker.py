"""Worker: a pool of threads that claim tasks and run their handlers.

The threads of one Worker, each a small role around the in-flight ledger
(:mod:`.ledger`, the only shared state):

* executors (``concurrency`` of them) run handlers, one task at a time,
  and decide each outcome (:mod:`.executor`, :mod:`.runner`);
* the dispatcher claims tasks in batches for idle executors, renews leases
  and runs the maintenance services: rescue of expired leases, the report
  of task types nobody handles (:mod:`.dispatcher`);
* the timekeeper enforces timeouts (:mod:`.timekeeper`);
* the recorder writes outcomes, many per transaction (:mod:`.recorder`).

No outcome is reported to anyone before it is committed.

Shutdown order (``stop(timeout)``), and why:

1. stop taking tasks from the buffer, and remove the wake-up listener, so
   nothing new starts;
2. give back the buffered tasks nobody started: they go back to pending at
   once, without using a retry, for other workers to take;
3. wait up to ``timeout`` for running handlers (the dispatcher keeps their
   leases renewed meanwhile, and claims nothing);
4. give back what still runs (pending again, no retry used) and flag its
   handlers cancelled, so nothing is left "running" in the database; their
   late results are discarded;
5. wait for queued outcomes to commit (at least a few seconds, so that a
   storage fault that does not clear cannot hang stop() forever), still
   renewing their leases;
6. stop the dispatcher and the timekeeper, then join the executors.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..checks import check_queue_names
from ..errors import NotAQueueDatabaseError, QueueClosedError, ReadOnlyDatabaseError, StorageError
from ..maintenance import RescueService, UnhandledReport
from ..periodic import PeriodicService
from ..queue import TaskQueue
from ..registry import TASK_HANDLERS, HandlerRegistry
from ..task import WorkerInfo
from .dispatcher import Dispatcher
from .executor import Executors
from .ledger import InFlight
from .options import WorkerOptions
from .recorder import Recorder, give_back
from .runner import ThreadRunner
from .signals import ShutdownSignals
from .timekeeper import Timekeeper

LOGGER = logging.getLogger(__name__)

# stop(timeout) gives queued outcomes at least this long to commit.
MIN_FLUSH = 5.0
_names = itertools.count(1)


class _WorkSignal:
    """Registered with the TaskQueue: an in-process enqueue wakes the dispatcher."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def set(self) -> None:
        self._dispatcher.hint()


class Worker:
    """Runs handlers for tasks of ``queue`` in ``concurrency`` threads.

    queue: the TaskQueue to work for.
    handlers: a HandlerRegistry, or a mapping of task type to function
        (default: the global ``TASK_HANDLERS``). Only the types it has
        handlers for are claimed.
    concurrency: threads running handlers.
    name: for thread names and logs (default "Worker-<n>").
    poll_interval: seconds between checks for tasks enqueued by other
        processes (a cheap change check; in-process enqueues wake at once).
    prefetch: tasks claimed ahead of a free thread (default: adapted to
        how long tasks take; 0 for strict priority order across workers).
    heartbeat_interval: seconds between lease renewals (default lease / 3).
    rescue_interval: seconds between rescues of other workers' expired
        tasks (default lease / 4, from 0.05 to 5).
    drain_timeout: seconds run() and ``with Worker(...)`` wait for running
        tasks at shutdown (None: as long as they take).
    timeout_grace: seconds a timed-out handler gets to stop before its
        thread is abandoned and replaced.
    idle_report_interval: seconds between reports, while idle, of due
        tasks this worker has no handler for.
    queues: the named queues it claims from (None: every queue). Several
        Workers with different queues (in one process or several) give
        slow work a pool of its own; priorities order claims within the
        queues a Worker serves.
    options: all of the above as one :class:`WorkerOptions` (instead of
        the keywords).
    """

    def __init__(
        self,
        queue: TaskQueue,
        handlers: HandlerRegistry | Mapping[str, Callable[[Any], Any]] | None = None,
        concurrency: int = 4,
        name: str | None = None,
        *,
        poll_interval: float = 0.05,
        prefetch: int | None = None,
        heartbeat_interval: float | None = None,
        rescue_interval: float | None = None,
        drain_timeout: float | None = 30.0,
        timeout_grace: float = 5.0,
        idle_report_interval: float = 60.0,
        queues: Sequence[str] | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        if isinstance(concurrency, WorkerOptions):
            raise TypeError("pass WorkerOptions by keyword: Worker(queue, handlers, options=...)")
        if options is None:
            options = WorkerOptions(
                concurrency=concurrency, name=name, poll_interval=poll_interval,
                prefetch=prefetch, heartbeat_interval=heartbeat_interval,
                rescue_interval=rescue_interval, drain_timeout=drain_timeout,
                timeout_grace=timeout_grace, idle_report_interval=idle_report_interval,
                queues=None if queues is None else tuple(check_queue_names(queues) or ()),
            )  # fmt: skip
        if not isinstance(queue, TaskQueue):
            raise TypeError(f"queue must be a TaskQueue, got {type(queue).__name__}")
        #: Everything this worker was configured with.
        self.options = options
        self.queue = queue
        #: The handlers this worker runs (it claims only their types).
        self.handlers = _registry(handlers)
        self.concurrency = options.concurrency
        self.name = options.name or f"Worker-{next(_names)}"
        #: Recorded on every task this worker claims.
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{self.name}"
        self.drain_timeout = options.drain_timeout
        self.heartbeat_interval = options.heartbeat(queue.lease_seconds)
        self.rescue_interval = options.rescue(queue.lease_seconds)
        self._monotonic = queue.clock.monotonic
        self._ledger = InFlight(self._monotonic)
        self._recorder = Recorder(queue, self.name, self.handlers)
        self._dispatcher = Dispatcher(
            name=self.name,
            worker_id=self.worker_id,
            queue=queue,
            handlers=self.handlers,
            options=options,
            ledger=self._ledger,
            recorder=self._recorder,
            on_closed=self._queue_closed,
            on_heartbeat=self._report,
            services=[
                RescueService(queue, self.rescue_interval),
                UnhandledReport(
                    queue, lambda: self.handlers, self._ledger.idle,
                    options.idle_report_interval, self.name, options.queues,
                ),
                PeriodicService(queue, self.handlers.schedules(), self.name),
            ],
        )  # fmt: skip
        self._executors = Executors(
            name=self.name,
            queue=queue,
            handlers=self.handlers,
            ledger=self._ledger,
            recorder=self._recorder,
            runner=ThreadRunner(queue.hooks),
            on_room=self._dispatcher.room,
            on_timed=lambda: self._timekeeper.wake(),
        )
        self._timekeeper = Timekeeper(
            name=self.name,
            queue=queue,
            ledger=self._ledger,
            grace=options.timeout_grace,
            settle_failure=self._executors.settle_failure,
            replace_slot=self._replace_slot,
        )
        self._signal = _WorkSignal(self._dispatcher)
        self._threads: list[threading.Thread] = []
        self._pid = os.getpid()
        self._started_at: float | None = None
        self._state = "new"
        self._state_changed = threading.Condition()
        self._stop_requested = False
        self._finished = threading.Event()
        #: Set to end a drain at once (the running tasks are given back).
        self._force = False
        self._forced_by: int | None = None

    # -- counters ------------------------------------------------------------------
    @property
    def processed(self) -> int:
        """Attempts this worker completed."""
        return self._executors.counters.processed

    @property
    def failed(self) -> int:
        """Attempts this worker failed (each retry counts)."""
        return self._executors.counters.failed

    @property
    def in_flight(self) -> int:
        """Tasks this worker holds now: buffered (claimed, not started) and running."""
        return self._ledger.buffered + self._ledger.running

    # -- lifecycle -------------------------------------------------------------
    # States: new -> starting -> running -> stopping -> stopped; "starting"
    # may take a while (the database can be busy), and a stop() meanwhile
    # waits for it to end, then stops what started (or nothing).

    def start(self) -> Worker:
        """Start the threads and return the worker. Raises on a database it
        cannot work with (read-only, not a queue, closed); a passing fault
        (busy, disk full) is waited out by the dispatcher."""
        with self._state_changed:
            if self._pid != os.getpid():
                raise RuntimeError(f"{self.name} was created in another process; create one here")
            if self._state != "new":
                raise RuntimeError(f"{self.name} was already started")
            self._state = "starting"
        try:
            self._check_queue()
        except BaseException:
            self._set_state("stopped")
            self._finished.set()
            raise
        with self._state_changed:
            if self._stop_requested:
                # stop() was called while we waited on the database.
                self._state = "stopped"
                self._finished.set()
                self._state_changed.notify_all()
                return self
            self._started_at = self.queue.clock.time()
            self._launch()
            self._state = "running"
            self._state_changed.notify_all()
        self._report()
        LOGGER.info(
            "%s started: %d threads, queues %s, types %s",
            self.name,
            self.concurrency,
            "all" if self.options.queues is None else ",".join(self.options.queues),
            sorted(self.handlers),
        )
        return self

    def _check_queue(self) -> None:
        if not self.handlers:
            LOGGER.warning("%s has no handlers; it will claim nothing", self.name)
        try:
            self.queue.check_writable()
            self.queue.rescue_expired()
        except (ReadOnlyDatabaseError, NotAQueueDatabaseError, QueueClosedError):
            raise
        except StorageError as exc:
            LOGGER.warning("%s: starting despite a storage error (retrying): %s", self.name, exc)

    def _launch(self) -> None:
        self.queue.add_listener(self._signal)
        self._recorder.start()
        for index in range(self.concurrency):
            self._executors.start_slot(index)
        roles = ((self._dispatcher.run, "dispatcher"), (self._timekeeper.run, "timekeeper"))
        for target, role in roles:
            thread = threading.Thread(
                target=target, args=(self._finished,), name=f"{self.name}-{role}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _report(self, stopped: bool = False) -> None:
        """Tell the file this worker is alive (or stopped): ``queue.workers()``."""
        now = self.queue.clock.time()
        info = WorkerInfo(
            worker_id=self.worker_id, name=self.name, host=socket.gethostname(),
            pid=os.getpid(),
            queues=None if self.options.queues is None else ",".join(self.options.queues),
            concurrency=self.concurrency, started_at=self._started_at or now, last_seen=now,
            stopped_at=now if stopped else None, processed=self.processed, failed=self.failed,
        )  # fmt: skip
        try:
            self.queue.report_worker(info)
        except StorageError as exc:  # a report is not worth a retry loop
            LOGGER.debug("%s: could not report itself: %s", self.name, exc)

    def _set_state(self, state: str) -> None:
        with self._state_changed:
            self._state = state
            self._state_changed.notify_all()

    def _replace_slot(self, index: int) -> None:
        self._executors.start_slot(index)

    def _queue_closed(self, error: StorageError) -> None:
        """The dispatcher found the storage unusable (the TaskQueue closed,
        the file deleted or replaced): stop, from a thread of its own (the
        dispatcher cannot wait for itself)."""
        LOGGER.error("%s: its storage cannot be used any more (%s); stopping", self.name, error)
        threading.Thread(target=self.stop, args=(0,), name=f"{self.name}-stop", daemon=True).start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, wait up to ``timeout`` for running tasks, give the
        rest back to pending (without using a retry), then return. After it
        returns, none of this worker's tasks is left running. The steps and
        their reasons are in this module's docstring.

        Harmless on a worker that never started or already stopped, and in
        a child process that inherited the worker through fork(): there it
        touches nothing (its claims are the parent's)."""
        if self._pid != os.getpid():
            return
        if self._executors.owns(threading.current_thread()):
            raise RuntimeError(
                f"{self.name}.stop() called from one of its own handlers would wait for itself"
            )
        with self._state_changed:
            if self._state == "new":
                return  # nothing to stop; it may still be started later
            self._stop_requested = True
            while self._state == "starting":
                self._state_changed.wait()
            if self._state in ("new", "stopped"):
                return
            if self._state == "stopping":
                stopping_elsewhere = True
            else:
                stopping_elsewhere = False
                self._state = "stopping"
        if stopping_elsewhere:
            self._finished.wait()
            return
        try:
            self._shut_down(timeout)
        finally:
            self._set_state("stopped")
            self._finished.set()

    def _shut_down(self, timeout: float | None) -> None:
        deadline = None if timeout is None else self._monotonic() + timeout
        # 1-2: nothing more starts; the unstarted go back.
        _, buffered = self._ledger.stop_taking()
        self._dispatcher.wake()
        self.queue.remove_listener(self._signal)
        give_back(self.queue, buffered, "not started", self.name)
        # 3-4: wait for running handlers, then give back what still runs.
        self._ledger.wait_running(deadline, lambda: self._force)
        if self._forced_by is not None:
            LOGGER.info(
                "%s: received signal %d again: giving the running tasks back now",
                self.name,
                self._forced_by,
            )
        leftover = self._ledger.give_up_running()
        if leftover:
            LOGGER.warning(
                "%s: %d task(s) still running at the drain deadline; giving them back",
                self.name,
                len(leftover),
            )
            give_back(self.queue, [a.task for a in leftover], "drain deadline", self.name)
        # 5: outcomes get what is left of the drain time, and at least a few
        # seconds: a storage fault that does not clear must not hang stop().
        flush = None if deadline is None else max(MIN_FLUSH, deadline - self._monotonic())
        self._recorder.close(flush)
        # 6: the other threads.
        self._finished.set()
        self._dispatcher.wake()
        self._timekeeper.wake()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        self._executors.join(timeout=1.0)
        self._report(stopped=True)
        LOGGER.info(
            "%s stopped (%d completed, %d failed attempts)", self.name, self.processed, self.failed
        )

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped; True if it has."""
        return self._finished.wait(timeout)

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Start and block until stopped. From the main thread, SIGINT and
        SIGTERM drain gracefully (up to ``drain_timeout``); a second signal
        gives the running tasks back at once.

        until: called from this thread while the worker runs, every poll
            interval (clamped to 0.01-0.2 s); once it returns True the
            worker stops as on a signal, draining. ``task-queue worker
            --burst`` stops this way once nothing is left to do. If it
            raises, the worker is stopped and the error raised.
        """
        # A second signal sets _force, which the drain reads every 50 ms:
        # the running tasks are given back at once.
        wait = 0.2 if until is None else min(0.2, max(0.01, self.options.poll_interval))
        with ShutdownSignals(on_second=self._force_stop) as signals:
            self.start()
            try:
                while not signals.requested.wait(wait):
                    if self._finished.is_set():
                        return  # stopped by someone else
                    if until is not None and until():
                        LOGGER.info("%s: done (until() is true), stopping", self.name)
                        self.stop(self.drain_timeout)
                        return
            except BaseException:
                self.stop(self.drain_timeout)  # until() raised: leave nothing running
                raise
            LOGGER.info("%s: received signal %s, stopping", self.name, signals.signum)
            self.stop(self.drain_timeout)

    def _force_stop(self, signum: int) -> None:
        self._forced_by = signum
        self._force = True

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(self.drain_timeout)

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, concurrency={self.concurrency})"


def _registry(handlers: object) -> HandlerRegistry:
    if handlers is None:
        return TASK_HANDLERS
    if isinstance(handlers, HandlerRegistry):
        return handlers
    if isinstance(handlers, Mapping):
        registry = HandlerRegistry()
        for task_type, fn in handlers.items():
            registry[task_type] = fn
        return registry
    raise TypeError(
        "handlers must be a HandlerRegistry or a mapping of task type to function "
        f"(e.g. {{'send_email': send_email}}), got {type(handlers).__name__}"
    )
