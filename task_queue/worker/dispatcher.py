"""The dispatcher: claims tasks for idle executors, renews leases, runs the
maintenance services.

Its body is one step, :meth:`Dispatcher.step`, which does whatever is due
at ``now`` (monotonic seconds) and returns when it wants to run again; the
thread just loops over it, sleeping until then or until woken. Tests call
``step(now)`` directly on a ManualClock, without threads.

It claims for each pool on its own (:mod:`.ledger`'s lanes): the types of
sync handlers as room frees up among the executor threads, those of
``async def`` handlers as it frees up on the event loop; a full pool's types
are left out of the claim, so neither kind of task can take the other's
places.

What makes it claim: a hint (an enqueue or retry through the same
TaskQueue, a rescue, a claim that came back full), the change feed saying
another process committed, a scheduled task falling due, or the sweep (a
claim at least every second with free capacity, whatever it was told: an
empty claim changes no page, so its commit costs no fsync).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..clock import JumpDetector
from ..errors import UNSTORABLE, UNUSABLE_STORAGE, StorageError
from ..events import Event, EventKind
from ..limits import Limits
from ..logfields import task_fields, why_not_held
from ..maintenance import MaintenanceService
from ..notify import Wakeup
from ..queue import TaskQueue
from ..registry import HandlerRegistry
from ..task import Claim, Task
from .ledger import COROUTINES, THREADS, InFlight
from .options import WorkerOptions
from .recorder import Recorder, durations, give_back

if TYPE_CHECKING:
    from .coroutines import CoroutinePool

LOGGER = logging.getLogger(__name__)

#: Seconds of expected work each executor thread holds beyond its running
#: task (adaptive prefetch; see Dispatcher.capacity).
PREFETCH_SECONDS = 0.1
#: Most tasks prefetched per thread, however short they are.
PREFETCH_MAX = 128

# Safety net under the wake-ups and hints (see the module docstring).
SWEEP_INTERVAL = 1.0


class Dispatcher:
    """Claim sizing, prefetch, heartbeat, polling and maintenance for one Worker."""

    def __init__(
        self,
        *,
        name: str,
        worker_id: str,
        queue: TaskQueue,
        handlers: HandlerRegistry,
        options: WorkerOptions,
        ledger: InFlight,
        recorder: Recorder,
        services: Sequence[MaintenanceService],
        on_closed: Callable[[StorageError], None],
        on_heartbeat: Callable[[], None] = lambda: None,
        coroutines: CoroutinePool | None = None,
    ) -> None:
        """``on_closed(error)`` is called once if the storage turns out
        unusable (closed, the file deleted or replaced: nothing can be
        claimed or renewed any more, the worker must stop)."""
        self._name = name
        self._on_closed = on_closed
        self._on_heartbeat = on_heartbeat
        self._closed = False
        self._worker_id = worker_id
        self._queue = queue
        self._handlers = handlers
        self._options = options
        self._ledger = ledger
        self._recorder = recorder
        self._services = list(services)
        self._coroutines = coroutines
        self._monotonic = queue.clock.monotonic
        self._wake = Wakeup()
        self._feed = queue.change_feed()
        # A feed that can push (PostgreSQL's LISTEN) wakes us at once; the
        # poll below stays as the fallback.
        on_change = getattr(self._feed, "on_change", None)
        if on_change is not None:
            on_change(self._changed_elsewhere)
        self._jumps = JumpDetector(queue.clock)
        self._maybe_more = True
        # Another process committed, or this process paused a queue: a
        # queue may have been paused, and prefetched tasks of it are given
        # back. Not on every in-process hint: completions hint too (they may
        # release dependents), and reading the paused queues after each
        # completion batch took the drain a read transaction per batch.
        self._hinted = False
        self._seen_pauses = queue._pauses_made
        now = self._monotonic()
        self._heartbeat_every = options.heartbeat(queue.lease_seconds)
        self._next_heartbeat = now + self._heartbeat_every
        self._next_service = [now] * len(self._services)
        self._next_poll = now
        self._next_sweep = now
        self._next_due: float | None = None  # epoch seconds
        self._next_token: float | None = None  # monotonic: a rate limit's next token
        self._backoff = 0.0

    # -- signals from other threads -------------------------------------------
    def hint(self) -> None:
        """There may be tasks to claim (an enqueue, a retry, a completion
        that released dependents, a rescue), or this process paused a queue."""
        self._maybe_more = True
        self._wake.set()

    def _changed_elsewhere(self) -> None:
        """A push feed (PostgreSQL's LISTEN) saw another process commit."""
        self._hinted = True
        self.hint()

    def wake(self) -> None:
        """Run a step now (room for more tasks, or stopping)."""
        self._wake.set()

    def room(self) -> None:
        """An executor took or finished a task: claim more if it is time to."""
        # Called after every task: no Event.set() (a lock) when already set.
        if not self._wake.is_set() and (self.claim_size() > 0 or self.async_claim_size() > 0):
            self._wake.set()

    # -- the loop ----------------------------------------------------------------
    def run(self, finished: threading.Event) -> None:
        """The dispatcher thread: step until ``finished``."""
        while not finished.is_set():
            self._wake.clear()
            try:
                next_at = self.step(self._monotonic())
            except Exception:  # pragma: no cover - keep the dispatcher alive
                LOGGER.exception("%s: dispatcher error", self._name)
                next_at = self._monotonic() + 1.0
            self._wake.wait(max(0.0, next_at - self._monotonic()))

    def step(self, now: float) -> float:
        """Do what is due at ``now`` (monotonic); return when to step again.

        Storage errors are waited out with backoff (up to 5 s): a worker
        never fails a task because its own bookkeeping could not be written.
        """
        if self._closed:
            return now + 3600.0
        try:
            next_at = self._step(now)
        except UNUSABLE_STORAGE as exc:
            # Permanent (closed, or the file deleted or replaced): retrying
            # would spin forever.
            self._closed = True
            self._on_closed(exc)
            return now + 3600.0
        except StorageError as exc:
            self._backoff = min(5.0, max(0.05, self._backoff * 2))
            LOGGER.warning(
                "%s: storage error, retrying in %.2fs: %s", self._name, self._backoff, exc
            )
            return now + self._backoff
        self._backoff = 0.0
        return next_at

    def _step(self, now: float) -> float:
        jump = self._jumps.jumped()
        if jump:
            # Leases are wall-clock times: after a jump forward they look
            # expired to every rescuer. Renew before anyone acts on it.
            LOGGER.warning(
                "%s: the wall clock jumped %+.1fs; renewing leases now", self._name, jump
            )
            self._next_heartbeat = now
        if now >= self._next_heartbeat:
            self.heartbeat()
            self._next_heartbeat = now + self._heartbeat_every
            self._on_heartbeat()
        if self._ledger.stopping:
            return now + 0.05  # only heartbeats while the drain runs
        for index, service in enumerate(self._services):
            if now >= self._next_service[index]:
                self._next_service[index] = service.run_once(now)
        if now >= self._next_poll:
            if self._feed.changed():
                self._maybe_more = True
                self._hinted = True
            self._next_poll = now + self._options.poll_interval
        pauses = self._queue._pauses_made
        if pauses != self._seen_pauses:
            self._seen_pauses = pauses
            self._hinted = True
        if self._hinted:
            self._hinted = False
            if self._ledger.buffered:
                self._drop_paused()
        if self._next_due is not None and self._queue.clock.time() >= self._next_due:
            self._maybe_more = True
            self._next_due = None
        if self._next_token is not None and now >= self._next_token:
            self._maybe_more = True
            self._next_token = None
        # No handlers: nothing to claim (a registry filled later is seen
        # at the next step, within a poll interval).
        lanes = self._lanes() if self._handlers else []
        free = sum(room for _, _, room in lanes)
        if free > 0 and (self._maybe_more or now >= self._next_sweep):
            # Consume the hint before claiming: a hint that arrives while
            # the claim runs (a retry recorded, an enqueue) must survive
            # it, or the task waits for no one.
            self._maybe_more = False
            self._next_sweep = now + SWEEP_INTERVAL
            try:
                full = self._claim(lanes)
            except StorageError:
                self._maybe_more = True
                raise
            if full:
                self._maybe_more = True  # there may be more
            else:
                self._next_due = self._queue.next_due()
            return now  # re-evaluate at once
        next_at = min(self._next_poll, self._next_heartbeat, *self._next_service)
        if free > 0:
            # The sweep only matters with room to claim into; a full worker
            # is woken by room() when a task ends (counting an overdue sweep
            # made it step again at once, in a loop, while full).
            next_at = min(next_at, self._next_sweep)
            if self._next_token is not None:
                next_at = min(next_at, self._next_token)
        if self._next_due is not None:
            next_at = min(next_at, now + (self._next_due - self._queue.clock.time()))
        return next_at

    # -- claiming ----------------------------------------------------------------
    def capacity(self) -> int:
        """Threads plus prefetch: how many tasks of sync handlers this worker
        holds at most.

        Adaptive unless set: short tasks are claimed well ahead (a batch per
        commit is what makes throughput), long ones not at all (a prefetched
        task would wait behind a long one while another worker idles).
        """
        concurrency = self._options.concurrency
        if self._options.prefetch is not None:
            return concurrency + self._options.prefetch
        avg = self._ledger.avg_duration
        if avg is None:
            # Unknown yet: claim no further ahead than the free threads, so
            # a first batch of long tasks does not wait behind each other
            # while another worker idles.
            return concurrency
        # Sized by time, not count: each thread holds at most PREFETCH_SECONDS
        # of expected work beyond its running task (none for tasks longer
        # than that), and at most PREFETCH_MAX of sub-millisecond ones (a
        # batch per claim transaction is what makes their throughput; 128
        # per thread measured +20% drain over 16). This is also what a
        # crash leaves leased: README, "Worker" (prefetch).
        per_thread = min(PREFETCH_MAX, int(PREFETCH_SECONDS / max(avg, 1e-9)))
        extra = concurrency * per_thread
        return concurrency + extra

    def claim_size(self) -> int:
        """How many tasks of sync handlers to claim now (0: not yet)."""
        capacity = self.capacity()
        buffered = self._ledger.buffered_in(THREADS)
        free = capacity - buffered - self._ledger.running_in(THREADS)
        # Claim in batches once the buffer runs low, but never leave an
        # executor idle while tasks could be claimed.
        if free <= 0:
            return 0
        if buffered == 0 or free >= max(1, capacity // 2):
            return free
        return 0

    def async_claim_size(self) -> int:
        """How many tasks of ``async def`` handlers to claim now (0: not yet).

        Up to ``async_concurrency`` run at once and none wait ahead (the
        loop starts a coroutine as soon as it is claimed); claims come in
        batches once an eighth of the places are free, or at once when none
        is taken.
        """
        if self._coroutines is None:
            return 0
        capacity = self._options.async_concurrency
        held = self._ledger.buffered_in(COROUTINES) + self._ledger.running_in(COROUTINES)
        free = capacity - held
        if free <= 0:
            return 0
        return free if held == 0 or free >= max(1, capacity // 8) else 0

    def _lanes(self) -> list[tuple[str, list[str], int]]:
        """(lane, its task types, how many to claim) of each pool with room."""
        sync_types: list[str] = []
        async_types: list[str] = []
        for task_type in self._handlers:
            (async_types if self._handlers.is_async(task_type) else sync_types).append(task_type)
        lanes = []
        if sync_types:
            lanes.append((THREADS, sync_types, self.claim_size()))
        if async_types:
            lanes.append((COROUTINES, async_types, self.async_claim_size()))
        return [lane for lane in lanes if lane[2] > 0]

    def _limits(self, types: list[str]) -> dict[str, Limits]:
        """The rate and concurrency limits of the handlers' types."""
        found = {t: self._handlers.options(t).limits for t in types}
        return {t: limits for t, limits in found.items() if limits is not None}

    def _claim(self, lanes: list[tuple[str, list[str], int]]) -> bool:
        """Claim for each lane; True if one came back full (maybe more)."""
        limits = self._limits(list(self._handlers))
        if any(lim.rate is not None for lim in limits.values()):
            # A rate-limited type may be held back: look again when its
            # next token is due (no thread waits for it).
            rates = [lim.rate.rate for lim in limits.values() if lim.rate is not None]
            self._next_token = self._monotonic() + 1.0 / max(rates)
        full = False
        for lane, types, limit in lanes:
            if lane == COROUTINES and self._coroutines is not None:
                self._coroutines.start()  # the loop starts with the first async task
            lane_limits = {t: lim for t, lim in limits.items() if t in types}
            got = self._claim_lane(lane, types, limit, lane_limits)
            full = full or got == limit
        return full

    def _claim_lane(self, lane: str, types: list[str], limit: int,
                    limits: dict[str, Limits]) -> int:  # fmt: skip
        before = self._monotonic()
        # Completions waiting to be written ride along with the claim: one
        # commit for both (the recorder writes whatever is not taken).
        lent = self._recorder.lend()
        try:
            tasks = self._queue.complete_and_claim(
                [(o.task, o.result) for o in lent], limit, worker_id=self._worker_id,
                task_types=types, queues=self._options.queues, limits=limits,
                durations=durations(lent),
            )  # fmt: skip
        except UNSTORABLE:
            if not lent:
                raise
            # A completion the storage refuses for good: the recorder sorts
            # it out; the claim itself is not at fault and goes on alone.
            self._recorder.give_back(lent)
            lent = []
            tasks = self._queue.complete_and_claim(
                [], limit, worker_id=self._worker_id, task_types=types,
                queues=self._options.queues, limits=limits,
            )  # fmt: skip
        except BaseException:
            self._recorder.give_back(lent)
            raise
        self._recorder.settle(lent)
        if tasks:
            late = self._ledger.offer(tasks, before + self._queue.lease_seconds, lane)
            give_back(self._queue, late, "claimed during stop", self._name)
            if lane == COROUTINES and self._coroutines is not None:
                self._coroutines.wake()
        return len(tasks)

    def _drop_paused(self) -> None:
        paused = self._queue.paused()
        if paused:
            dropped = self._ledger.take_buffered(lambda t: t.queue_name in paused)
            give_back(self._queue, dropped, "their queue was paused", self._name)

    # -- heartbeat ---------------------------------------------------------------
    def heartbeat(self) -> None:
        """Renew the leases of every claim held (buffered, running, and
        outcomes not yet committed); flag the handlers of lost ones."""
        claims = self._ledger.held() + self._recorder.held()
        if not claims:
            return
        before = self._monotonic()
        renewed = self._queue.renew(claims)
        self._ledger.renewed(renewed, before + self._queue.lease_seconds)
        not_renewed = {c for c in claims if c not in renewed}
        if not_renewed:
            self._lost(not_renewed)

    def _lost(self, not_renewed: set[Claim]) -> None:
        attempts, dropped = self._ledger.lose(not_renewed)
        if not attempts and not dropped:
            return
        now = self._queue.clock.time()
        # One read tells the handlers (and the log) what happened: cancelled,
        # or rescued after the lease ran out and now someone else's.
        found = {
            t.id: t
            for t in self._queue.get_tasks([t.id for t in dropped] + [a.task.id for a in attempts])
        }
        statuses: dict[Claim, str | None] = {}
        for attempt in attempts:
            stored = found.get(attempt.task.id)
            statuses[attempt.claim] = None if stored is None else stored.status.value
            cancelled = stored is not None and stored.status == "cancelled"
            attempt.ctx.cancel("cancelled" if cancelled else "lost")
            if attempt.interrupt is not None:
                attempt.interrupt()  # an async handler: cancelled for real
        for task in dropped + [a.task for a in attempts]:
            self._log_lost(task, found.get(task.id))
        events = [(t, None) for t in dropped] + [(a.task, statuses.get(a.claim)) for a in attempts]
        self._queue.hooks.emit_lazy(
            lambda: [
                Event(EventKind.LEASE_LOST, t.id, task=t, worker=self._name, at=now, status=status)
                for t, status in events
            ]
        )

    def _log_lost(self, task: Task, stored: Task | None) -> None:
        """One line per lost claim, with the reason: a cancellation is the
        user's doing (INFO), anything else means this worker stalled past
        its lease (WARNING)."""
        cancelled = stored is not None and stored.status == "cancelled"
        LOGGER.log(
            logging.INFO if cancelled else logging.WARNING,
            "%s: task %d: claim no longer held (%s)", self._name, task.id,
            why_not_held(task, stored), extra=task_fields(task),
        )  # fmt: skip
