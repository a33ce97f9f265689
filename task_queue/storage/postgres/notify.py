"""Cross-process wake-ups on PostgreSQL: LISTEN/NOTIFY, debounced.

Three pieces:

* :class:`Listener`: one per process (per server and channel), a thread on
  a **dedicated** connection that only LISTENs: never a pooled connection,
  never one that runs the storage's queries (pgqueuer's psycopg driver
  listens on its query connection, and a query waited 950 ms behind it in
  a probe). It logs each notification with the sending backend's pid. When
  its connection dies (a server restart, ``pg_terminate_backend``) it
  reconnects with backoff, and the reconnect itself counts as a change:
  whatever was notified meanwhile was missed, so everyone looks (claims)
  right after. Until then the feeds answer "changed" twice a second, and
  the Workers' own polling (next due time, the 1 s sweep) covers the gap.
* :class:`Notifier`: what the writing code calls after a commit that may
  interest other processes (a task enqueued, finished, released, retried,
  rescued; a queue paused or resumed). NOTIFY takes a cluster-wide lock at
  commit: one in every enqueue transaction cost 21-42% of enqueue
  throughput in a probe, one per 50 ms per process cost nothing. So the
  first change after a quiet spell is notified at once (on the same
  connection, right after its commit), and later ones within 50 ms are
  folded into one trailing NOTIFY sent by a timer thread. The payload is
  constant: a notification says only "look".
* :class:`Feed`: the :class:`~task_queue.storage.base.ChangeFeed` of one
  storage object: "did another process (or another storage object) commit
  since I last asked?". Notifications sent by the storage object's own
  connections are not news to it (the queue wakes its own listeners).
  When nothing new has arrived it makes the listener do one round trip on
  its connection first: a NOTIFY committed before that round trip has been
  delivered by the end of it, so ``changed()`` is never behind a commit
  that finished before it was called. (Own connections are known by their
  backend pids; a pid the OS later reuses for another process's session
  would hide that session's notifications from this feed: polling, the
  fallback, still finds its work.)
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

LOGGER = logging.getLogger(__name__)

#: One NOTIFY per this many seconds per storage object, at most.
DEBOUNCE = 0.05
#: Notifications remembered for the feeds (more are summed up as "changed").
LOG_SIZE = 1024
#: While disconnected, feeds say "changed" this often (the polling fallback).
DISCONNECTED_POLL = 0.5


class Listener:
    """The LISTEN connection of this process for one server and channel,
    and its thread (see the module docstring). Get it with :func:`listener`."""

    def __init__(self, connect: Callable[[], Any], channel: str) -> None:
        self._connect = connect
        self.channel = channel
        self._cond = threading.Condition()
        self._seq = 0
        #: (seq, sender pid); pid 0 marks a reconnect (news for everyone).
        self._log: collections.deque[tuple[int, int]] = collections.deque(maxlen=LOG_SIZE)
        self._connected = False
        self._syncs_asked = 0
        self._syncs_done = 0
        self._subscribers: set[Callable[[int], None]] = set()
        self._users = 0
        self._stopped = False
        self._wake_r, self._wake_w = os.pipe()
        self._conn: Any = None
        #: The backend pid of the listening connection (tests terminate it).
        self.backend_pid: int | None = None
        self._thread = threading.Thread(target=self._run, name="task_queue-listener", daemon=True)
        self._thread.start()

    # -- used by the feeds ------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def position(self) -> int:
        with self._cond:
            return self._seq

    def news_since(self, seen: int, excluded: Callable[[int], bool]) -> tuple[bool, int]:
        """Whether a notification not sent by an ``excluded`` pid arrived
        after position ``seen``; and the position now."""
        with self._cond:
            seq = self._seq
            if seq == seen:
                return False, seq
            if not self._log or self._log[0][0] > seen + 1:
                return True, seq  # some fell out of the log: assume news
            for at, pid in reversed(self._log):
                if at <= seen:
                    break
                if pid == 0 or not excluded(pid):
                    return True, seq
            return False, seq

    def sync(self, timeout: float = 2.0) -> bool:
        """One round trip on the listening connection: what was notified
        before this call has arrived when it returns True."""
        with self._cond:
            if not self._connected:
                # Reconnecting (backoff from 0.1 s): worth a short wait.
                self._cond.wait_for(lambda: self._connected or self._stopped, min(timeout, 0.2))
            if not self._connected:
                return False
            self._syncs_asked += 1
            wanted = self._syncs_asked
        os.write(self._wake_w, b"s")
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._syncs_done < wanted and self._connected:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self._syncs_done >= wanted

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the LISTEN is in place (a new listener connects in
        its thread)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._connected or self._stopped, timeout)

    def subscribe(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(sender pid)`` on each notification (0: a reconnect)."""
        with self._cond:
            self._subscribers.add(callback)

    def unsubscribe(self, callback: Callable[[int], None]) -> None:
        with self._cond:
            self._subscribers.discard(callback)

    # -- the thread ---------------------------------------------------------------
    def _record(self, pid: int) -> None:
        with self._cond:
            self._seq += 1
            self._log.append((self._seq, pid))
            subscribers = list(self._subscribers)
            self._cond.notify_all()
        for callback in subscribers:
            try:
                callback(pid)
            except Exception:  # pragma: no cover - a subscriber's own bug
                LOGGER.exception("task_queue listener: a wake-up callback failed")

    def _run(self) -> None:
        backoff = 0.1
        first = True
        while not self._stopped:
            try:
                self._open()
            except Exception as exc:
                if self._stopped:
                    break
                LOGGER.warning(
                    "task_queue listener: cannot connect (retrying in %.1fs): %s", backoff, exc
                )
                self._sleep(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.1
            if not first:
                # Notifications sent while we were away are lost: everyone
                # looks now (claims right after reconnecting).
                LOGGER.info("task_queue listener: reconnected to LISTEN on %s", self.channel)
                self._record(0)
            first = False
            try:
                self._listen()
            except Exception as exc:
                if not self._stopped:
                    LOGGER.warning("task_queue listener: connection lost: %s", exc)
            finally:
                self._close_conn()

    def _open(self) -> None:
        conn = self._connect()
        try:
            conn.execute(f'LISTEN "{self.channel}"')
        except BaseException:
            conn.close()
            raise
        conn.add_notify_handler(lambda n: self._record(int(n.pid)))
        self._conn = conn
        self.backend_pid = int(conn.info.backend_pid)
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    def _close_conn(self) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _listen(self) -> None:
        conn = self._conn
        pgconn = conn.pgconn
        sock = pgconn.socket
        while not self._stopped:
            ready, _, _ = select.select([sock, self._wake_r], [], [], 5.0)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            with self._cond:
                asked = self._syncs_asked
            if asked > self._syncs_done and not self._stopped:
                # The round trip delivers (to the notify handler) every
                # notification committed before it was sent.
                conn.execute("SELECT 1")
                with self._cond:
                    self._syncs_done = asked
                    self._cond.notify_all()
            if sock in ready or not ready:
                if not ready:
                    conn.execute("SELECT 1")  # idle: is the connection still alive?
                    continue
                pgconn.consume_input()
                if pgconn.status != 0:  # CONNECTION_OK
                    raise ConnectionError("the listening connection is closed")
                while True:
                    notify = pgconn.notifies()
                    if notify is None:
                        break
                    self._record(int(notify.be_pid))

    def _sleep(self, seconds: float) -> None:
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        if ready:
            os.read(self._wake_r, 4096)

    # -- lifetime -------------------------------------------------------------------
    def retain(self) -> None:
        with self._cond:
            self._users += 1

    def release(self) -> bool:
        """One user less; True when none is left (the listener stopped)."""
        with self._cond:
            self._users -= 1
            if self._users > 0:
                return False
            self._stopped = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        return True


_LISTENERS: dict[tuple[str, str], Listener] = {}
_LISTENERS_LOCK = threading.Lock()
_LISTENERS_PID = os.getpid()


def listener(key: str, channel: str, connect: Callable[[], Any]) -> Listener:
    """This process's listener for server ``key`` and ``channel`` (started
    on first use; every storage object on the same server and schema in
    this process shares it). Call ``release_listener`` once done."""
    global _LISTENERS_PID
    with _LISTENERS_LOCK:
        if os.getpid() != _LISTENERS_PID:
            # A child after fork(): the parent's threads and connections
            # are not ours (and not running here).
            _LISTENERS.clear()
            _LISTENERS_PID = os.getpid()
        found = _LISTENERS.get((key, channel))
        if found is None:
            found = _LISTENERS[key, channel] = Listener(connect, channel)
        found.retain()
        return found


def release_listener(key: str, channel: str, used: Listener) -> None:
    with _LISTENERS_LOCK:
        if used.release() and _LISTENERS.get((key, channel)) is used:
            del _LISTENERS[key, channel]


class Feed:
    """The change feed of one storage object (see the module docstring)."""

    def __init__(
        self,
        listener: Listener,
        own_pid: Callable[[int], bool],
        check_open: Callable[[], None],
    ) -> None:
        self._listener = listener
        self._own = own_pid
        self._check_open = check_open
        self._seen: int | None = None
        self._next_blind = 0.0
        self._callbacks: list[Callable[[int], None]] = []

    def changed(self) -> bool:
        self._check_open()
        listener = self._listener
        if self._seen is not None:
            news, position = listener.news_since(self._seen, self._own)
            if news:
                self._seen = position
                return True
        first = self._seen is None
        synced = listener.sync()
        if self._seen is None:
            self._seen = listener.position()
            return True
        news, self._seen = listener.news_since(self._seen, self._own)
        if not synced and not listener.connected:
            # Blind: say "changed" twice a second, so pollers look anyway.
            now = time.monotonic()
            if now >= self._next_blind:
                self._next_blind = now + DISCONNECTED_POLL
                return True
        return news or first

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from the listener's thread) as soon as
        another process's notification arrives: an idle Worker starts a
        task enqueued elsewhere within a millisecond or two instead of at
        its next poll. Notifications of this storage object's own
        connections do not call it."""

        def relay(pid: int) -> None:
            if pid == 0 or not self._own(pid):
                callback()

        self._callbacks.append(relay)
        self._listener.subscribe(relay)

    def close(self) -> None:
        for callback in self._callbacks:
            self._listener.unsubscribe(callback)
        self._callbacks.clear()


class Notifier:
    """Debounced NOTIFY for one storage object (see the module docstring)."""

    def __init__(self, send: Callable[[], None], interval: float = DEBOUNCE) -> None:
        self._send = send
        self._interval = interval
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._pending = False
        self._timer: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False

    def now_or_later(self) -> bool:
        """A change committed: True if the caller should NOTIFY now (the
        first in a while); otherwise one trailing NOTIFY is scheduled."""
        with self._lock:
            mono = time.monotonic()
            if mono - self._last >= self._interval:
                self._last = mono
                return True
            self._pending = True
            if self._timer is None and not self._closed:
                self._timer = threading.Thread(
                    target=self._trail, name="task_queue-notify", daemon=True
                )
                self._timer.start()
            return False

    def _trail(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._pending:
                    self._timer = None
                    return
                wait = self._last + self._interval - time.monotonic()
            if wait > 0:
                self._wake.wait(wait)
                continue
            with self._lock:
                self._pending = False
                self._last = time.monotonic()
            try:
                self._send()
            except Exception as exc:  # the next change notifies again
                LOGGER.debug("task_queue: a trailing NOTIFY failed: %s", exc)

    def close(self) -> None:
        """Stop; a trailing NOTIFY still owed is sent now, not dropped: a
        process that completes its last tasks and closes within the debounce
        interval otherwise left other processes' waiters to their polling."""
        with self._lock:
            self._closed = True
            owed, self._pending = self._pending, False
            timer = self._timer
        self._wake.set()
        if timer is not None:
            timer.join(timeout=2.0)
        if owed:
            try:
                self._send()
            except Exception as exc:  # closing anyway; others poll
                LOGGER.debug("task_queue: the last NOTIFY failed: %s", exc)
