"""Waiting for tasks to finish: ``TaskQueue.wait()`` and ``result()``.

Each caller blocks on an Event of its own. One watcher thread per TaskQueue
(running only while someone waits) looks at every waited-for task at once,
in one query, when something may have changed:

* at once when an outcome commits through the same TaskQueue (it nudges
  the watcher: no polling for work done in this process);
* otherwise when the change feed says another process committed, checked
  every ``POLL_INTERVAL`` (a few µs on SQLite), and at least every
  ``RECHECK_EVERY`` seconds whatever the feed says (the fallback of a push
  feed that missed a notification).

So a thousand waiters cost one query per change, not a thousand per poll.

A coroutine (``await_task()``/``aresult()``) waits on a future of its loop
instead of an Event: the same watcher resolves it through
``call_soon_threadsafe``, so awaiting a result blocks no loop and takes no
thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import aio
from .errors import QueueClosedError, StorageError, TaskNotFoundError
from .notify import Wakeup
from .task import Task

if TYPE_CHECKING:
    from .queue import TaskQueue

LOGGER = logging.getLogger(__name__)

#: How often the watcher asks the change feed about other processes' commits.
POLL_INTERVAL = 0.05
#: Seconds after which the watcher reads the waited-for tasks even if no
#: change was seen: the fallback for a push feed (PostgreSQL's NOTIFY) that
#: missed one (a process that exited before its debounced NOTIFY went out).
RECHECK_EVERY = 1.0


class _Waiter:
    """One caller waiting for one task; ``wake()`` tells it the answer is in
    (called by the watcher, under the Waiters' lock: quick, never blocking)."""

    __slots__ = ("error", "task", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.task: Task | None = None
        self.error: BaseException | None = None

    def settle(self, task: Task | None = None, error: BaseException | None = None) -> None:
        self.task, self.error = task, error
        self.wake()


def _future_waker(future: asyncio.Future[None]) -> Callable[[], None]:
    inbox = aio.inbox_of(future.get_loop())

    def wake() -> None:
        inbox.post(_resolve, future)

    return wake


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Waiters:
    """The callers waiting on one TaskQueue, and their watcher."""

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = queue
        self._lock = threading.Lock()
        self._waiting: dict[int, set[_Waiter]] = {}
        self._nudge = Wakeup()
        self._thread: threading.Thread | None = None
        self._closed = False

    def wait(self, task_id: int, timeout: float | None) -> Task:
        _check_timeout(timeout)
        task = self._queue.storage.get(task_id)
        if _finished(task, task_id):
            assert task is not None
            return task
        event = threading.Event()
        waiter = self._add(task_id, event.set)
        try:
            deadline = math.inf if timeout is None else time.monotonic() + timeout
            while not event.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"task {task_id} did not finish within {timeout}s")
        finally:
            self._discard(task_id, waiter)
        return _answer(waiter)

    async def await_task(self, task_id: int, timeout: float | None) -> Task:
        """:meth:`wait` for a coroutine: the loop is never blocked."""
        _check_timeout(timeout)
        task: Task | None = await aio.call(self._queue.storage, "get", task_id)
        if _finished(task, task_id):
            assert task is not None
            return task
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = self._add(task_id, _future_waker(future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"task {task_id} did not finish within {timeout}s") from None
        finally:
            self._discard(task_id, waiter)
        return _answer(waiter)

    def _add(self, task_id: int, wake: Callable[[], None]) -> _Waiter:
        waiter = _Waiter(wake)
        with self._lock:
            if self._closed:
                raise QueueClosedError("the TaskQueue is closed")
            self._waiting.setdefault(task_id, set()).add(waiter)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="task_queue-waiters", daemon=True
                )
                self._thread.start()
        self._nudge.set()  # it may have finished since the caller's read
        return waiter

    def _discard(self, task_id: int, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiting.get(task_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[task_id]

    def nudge(self) -> None:
        """An outcome committed through this TaskQueue: look now."""
        if self._waiting:
            self._nudge.set()

    def close(self) -> None:
        """The queue is closing: every waiter gets QueueClosedError."""
        with self._lock:
            self._closed = True
            waiting = [w for ws in self._waiting.values() for w in ws]
            thread = self._thread
        for waiter in waiting:
            error = QueueClosedError("the TaskQueue was closed while waiting for the task")
            waiter.settle(error=error)
        self._nudge.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _watch(self) -> None:
        feed = self._queue.storage.change_feed()
        checked = time.monotonic()
        while True:
            nudged = self._nudge.wait(POLL_INTERVAL)
            self._nudge.clear()
            with self._lock:
                if self._closed or not self._waiting:
                    self._thread = None
                    return
                ids = list(self._waiting)
            try:
                overdue = time.monotonic() - checked >= RECHECK_EVERY
                if not (feed.changed() or nudged or overdue):
                    continue
                checked = time.monotonic()
                finished, missing = self._queue.storage.finished_among(ids)
            except QueueClosedError:
                continue  # close() tells the waiters
            except StorageError as exc:
                LOGGER.warning("looking at waited-for tasks failed (retrying): %s", exc)
                continue
            with self._lock:
                for task in finished:
                    for waiter in self._waiting.get(task.id, ()):
                        waiter.settle(task)
                for task_id in missing:
                    for waiter in self._waiting.get(task_id, ()):
                        gone = TaskNotFoundError(f"task {task_id} was deleted (purged)")
                        waiter.settle(error=gone)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (timeout >= 0):
        raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")


def _finished(task: Task | None, task_id: int) -> bool:
    """True if there is nothing to wait for (raises for an unknown id)."""
    if task is None:
        raise TaskNotFoundError(f"no task with id {task_id}")
    return task.status.finished


def _answer(waiter: _Waiter) -> Task:
    if waiter.error is not None:
        raise waiter.error
    assert waiter.task is not None
    return waiter.task
