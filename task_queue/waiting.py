"""Waiting for tasks to finish: ``TaskQueue.wait()`` and ``result()``.

Each caller blocks on an Event of its own. One watcher thread per TaskQueue
(running only while someone waits) looks at every waited-for task at once,
in one query, when something may have changed:

* at once when an outcome commits through the same TaskQueue (it nudges
  the watcher: no polling for work done in this process);
* otherwise when the change feed says another process committed, checked
  every ``POLL_INTERVAL`` (a few µs on SQLite).

So a thousand waiters cost one query per change, not a thousand per poll.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from .errors import QueueClosedError, StorageError, TaskNotFoundError
from .notify import Wakeup
from .task import Task

if TYPE_CHECKING:
    from .queue import TaskQueue

LOGGER = logging.getLogger(__name__)

#: How often the watcher asks the change feed about other processes' commits.
POLL_INTERVAL = 0.05


class _Waiter:
    __slots__ = ("error", "event", "task")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.task: Task | None = None
        self.error: BaseException | None = None


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
        if timeout is not None and not (timeout >= 0):
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
        task = self._queue.storage.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"no task with id {task_id}")
        if task.status.finished:
            return task
        waiter = _Waiter()
        with self._lock:
            if self._closed:
                raise QueueClosedError("the TaskQueue is closed")
            self._waiting.setdefault(task_id, set()).add(waiter)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="task_queue-waiters", daemon=True
                )
                self._thread.start()
        self._nudge.set()  # it may have finished since the read above
        try:
            deadline = math.inf if timeout is None else time.monotonic() + timeout
            while not waiter.event.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"task {task_id} did not finish within {timeout}s")
        finally:
            with self._lock:
                waiters = self._waiting.get(task_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiting[task_id]
        if waiter.error is not None:
            raise waiter.error
        assert waiter.task is not None
        return waiter.task

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
            waiter.error = QueueClosedError("the TaskQueue was closed while waiting for the task")
            waiter.event.set()
        self._nudge.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _watch(self) -> None:
        feed = self._queue.storage.change_feed()
        while True:
            nudged = self._nudge.wait(POLL_INTERVAL)
            self._nudge.clear()
            with self._lock:
                if self._closed or not self._waiting:
                    self._thread = None
                    return
                ids = list(self._waiting)
            try:
                if not (feed.changed() or nudged):
                    continue
                finished, missing = self._queue.storage.finished_among(ids)
            except QueueClosedError:
                continue  # close() tells the waiters
            except StorageError as exc:
                LOGGER.warning("looking at waited-for tasks failed (retrying): %s", exc)
                continue
            with self._lock:
                for task in finished:
                    for waiter in self._waiting.get(task.id, ()):
                        waiter.task = task
                        waiter.event.set()
                for task_id in missing:
                    for waiter in self._waiting.get(task_id, ()):
                        waiter.error = TaskNotFoundError(f"task {task_id} was deleted (purged)")
                        waiter.event.set()
