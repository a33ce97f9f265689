"""Worker: a pool of threads that claim tasks and run their handlers.

Threads of one Worker:

* executors (``concurrency`` of them) run handlers, one task at a time;
* the dispatcher claims tasks in batches for idle executors, renews leases
  (heartbeat), enforces timeouts, rescues expired leases, reaps the
  outcomes the executors queued, and reports task types nobody handles.

Executors never wait for their outcome to commit: they queue it to the
storage engine (which commits it in the next group commit, together with
other threads' outcomes and the next claim) and take the next task. No
outcome is reported to anyone before it is committed.

Timeouts, in layers (README "Timeouts" says the same):

1. cooperative: the handler's ``current_task()`` context is flagged
   ``cancelled`` and ``check()`` raises; works everywhere, if the handler looks;
2. an asynchronous ``TaskTimeout`` raised in the executor thread; it
   interrupts Python code (loops, ``time.sleep`` in slices of Python) but not
   a call blocked in C (a socket read, a C extension);
3. after ``timeout_grace`` more seconds the attempt is recorded as timed out
   (retry or fail), the thread is abandoned and replaced so the pool keeps
   its capacity, and whatever the stuck thread returns later is discarded
   (and would be fenced out by the database anyway).

Shutdown order (``stop(timeout)``), and why:

1. stop claiming, so nothing new starts;
2. release the prefetched tasks nobody started: they go back to pending at
   once, without using a retry, for other workers to take;
3. wait up to ``timeout`` for running handlers;
4. release what is still running (pending again, no retry used) and flag
   its handlers cancelled, so nothing is left "running" in the database;
5. wait for queued outcomes to commit, keeping leases renewed meanwhile;
6. stop the dispatcher.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import itertools
import logging
import math
import os
import signal
import socket
import threading
from types import FrameType
from typing import Any

from .context import TaskContext, _set_current
from .errors import (
    NotAQueueDatabaseError,
    QueueClosedError,
    ReadOnlyDatabaseError,
    StorageError,
    TaskTimeout,
)
from .payload import encode
from .queue import TaskQueue
from .recorder import Outcome, OutcomeRecorder
from .registry import TASK_HANDLERS, HandlerRegistry
from .storage.base import Claim
from .task import Task

LOGGER = logging.getLogger("task_queue.worker")
# Safety net under the wake-ups and hints: with free capacity, a worker
# tries a claim at least this often whatever it was told (an empty claim
# changes no page, so its commit costs no fsync).
_SWEEP_INTERVAL = 1.0
# stop(timeout) gives queued outcomes at least this long to commit.
_MIN_FLUSH = 5.0
_names = itertools.count(1)


def _async_raise(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in another thread at its next bytecode (None clears)."""
    exc = ctypes.py_object(exc_type) if exc_type is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)


@dataclasses.dataclass(eq=False)
class _Slot:
    """One executor thread."""

    index: int
    thread: threading.Thread | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    current: _Running | None = None
    in_handler: bool = False
    abandoned: bool = False


@dataclasses.dataclass(eq=False)
class _Running:
    task: Task
    claim: Claim
    ctx: TaskContext
    slot: _Slot
    timeout: float | None
    timeout_fired_at: float | None = None
    #: A TaskTimeout was raised asynchronously in the executor (under slot.lock).
    interrupted: bool = False


