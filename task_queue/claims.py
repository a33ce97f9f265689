"""Claims a TaskQueue holds for callers that answer with a bare task id.

``task = queue.dequeue()`` ... ``queue.complete_task(task["id"], result)``
is the loop of the API this library grew from: the id carries no claim
token. So the queue remembers the claims taken through ``dequeue()`` and
``claim()`` (the calling thread's own first, then the object's latest), and
keeps them alive: while any is held, a renewer thread extends their leases
every ``interval``, so a task that outlasts ``lease_seconds`` is not
rescued and run again while its caller is still working on it. It stops
when none is held (and with the process: a dead process renews nothing, so
its claims are rescued as usual).

A Worker passes ``remember=False``: it keeps the Task (which carries its
token) and renews its own claims by heartbeat.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

from .errors import QueueClosedError, StorageError
from .logfields import task_fields
from .task import Claim, Task

LOGGER = logging.getLogger(__name__)

#: How many given-up claims are remembered, to answer a second
#: complete_task(id) with False instead of "never claimed".
_SETTLED_MEMORY = 10_000


class ClaimBook:
    """The remembered claims of one TaskQueue, and their lease renewer."""

    def __init__(self, renew: Callable[[list[Claim]], set[Claim]], interval: float) -> None:
        """``renew(claims)`` extends the leases of claims and returns those
        renewed; it is called every ``interval`` seconds while claims are held."""
        self._renew = renew
        self._interval = interval
        self._reset()

    def _reset(self) -> None:
        # Re-entrant: a signal handler may call dequeue() while this thread
        # is inside the book already.
        self._cond = threading.Condition(threading.RLock())
        self._local = threading.local()
        # id -> token -> Task: every live claim this object took and remembers.
        self._held: dict[int, dict[int, Task]] = {}
        self._settled: collections.OrderedDict[int, None] = collections.OrderedDict()
        # Claims whose outcome is being written right now: not renewing
        # them is not a loss (the write may just have committed).
        self._settling: set[Claim] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def after_fork(self) -> None:
        """In a child after fork(): the parent's claims are the parent's
        (renewing or completing them here would fight it); start empty."""
        self._reset()

    # -- bookkeeping -------------------------------------------------------------
    def remember(self, tasks: Sequence[Task]) -> None:
        mine = self._mine()
        with self._cond:
            for task in tasks:
                claim = task.claim
                self._held.setdefault(task.id, {})[claim.token] = task
                mine[task.id] = claim.token
                self._settled.pop(task.id, None)
            if len(mine) > 2 * len(self._held) + 64:
                # Entries for claims other threads settled: drop them.
                for task_id in [i for i, t in mine.items() if t not in self._held.get(i, ())]:
                    del mine[task_id]
            self._start_renewer()

    def lookup(self, task_id: int) -> Task | None:
        """The claimed Task for ``task_id``: this thread's claim, else the latest."""
        token = self._mine().get(task_id)
        with self._cond:
            claims = self._held.get(task_id)
            if not claims:
                return None
            if token is not None and token in claims:
                return claims[token]
            return next(reversed(claims.values()))

    @contextlib.contextmanager
    def settling(self, claim: Claim) -> Iterator[None]:
        """Around writing the claim's outcome: forgotten once the write
        returns, kept (for a later try) if it raises."""
        with self._cond:
            self._settling.add(claim)
        try:
            yield
        except BaseException:
            with self._cond:
                self._settling.discard(claim)
            raise
        with self._cond:
            self._settling.discard(claim)
            self._drop(claim)

    def settled(self, task_id: int) -> bool:
        """True if this object held a claim on ``task_id`` and gave it up."""
        with self._cond:
            return task_id in self._settled

    def held(self) -> list[Task]:
        """Every remembered claim, oldest first."""
        with self._cond:
            return self._held_tasks()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _drop(self, claim: Claim) -> None:
        claims = self._held.get(claim.task_id)
        if claims is not None and claims.pop(claim.token, None) is not None:
            if not claims:
                del self._held[claim.task_id]
            self._settled[claim.task_id] = None
            while len(self._settled) > _SETTLED_MEMORY:
                self._settled.popitem(last=False)

    def _mine(self) -> dict[int, int]:
        mine: dict[int, int] | None = getattr(self._local, "claims", None)
        if mine is None:
            mine = self._local.claims = {}
        return mine

    # -- the renewer ---------------------------------------------------------------
    def _start_renewer(self) -> None:
        # Caller holds self._cond.
        if self._thread is None and not self._closed and self._held:
            self._thread = threading.Thread(
                target=self._renew_loop, name="task_queue-claim-renewer", daemon=True
            )
            self._thread.start()

    def _renew_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(self._interval)
                if self._closed or not self._held:
                    self._thread = None
                    return
                claims = [task.claim for task in self._held_tasks()]
            try:
                renewed = self._renew(claims)
            except QueueClosedError:
                with self._cond:
                    self._thread = None
                return
            except StorageError as exc:
                LOGGER.warning("renewing %d claim(s) failed (retrying): %s", len(claims), exc)
                continue
            except Exception:  # the queue was closed, or worse: stop renewing
                LOGGER.debug("claim renewer stops", exc_info=True)
                with self._cond:
                    self._thread = None
                return
            with self._cond:
                # Not renewed and still remembered: lost (a claim settled
                # meanwhile is simply no longer running).
                lost = [
                    self._held[c.task_id][c.token]
                    for c in claims
                    if c not in renewed
                    and c not in self._settling
                    and c.token in self._held.get(c.task_id, {})
                ]
                for task in lost:
                    self._drop(task.claim)
            for task in lost:
                LOGGER.warning(
                    "task %d: its claim taken with dequeue() is no longer held (cancelled, or "
                    "rescued after its lease ran out)", task.id, extra=task_fields(task),
                )  # fmt: skip

    def _held_tasks(self) -> list[Task]:
        return [task for claims in self._held.values() for task in claims.values()]
