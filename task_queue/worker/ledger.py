"""The in-flight ledger: every task a Worker holds, and the only lock on it.

A claimed task is in exactly one place at a time:

* **buffered**: claimed, waiting for a free executor (prefetch);
* **running**: taken by an executor (from the moment it leaves the buffer,
  so ``stop()`` always finds it in one place or the other: to wait for it,
  or to give it back);
* **handing over**: finished, its outcome decided but not yet queued to
  the recorder (stop() waits for these, or a task finishing during the
  drain would be left running);
* then the recorder's, until its outcome commits (it renews those leases).

Attempts are keyed by their claim (task id *and* token), never the id
alone: the same task can be running twice in one Worker (a timed-out
handler blocked in C returns after its retry started here), and the old
attempt's end must not touch the new one's record.

Tasks belong to one of two pools (lanes): ``THREADS`` (executor threads
take them, blocking in :meth:`InFlight.take`) and ``COROUTINES`` (the
Worker's event loop takes them without blocking, :meth:`InFlight.take_nowait`).
Each lane has its own buffer and is sized on its own; everything else
(renewal, loss, timeouts, stopping) treats all attempts alike.

Every method takes the lock itself and returns; nothing outside this
module touches the state. Waiting is on the one Condition.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Callable
from typing import Any

from ..context import TaskContext
from ..task import Claim, Task

#: The lane of sync handlers, run by executor threads.
THREADS = "threads"
#: The lane of ``async def`` handlers, run on the Worker's event loop.
COROUTINES = "coroutines"
LANES = (THREADS, COROUTINES)


@dataclasses.dataclass(eq=False)
class Slot:
    """One executor thread, or one place on the event loop (a coroutine
    slot, made per attempt: index -1, no thread). A thread slot's lock
    orders the timekeeper's asynchronous exception against the handler
    entering and leaving."""

    index: int
    thread: threading.Thread | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    current: Attempt | None = None
    in_handler: bool = False
    #: Given up: at shutdown past the deadline, or replaced after a timeout.
    abandoned: bool = False
    #: THREADS or COROUTINES.
    lane: str = THREADS
    #: A coroutine slot's asyncio Task (set on the loop).
    handle: Any = None


@dataclasses.dataclass(eq=False)
class Attempt:
    """One run of one claimed task in one slot."""

    task: Task
    ctx: TaskContext
    slot: Slot
    #: Seconds this attempt may run (the task's or its handler's), or None.
    timeout: float | None
    #: Monotonic time the timekeeper first acted on the timeout.
    timeout_fired_at: float | None = None
    #: A TaskTimeout was raised asynchronously in the slot (under slot.lock).
    interrupted: bool = False
    #: Stops the handler for real where that is possible: an async
    #: handler's ``task.cancel()`` on its loop (None for threads).
    interrupt: Callable[[], None] | None = None
    #: The task's claim (made once: it keys the ledger).
    claim: Claim = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.claim = self.task.claim


class InFlight:
    """Buffered and running tasks, hand-overs, lease validity, slots."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        # A plain Lock: Condition() would make it an RLock, measurably slower
        # on the path every task takes; nothing here re-enters it.
        self._cond = threading.Condition(threading.Lock())
        self._buffers: dict[str, collections.deque[Task]] = {
            lane: collections.deque() for lane in LANES
        }
        # The executor threads' buffer, the one take() blocks on.
        self._buffer = self._buffers[THREADS]
        self._running: dict[Claim, Attempt] = {}
        self._running_in: dict[str, int] = dict.fromkeys(LANES, 0)
        # Monotonic time until which each buffered claim's lease surely
        # lasts (set at claim, pushed on by each renewal): a task whose
        # lease ran out while it waited (the process was frozen or starved)
        # may be someone else's by now, and is not started.
        self._valid_until: dict[Claim, float] = {}
        self._handing_over = 0
        self._stopping = False
        self._slots: list[Slot] = []
        #: Moving average of sync handlers' run time (seconds), None until one ran.
        self.avg_duration: float | None = None

    # -- sizes (lock-free reads of lengths: good enough for sizing) ------------
    @property
    def buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    @property
    def running(self) -> int:
        return len(self._running)

    def buffered_in(self, lane: str) -> int:
        return len(self._buffers[lane])

    def running_in(self, lane: str) -> int:
        return self._running_in[lane]

    @property
    def stopping(self) -> bool:
        return self._stopping

    def idle(self) -> bool:
        return not self.buffered and not self._running

    # -- the dispatcher's side -------------------------------------------------
    def offer(self, tasks: list[Task], valid_until: float, lane: str = THREADS) -> list[Task]:
        """Buffer freshly claimed tasks for ``lane``; returns those refused
        because the worker is stopping (the caller gives them back)."""
        with self._cond:
            if self._stopping:
                return tasks
            for task in tasks:
                self._valid_until[task.claim] = valid_until
            self._buffers[lane].extend(tasks)
            if lane == THREADS:
                self._cond.notify(len(tasks))
            return []

    def held(self) -> list[Claim]:
        """Claims of buffered and running tasks (the heartbeat renews them)."""
        with self._cond:
            buffered = [t.claim for b in self._buffers.values() for t in b]
            return buffered + list(self._running)

    def renewed(self, claims: set[Claim], valid_until: float) -> None:
        with self._cond:
            for claim in claims:
                if claim in self._valid_until:
                    self._valid_until[claim] = valid_until

    def take_buffered(self, which: Callable[[Task], bool]) -> list[Task]:
        """Remove and return the buffered tasks ``which`` selects (to give back)."""
        with self._cond:
            taken = []
            for buffer in self._buffers.values():
                out = [t for t in buffer if which(t)]
                if out:
                    kept = [t for t in buffer if not which(t)]
                    buffer.clear()
                    buffer.extend(kept)
                    taken += out
            for task in taken:
                self._valid_until.pop(task.claim, None)
            return taken

    def lose(self, lost: set[Claim]) -> tuple[list[Attempt], list[Task]]:
        """Claims found lost by the heartbeat: drop them from the buffer;
        return (running attempts lost, buffered tasks dropped). Only a
        claim still in hand is lost: one whose outcome committed meanwhile
        simply is no longer here."""
        with self._cond:
            attempts = [a for claim, a in self._running.items() if claim in lost]
            dropped = []
            for buffer in self._buffers.values():
                out = [t for t in buffer if t.claim in lost]
                if out:
                    kept = [t for t in buffer if t.claim not in lost]
                    buffer.clear()
                    buffer.extend(kept)
                    dropped += out
            for claim in lost:
                self._valid_until.pop(claim, None)
            return attempts, dropped

    # -- the executors' side ---------------------------------------------------
    def take(self, slot: Slot, start: Callable[[Task, Slot], Attempt]) -> Attempt | None:
        """Block until a buffered task can start in ``slot``; None once the
        worker stops. ``start`` makes the Attempt (under the lock, so the
        task is never in neither place)."""
        with self._cond:
            while not self._buffer and not self._stopping:
                self._cond.wait()
            if not self._buffer:
                return None
            return self._start(self._buffer.popleft(), slot, start)

    def take_nowait(self, lane: str, start: Callable[[Task, Slot], Attempt]) -> Attempt | None:
        """The next buffered task of ``lane`` started in a new slot of its
        own (an event loop's place), or None (none buffered, or stopping)."""
        with self._cond:
            buffer = self._buffers[lane]
            if not buffer or self._stopping:
                return None
            return self._start(buffer.popleft(), Slot(-1, lane=lane), start)

    def _start(self, task: Task, slot: Slot, start: Callable[[Task, Slot], Attempt]) -> Attempt:
        valid_until = self._valid_until.pop(task.claim, math.inf)
        attempt = start(task, slot)
        if self._monotonic() >= valid_until:
            attempt.ctx.cancel("expired")  # not started: the executor gives it back
        self._running[task.claim] = attempt
        self._running_in[slot.lane] += 1
        return attempt

    def finish(self, attempt: Attempt, elapsed: float) -> bool:
        """The handler returned. True if the attempt is still this worker's
        to settle: then it is handing over until :meth:`handed_over`."""
        with self._cond:
            if attempt.slot.lane == THREADS:  # what sizes the threads' prefetch
                avg = self.avg_duration
                self.avg_duration = elapsed if avg is None else 0.8 * avg + 0.2 * elapsed
            ours = self._running.get(attempt.claim) is attempt and not attempt.slot.abandoned
            if ours:
                self._remove(attempt)
                self._handing_over += 1
            if self._stopping:
                self._cond.notify_all()  # stop() waits for running tasks
            return ours

    def handed_over(self) -> None:
        with self._cond:
            self._handing_over -= 1
            # Only stopping waits for hand-overs: waking every idle executor
            # after each task cost the drain a fifth of its throughput.
            if self._stopping:
                self._cond.notify_all()

    def drop(self, attempt: Attempt) -> bool:
        """Remove a running attempt our own code failed on; True if it was held."""
        with self._cond:
            held = self._running.get(attempt.claim) is attempt
            if held:
                self._remove(attempt)
            if self._stopping:
                self._cond.notify_all()  # stop() waits for running tasks
            return held

    def _remove(self, attempt: Attempt) -> None:
        del self._running[attempt.claim]
        self._running_in[attempt.slot.lane] -= 1

    # -- the timekeeper's side -------------------------------------------------
    def timed(self) -> list[Attempt]:
        """Running attempts with a deadline."""
        with self._cond:
            return [a for a in self._running.values() if a.ctx.deadline is not None]

    def abandon(self, attempt: Attempt) -> bool:
        """Give up on a running attempt whose handler will not stop: its
        slot is abandoned (and removed); it is handing over until
        :meth:`handed_over`. False if it is no longer running here."""
        with self._cond:
            if self._running.get(attempt.claim) is not attempt:
                return False
            self._remove(attempt)
            attempt.slot.abandoned = True
            if attempt.slot in self._slots:
                self._slots.remove(attempt.slot)
            self._handing_over += 1
            return True

    # -- slots -------------------------------------------------------------------
    def add_slot(self, slot: Slot) -> None:
        with self._cond:
            self._slots.append(slot)

    def slots(self) -> list[Slot]:
        with self._cond:
            return list(self._slots)

    # -- stopping ----------------------------------------------------------------
    def stop_taking(self) -> tuple[bool, list[Task]]:
        """Start stopping: nothing more is taken from the buffer. Returns
        (stopping already, the buffered tasks nobody started)."""
        with self._cond:
            already = self._stopping
            self._stopping = True
            buffered = [t for b in self._buffers.values() for t in b]
            for buffer in self._buffers.values():
                buffer.clear()
            self._valid_until.clear()
            self._cond.notify_all()
            return already, buffered

    def wait_running(self, deadline: float | None, forced: Callable[[], bool]) -> None:
        """Wait until nothing runs, ``deadline`` (monotonic) passes or
        ``forced()`` turns true (checked every 50 ms: it is set from a signal
        handler, which must not take this lock)."""
        with self._cond:
            while self._running and not forced():
                remaining = None if deadline is None else deadline - self._monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))

    def give_up_running(self) -> list[Attempt]:
        """Abandon whatever still runs (at the drain deadline): flag each
        handler cancelled; then wait for hand-overs in progress. Returns
        the attempts given up (the caller releases their claims)."""
        with self._cond:
            leftover = list(self._running.values())
            for attempt in leftover:
                attempt.slot.abandoned = True
                attempt.ctx.cancel("shutdown")
            self._running.clear()
            self._running_in = dict.fromkeys(LANES, 0)
            while self._handing_over:
                self._cond.wait(0.05)
            return leftover