class _WorkSignal:
    """Registered with the TaskQueue: an in-process enqueue wakes the dispatcher."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def set(self) -> None:
        self._worker._maybe_more = True
        self._worker._wake.set()


class Worker:
    """Runs handlers for tasks of ``queue`` in ``concurrency`` threads."""

    def __init__(
        self,
        queue: TaskQueue,
        handlers: HandlerRegistry | dict[str, Any] | None = None,
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
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if not poll_interval > 0:
            raise ValueError("poll_interval must be > 0")
        self.queue = queue
        if handlers is None:
            handlers = TASK_HANDLERS
        elif not isinstance(handlers, HandlerRegistry):
            registry = HandlerRegistry()
            for task_type, fn in handlers.items():
                registry[task_type] = fn
            handlers = registry
        self.handlers: HandlerRegistry = handlers
        self.concurrency = concurrency
        self.name = name or f"Worker-{next(_names)}"
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{self.name}"
        self.poll_interval = poll_interval
        #: Tasks claimed ahead of a free thread; None adapts it to task length.
        self.prefetch = None if prefetch is None else max(0, prefetch)
        lease = queue.lease_seconds
        self.heartbeat_interval = heartbeat_interval or lease / 3
        self.rescue_interval = rescue_interval or min(max(lease / 4, 0.05), 5.0)
        self.drain_timeout = drain_timeout
        self.timeout_grace = timeout_grace
        self.idle_report_interval = idle_report_interval
        self._monotonic = queue.clock.monotonic

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._signal = _WorkSignal(self)
        self._buffer: collections.deque[Task] = collections.deque()
        self._running: dict[int, _Running] = {}
        # Monotonic time until which each buffered claim's lease surely
        # lasts (set at claim, pushed on by each renewal): a task whose
        # lease ran out while it waited (the process was frozen or starved)
        # may be someone else's by now, and is not started.
        self._valid_until: dict[Claim, float] = {}
        # Set when a task with a timeout starts (wakes the timekeeper).
        self._timed = threading.Event()
        self._recorder = OutcomeRecorder(queue, self.name, self._look_again)
        # Moving average of handler run time, for the adaptive prefetch.
        self._avg_duration: float | None = None
        self._slots: list[_Slot] = []
        self._dispatcher: threading.Thread | None = None
        self._timekeeper: threading.Thread | None = None
        self._maybe_more = True
        self._started = False
        self._stopping = False
        self._finished = threading.Event()
        self._force = False
        # Outcomes decided but not yet handed to the recorder: stop() must
        # wait for them, or a task finishing during the drain is left running.
        self._handing_over = 0
        self.processed = 0
        self.failed = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Worker:
        if self._started:
            raise RuntimeError(f"{self.name} was already started")
        if not self.handlers:
            LOGGER.warning("%s has no handlers; it will claim nothing", self.name)
        # Refuse to start on a database we cannot write (instead of looping);
        # a passing fault (busy, disk full) is waited out by the dispatcher.
        try:
            self.queue.rescue_expired()
        except (ReadOnlyDatabaseError, NotAQueueDatabaseError, QueueClosedError):
            raise
        except StorageError as exc:
            LOGGER.warning("%s: starting despite a storage error (retrying): %s", self.name, exc)
        self._started = True
        self.queue.add_listener(self._signal)
        self._recorder.start()
        for index in range(self.concurrency):
            self._start_slot(index)
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name=f"{self.name}-dispatcher", daemon=True
        )
        self._dispatcher.start()
        self._timekeeper = threading.Thread(
            target=self._timekeeper_loop, name=f"{self.name}-timekeeper", daemon=True
        )
        self._timekeeper.start()
        LOGGER.info(
            "%s started: %d threads, types %s", self.name, self.concurrency, sorted(self.handlers)
        )
        return self

    def _start_slot(self, index: int) -> _Slot:
        slot = _Slot(index)
        slot.thread = threading.Thread(
            target=self._executor_loop, args=(slot,), name=f"{self.name}-{index + 1}", daemon=True
        )
        with self._lock:
            self._slots.append(slot)
        slot.thread.start()
        return slot

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, wait up to ``timeout`` for running tasks, give the
        rest back to pending (without using a retry), then return. After it
        returns, none of this worker's tasks is left running."""
        if not self._started or self._finished.is_set():
            return
        if any(slot.thread is threading.current_thread() for slot in list(self._slots)):
            raise RuntimeError(
                f"{self.name}.stop() called from one of its own handlers would wait for itself"
            )
        deadline = None if timeout is None else self._monotonic() + timeout
        with self._cond:
            already = self._stopping
            self._stopping = True
            buffered = list(self._buffer)
            self._buffer.clear()
            self._valid_until.clear()
            self._cond.notify_all()
        self._wake.set()
        if already:
            self._finished.wait()
            return
        self.queue.remove_listener(self._signal)
        self._release([(t.id, t.claim_token or 0) for t in buffered], "not started")
        # Wait for running handlers.
        with self._cond:
            while self._running and not self._force:
                remaining = None if deadline is None else deadline - self._monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
            leftover = list(self._running.values())
            for rec in leftover:
                rec.slot.abandoned = True
                rec.ctx.cancel("shutdown")
            self._running.clear()
            while self._handing_over:
                self._cond.wait(0.05)
        if leftover:
            LOGGER.warning(
                "%s: %d task(s) still running at the drain deadline; giving them back",
                self.name,
                len(leftover),
            )
            self._release([rec.claim for rec in leftover], "drain deadline")
        # Outcomes get what is left of the drain time, and at least a few
        # seconds: a storage fault that does not clear must not hang stop().
        flush = None if deadline is None else max(_MIN_FLUSH, deadline - self._monotonic())
        self._recorder.close(flush)
        self._finished.set()
        self._wake.set()
        self._timed.set()
        if self._dispatcher is not None:
            self._dispatcher.join()
        if self._timekeeper is not None:
            self._timekeeper.join()
        for slot in list(self._slots):
            if slot.thread is not None and not slot.abandoned:
                slot.thread.join(timeout=1.0)
        LOGGER.info(
            "%s stopped (%d completed, %d failed attempts)", self.name, self.processed, self.failed
        )

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped; True if it has."""
        return self._finished.wait(timeout)

    def run(self) -> None:
        """Start and block until stopped. From the main thread, SIGINT and
        SIGTERM drain gracefully (up to ``drain_timeout``); a second signal
        gives the running tasks back at once."""
        in_main = threading.current_thread() is threading.main_thread()
        requested = threading.Event()
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only set flags here: the handler runs in the main thread between
            # two bytecodes, possibly while it holds self._lock (stop() does),
            # and taking it again would deadlock. stop() polls the flag.
            if requested.is_set():
                self._force = True
            LOGGER.info("%s: received signal %d, stopping", self.name, signum)
            requested.set()

        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            self.start()
            while not requested.wait(0.2) and not self._finished.is_set():
                pass
            self.stop(self.drain_timeout)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(self.drain_timeout)

    # -- executors ---------------------------------------------------------------
    def _executor_loop(self, slot: _Slot) -> None:
        while True:
            with self._cond:
                while not self._buffer and not self._stopping:
                    self._cond.wait()
                if not self._buffer:
                    return
                task = self._buffer.popleft()
                valid_until = self._valid_until.pop((task.id, task.claim_token or 0), math.inf)
                # Running from the moment it leaves the buffer: stop() must
                # always find it in one or the other (to wait for it or give
                # it back), never in neither.
                rec = self._new_running(slot, task)
                if self._monotonic() >= valid_until:
                    rec.ctx.cancel("expired")  # not started: see _hand_over
                self._running[task.id] = rec
                refill = self._claim_size() > 0
            if refill:
                self._wake.set()
            try:
                self._execute(slot, rec)
            except BaseException as exc:  # bookkeeping must not kill the thread
                LOGGER.exception("%s: internal error around task %d", self.name, task.id)
                self._after_internal_error(rec, exc)
            if slot.abandoned:
                return

    def _after_internal_error(self, rec: _Running, exc: BaseException) -> None:
        """Never leave a task that our own code failed on "running" with its
        lease renewed forever: count it as a failed attempt (a retry, not a
        release, so a task that always trips us ends failed)."""
        with self._cond:
            held = self._running.get(rec.task.id) is rec
            if held:
                del self._running[rec.task.id]
            self._cond.notify_all()
        if not held:
            return
        try:
            self._recorder.add(Outcome(rec.claim, failure=self.queue.make_failure(exc)))
        except BaseException:
            LOGGER.exception("%s: task %d is left to its lease", self.name, rec.task.id)

    def _new_running(self, slot: _Slot, task: Task) -> _Running:
        options = self.handlers.options(task.task_type)
        timeout = task.timeout if task.timeout is not None else options.timeout
        start = self._monotonic()
        ctx = TaskContext(task, None if timeout is None else start + timeout, self._monotonic)
        if timeout is not None:
            self._timed.set()
        return _Running(task, (task.id, task.claim_token or 0), ctx, slot, timeout)

    def _execute(self, slot: _Slot, rec: _Running) -> None:
        task, ctx = rec.task, rec.ctx
        fn = self.handlers.get(task.task_type)
        started = self._monotonic()
        error: BaseException | None = None
        result: Any = None
        LOGGER.debug("%s: task %d (%r) started", self.name, task.id, task.name)
        _set_current(ctx)
        try:
            try:
                with slot.lock:
                    slot.current = rec
                    slot.in_handler = True
                ctx.check()  # given back (stop) or cancelled before it started
                if fn is None:
                    raise LookupError(f"no handler registered for task type {task.task_type!r}")
                result = fn(task.payload)
            finally:
                with slot.lock:
                    slot.in_handler = False
                    slot.current = None
                # A TaskTimeout scheduled just as the handler returned must
                # not hit our bookkeeping below: take it here. Never clear
                # one with _async_raise(..., None): on CPython 3.11 that
                # leaves the eval breaker set, and under a profiler or
                # tracer (cProfile, coverage, pdb) the thread then spins
                # forever after its first task.
                if rec.interrupted:
                    try:
                        for _ in range(3):
                            pass
                    except TaskTimeout:
                        pass
        except BaseException as exc:  # SystemExit etc. from handler code too
            error = exc
        finally:
            _set_current(None)
        elapsed = self._monotonic() - started
        avg = self._avg_duration
        self._avg_duration = elapsed if avg is None else 0.8 * avg + 0.2 * elapsed
        with self._cond:
            still_ours = self._running.pop(task.id, None) is rec and not slot.abandoned
            if still_ours:
                self._handing_over += 1
            if self._stopping:
                self._cond.notify_all()  # stop() waits for running tasks
            refill = self._claim_size() > 0
        if not still_ours:
            LOGGER.info(
                "%s: task %d finished after it was given up; outcome discarded", self.name, task.id
            )
            return
        try:
            self._hand_over(rec, error, result, elapsed, refill)
        finally:
            with self._cond:
                self._handing_over -= 1
                self._cond.notify_all()

    def _hand_over(
        self, rec: _Running, error: BaseException | None, result: Any, elapsed: float, refill: bool
    ) -> None:
        task, ctx, claim, timeout = rec.task, rec.ctx, rec.claim, rec.timeout
        if ctx.cancelled and ctx.reason == "expired":
            # Its lease ran out while it waited in the buffer: another
            # worker may be running it already. Give it back (fenced: only
            # if still ours, and without using a retry) instead of running it.
            self._release([claim], "lease ran out before they started")
            self._wake.set()
            return
        if ctx.cancelled and ctx.reason in ("cancelled", "lost"):
            LOGGER.info(
                "%s: task %d was cancelled or lost its claim; outcome discarded", self.name, task.id
            )
            self._wake.set()
            return
        if error is None:
            try:
                encoded = encode(result, what="result", max_bytes=self.queue.max_payload_bytes)
            except BaseException as exc:  # PayloadError, or whatever a hostile result raises
                error = exc
        if error is None:
            LOGGER.info(
                "%s: task %d (%r) completed in %.3fs", self.name, task.id, task.name, elapsed
            )
            self._recorder.add(Outcome(claim, encoded))
            self.processed += 1
        else:
            if isinstance(error, TaskTimeout) or (ctx.cancelled and ctx.reason == "timeout"):
                error = TaskTimeout(f"task {task.id} timed out after {timeout}s")
            self._record_failure(rec, error, elapsed)
        if refill:
            self._wake.set()

    def _record_failure(self, rec: _Running, error: BaseException, elapsed: float) -> None:
        task = rec.task
        options = self.handlers.options(task.task_type)
        failure = self.queue.make_failure(
            error, retry_policy=options.retry_policy, max_retries=options.max_retries
        )
        LOGGER.warning(
            "%s: task %d (%r) failed after %.3fs: %r",  # repr: no raw newlines from errors
            self.name,
            task.id,
            task.name,
            elapsed,
            failure.error,
        )
        self.failed += 1
        self._recorder.add(Outcome(rec.claim, failure=failure))

    def _look_again(self) -> None:
        """A failure was recorded: its retry may be due already."""
        self._maybe_more = True
        self._wake.set()

    # -- dispatcher --------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        now = self._monotonic()
        next_heartbeat = now + self.heartbeat_interval
        next_rescue = now
        next_poll = now
        next_sweep = now
        next_report = now + self.idle_report_interval
        next_due: float | None = None  # epoch seconds
        seen_version: int | None = None
        backoff = 0.0
        while not self._finished.is_set():
            self._wake.clear()
            now = self._monotonic()
            try:
                if now >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = now + self.heartbeat_interval
                if self._stopping:
                    self._wake.wait(0.05)
                    continue
                if now >= next_rescue:
                    if self.queue.rescue_expired():
                        self._maybe_more = True
                    next_rescue = now + self.rescue_interval
                if now >= next_poll:
                    version = self.queue.data_version()
                    if version != seen_version:
                        seen_version = version
                        self._maybe_more = True
                    next_poll = now + self.poll_interval
                if next_due is not None and self.queue.clock.time() >= next_due:
                    self._maybe_more = True
                    next_due = None
                free = self._claim_size()
                if free > 0 and (self._maybe_more or now >= next_sweep):
                    # Consume the hint before claiming: a hint that arrives
                    # while the claim runs (a retry recorded, an enqueue)
                    # must survive it, or the task waits for no one.
                    self._maybe_more = False
                    next_sweep = now + _SWEEP_INTERVAL
                    try:
                        got = self._claim(free)
                    except StorageError:
                        self._maybe_more = True
                        raise
                    if got == free:
                        self._maybe_more = True  # there may be more
                    else:
                        next_due = self.queue.next_due()
                    continue  # re-evaluate at once
                if now >= next_report and not self._running and not self._buffer:
                    self._report_unhandled()
                    next_report = now + self.idle_report_interval
                backoff = 0.0
            except StorageError as exc:
                backoff = min(5.0, max(0.05, backoff * 2))
                LOGGER.warning("%s: storage error, retrying in %.2fs: %s", self.name, backoff, exc)
                self._wake.wait(backoff)
                continue
            except Exception:  # pragma: no cover - keep the dispatcher alive
                LOGGER.exception("%s: dispatcher error", self.name)
                self._wake.wait(1.0)
                continue
            wait = min(next_poll, next_heartbeat, next_rescue, next_sweep) - self._monotonic()
            if next_due is not None:
                wait = min(wait, next_due - self.queue.clock.time())
            self._wake.wait(max(0.0, wait))

    def _capacity(self) -> int:
        """Threads plus prefetch: how many tasks this worker holds at most.

        Adaptive unless set: short tasks are claimed well ahead (a batch per
        commit is what makes throughput), long ones not at all (a prefetched
        task would wait behind a long one while another worker idles).
        """
        if self.prefetch is not None:
            return self.concurrency + self.prefetch
        # Roughly: hold at most ~0.1-0.2 s of work per thread beyond the
        # running task, and nothing extra for tasks of a second or more.
        avg = self._avg_duration
        if avg is None:
            # Unknown yet: claim no further ahead than the free threads, so
            # a first batch of long tasks does not wait behind each other
            # while another worker idles.
            extra = 0
        elif avg >= 1.0:
            extra = 0
        elif avg >= 0.01:
            extra = self.concurrency
        elif avg >= 0.001:
            extra = 4 * self.concurrency
        else:
            extra = 16 * self.concurrency
        return self.concurrency + extra

    def _claim_size(self) -> int:
        """How many tasks to claim now (0: not yet). Caller holds no lock or
        self._lock; reads only lengths."""
        capacity = self._capacity()
        in_hand = len(self._buffer) + len(self._running)
        free = capacity - in_hand
        # Claim in batches once the buffer runs low, but never leave an
        # executor idle while tasks could be claimed.
        if free <= 0:
            return 0
        if len(self._buffer) == 0 or free >= max(1, capacity // 2):
            return free
        return 0

    def _claim(self, limit: int) -> int:
        types = list(self.handlers)
        if not types:
            return limit  # nothing to claim; don't spin
        before = self._monotonic()
        # Completions waiting to be written ride along with the claim: one
        # commit for both (the recorder writes whatever is not taken).
        lent = self._recorder.lend()
        try:
            recorded, tasks = self.queue._claim_batch(
                limit, self.worker_id, types, False, [(o.claim, o.result) for o in lent]
            )
        except BaseException:
            self._recorder.give_back(lent)
            raise
        self._recorder.settle(lent, recorded)
        if tasks:
            with self._cond:
                if self._stopping:
                    late = tasks
                else:
                    valid_until = before + self.queue.lease_seconds
                    for t in tasks:
                        self._valid_until[(t.id, t.claim_token or 0)] = valid_until
                    self._buffer.extend(tasks)
                    late = []
                    self._cond.notify(len(tasks))
            if late:
                self._release([(t.id, t.claim_token or 0) for t in late], "claimed during stop")
        return len(tasks)

    def _heartbeat(self) -> None:
        with self._lock:
            claims = [(t.id, t.claim_token or 0) for t in self._buffer]
            claims += [rec.claim for rec in self._running.values()]
        claims += self._recorder.held()
        if not claims:
            return
        before = self._monotonic()
        lease_until = self.queue.clock.time() + self.queue.lease_seconds
        renewed = self.queue.storage.renew(claims, lease_until)
        not_renewed = {c for c in claims if c[0] not in renewed}
        with self._lock:
            for c in claims:
                if c in self._valid_until and c not in not_renewed:
                    self._valid_until[c] = before + self.queue.lease_seconds
        if not not_renewed:
            return
        # Only a claim still in hand after the renewal is lost. An outcome
        # that committed meanwhile (queued before the renewal, or handed to
        # the recorder since the snapshot) is simply no longer running; and
        # match (id, token), not the id: a failed task may be running here
        # again under a new claim.
        with self._cond:
            lost_running = [rec for rec in self._running.values() if rec.claim in not_renewed]
            kept = [t for t in self._buffer if (t.id, t.claim_token or 0) not in not_renewed]
            lost = {t.id for t in self._buffer} - {t.id for t in kept}
            for c in not_renewed:
                self._valid_until.pop(c, None)
            self._buffer.clear()
            self._buffer.extend(kept)
        for rec in lost_running:
            lost.add(rec.task.id)
            status = self.queue.get_task(rec.task.id)
            cancelled = status is not None and status.status == "cancelled"
            rec.ctx.cancel("cancelled" if cancelled else "lost")
        if not lost:
            return
        LOGGER.warning(
            "%s: %d claim(s) no longer held (cancelled or rescued): %s",
            self.name,
            len(lost),
            sorted(lost),
        )

    def _timekeeper_loop(self) -> None:
        """Enforce timeouts from a thread of their own: the dispatcher can
        wait on the database (another process holding the write lock) for
        longer than any timeout."""
        while not self._finished.is_set():
            self._timed.clear()
            try:
                self._check_timeouts(self._monotonic())
            except Exception:  # pragma: no cover - keep enforcing
                LOGGER.exception("%s: timeout check failed", self.name)
            if self._running_with_deadline():
                self._finished.wait(0.05)
            else:
                self._timed.wait(1.0)

    def _running_with_deadline(self) -> bool:
        with self._lock:
            return any(rec.timeout is not None for rec in self._running.values())

    def _check_timeouts(self, now: float) -> None:
        with self._lock:
            records = [r for r in self._running.values() if r.ctx.deadline is not None]
        for rec in records:
            assert rec.ctx.deadline is not None
            if now < rec.ctx.deadline:
                continue
            slot = rec.slot
            if rec.timeout_fired_at is None:
                rec.timeout_fired_at = now
                rec.ctx.cancel("timeout")
                with slot.lock:
                    if slot.current is rec and slot.in_handler and slot.thread is not None:
                        assert slot.thread.ident is not None
                        _async_raise(slot.thread.ident, TaskTimeout)
                        rec.interrupted = True
                LOGGER.warning(
                    "%s: task %d ran past its %ss timeout; interrupting it",
                    self.name,
                    rec.task.id,
                    rec.timeout,
                )
            elif now >= rec.timeout_fired_at + self.timeout_grace:
                with self._cond:
                    if self._running.get(rec.task.id) is not rec:
                        continue
                    del self._running[rec.task.id]
                    slot.abandoned = True
                    self._slots.remove(slot)
                    self._handing_over += 1
                LOGGER.error(
                    "%s: task %d did not stop %ss after its timeout (blocked in C?); "
                    "recording it as timed out and replacing its thread",
                    self.name,
                    rec.task.id,
                    self.timeout_grace,
                )
                error = TaskTimeout(
                    f"task {rec.task.id} timed out after {rec.timeout}s and did not stop"
                )
                try:
                    self._record_failure(rec, error, now - rec.ctx.deadline + (rec.timeout or 0))
                finally:
                    with self._cond:
                        self._handing_over -= 1
                        self._cond.notify_all()
                if not self._stopping:
                    self._start_slot(slot.index)

    def _release(self, claims: list[Claim], why: str) -> None:
        if not claims:
            return
        try:
            released = self.queue.storage.release(claims)
        except StorageError as exc:
            LOGGER.error(
                "%s: could not give back %d task(s) (%s): they return to pending when "
                "their lease expires",
                self.name,
                len(claims),
                exc,
            )
            return
        LOGGER.info("%s: gave back %d task(s) (%s)", self.name, len(released), why)

    def _report_unhandled(self) -> None:
        due = self.queue.pending_by_type()
        missing = {t: n for t, n in due.items() if t not in self.handlers}
        if missing:
            LOGGER.warning(
                "%s: due tasks wait for handlers this worker does not have: %s",
                self.name,
                ", ".join(f"{t!r}: {n}" for t, n in sorted(missing.items())),
            )

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, concurrency={self.concurrency})"
