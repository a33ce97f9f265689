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

Every method takes the lock itself and returns; nothing outside this
module touches the state. Waiting is on the one Condition.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Callable

from ..context import TaskContext
from ..task import Claim, Task


@dataclasses.dataclass(eq=False)
class Slot:
    """One executor thread. Its own lock orders the timekeeper's
    asynchronous exception against the handler entering and leaving."""

    index: int
    thread: threading.Thread | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    current: Attempt | None = None
    in_handler: bool = False
    #: Given up: at shutdown past the deadline, or replaced after a timeout.
    abandoned: bool = False


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
        self._buffer: collections.deque[Task] = collections.deque()
        self._running: dict[Claim, Attempt] = {}
        # Monotonic time until which each buffered claim's lease surely
        # lasts (set at claim, pushed on by each renewal): a task whose
        # lease ran out while it waited (the process was frozen or starved)
        # may be someone else's by now, and is not started.
        self._valid_until: dict[Claim, float] = {}
        self._handing_over = 0
        self._stopping = False
        self._slots: list[Slot] = []
        #: Moving average of handler run time (seconds), None until one ran.
        self.avg_duration: float | None = None

    # -- sizes (lock-free reads of lengths: good enough for sizing) ------------
    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def idle(self) -> bool:
        return not self._buffer and not self._running

    # -- the dispatcher's side -------------------------------------------------
    def offer(self, tasks: list[Task], valid_until: float) -> list[Task]:
        """Buffer freshly claimed tasks; returns those refused because the
        worker is stopping (the caller gives them back)."""
        with self._cond:
            if self._stopping:
                return tasks
            for task in tasks:
                self._valid_until[task.claim] = valid_until
            self._buffer.extend(tasks)
            self._cond.notify(len(tasks))
            return []

    def held(self) -> list[Claim]:
        """Claims of buffered and running tasks (the heartbeat renews them)."""
        with self._cond:
            return [t.claim for t in self._buffer] + list(self._running)

    def renewed(self, claims: set[Claim], valid_until: float) -> None:
        with self._cond:
            for claim in claims:
                if claim in self._valid_until:
                    self._valid_until[claim] = valid_until

    def take_buffered(self, which: Callable[[Task], bool]) -> list[Task]:
        """Remove and return the buffered tasks ``which`` selects (to give back)."""
        with self._cond:
            taken = [t for t in self._buffer if which(t)]
            if taken:
                kept = [t for t in self._buffer if not which(t)]
                self._buffer.clear()
                self._buffer.extend(kept)
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
            dropped = [t for t in self._buffer if t.claim in lost]
            if dropped:
                kept = [t for t in self._buffer if t.claim not in lost]
                self._buffer.clear()
                self._buffer.extend(kept)
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
            task = self._buffer.popleft()
            valid_until = self._valid_until.pop(task.claim, math.inf)
            attempt = start(task, slot)
            if self._monotonic() >= valid_until:
                attempt.ctx.cancel("expired")  # not started: the executor gives it back
            self._running[task.claim] = attempt
            return attempt

    def finish(self, attempt: Attempt, elapsed: float) -> bool:
        """The handler returned. True if the attempt is still this worker's
        to settle: then it is handing over until :meth:`handed_over`."""
        with self._cond:
            avg = self.avg_duration
            self.avg_duration = elapsed if avg is None else 0.8 * avg + 0.2 * elapsed
            ours = self._running.get(attempt.claim) is attempt and not attempt.slot.abandoned
            if ours:
                del self._running[attempt.claim]
                self._handing_over += 1
            if self._stopping:
                self._cond.notify_all()  # stop() waits for running tasks
            return ours

    def handed_over(self) -> None:
        with self._cond:
            self._handing_over -= 1
            self._cond.notify_all()

    def drop(self, attempt: Attempt) -> bool:
        """Remove a running attempt our own code failed on; True if it was held."""
        with self._cond:
            held = self._running.get(attempt.claim) is attempt
            if held:
                del self._running[attempt.claim]
            self._cond.notify_all()
            return held

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
            del self._running[attempt.claim]
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
            buffered = list(self._buffer)
            self._buffer.clear()
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
            while self._handing_over:
                self._cond.wait(0.05)
            return leftover
