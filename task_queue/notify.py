"""Wake-ups: telling waiting threads that there may be work.

In-process, a TaskQueue keeps a set of listeners (anything with ``set()``,
such as a ``threading.Event``) and sets them whenever a task may have
become available through it: an enqueue, a retry recorded, a release, a
rescue. That is how an idle Worker in the same process starts a task
within a millisecond or two.

Across processes the storage's change feed answers "did anyone else commit?"
cheaply (:class:`task_queue.storage.base.ChangeFeed`); pollers ask it every
``poll_interval`` instead of running a claim query.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Wakeable(Protocol):
    """Anything with ``set()``, such as a threading.Event."""

    def set(self) -> None: ...


class Listeners:
    """A set of :class:`Wakeable` to set together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: frozenset[Wakeable] = frozenset()

    def add(self, listener: Wakeable) -> None:
        with self._lock:
            self._listeners = self._listeners | {listener}

    def remove(self, listener: Wakeable) -> None:
        with self._lock:
            self._listeners = self._listeners - {listener}

    def notify(self) -> None:
        # Replaced, never mutated: no lock here, so a signal handler that
        # enqueues while this thread notifies cannot deadlock on it.
        for listener in self._listeners:
            listener.set()


class Wakeup:
    """A ``threading.Event`` whose ``set()`` may be called again while the
    same thread is inside it: a signal handler that enqueues (waking every
    listener) can interrupt the main thread mid-``set()``, and Event's
    non-reentrant lock would deadlock there."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if self._flag:
            return  # already set: whoever waits wakes anyway (hot path: once per task)
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            if not self._flag:
                self._cond.wait(timeout)
            return self._flag
