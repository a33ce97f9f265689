"""sqlite-worker's model, with the defects of its 0.0.4 release fixed.

The model is kept: one thread serves the SQLite connection; callers on any
thread queue work to it and wait for their own answer; work from concurrent
callers shares one transaction (group commit), at most ``max_count`` units
per transaction. One exception, :meth:`Engine.call_insert` ("caller runs"):
a caller with a single one-row INSERT that finds the engine thread idle and
its queue empty runs that statement on the connection itself, as one
autocommit statement, holding ``_busy`` as the engine thread does for a
batch (a round trip through the thread costs several times the statement).
It never runs anyone else's work and never leaves a transaction open;
under contention everyone queues as before.

What :class:`Engine` changes, each pinned by a test in tests/test_engine.py:

1. ``fetch_results()`` right after ``execute()`` returned None (the wait
   event was created only once the statement ran). Here the token *is* the
   request, holding its own event from birth.
2. Rows were kept only for statements starting with SELECT; here any
   statement that produces rows (``UPDATE ... RETURNING``) returns them,
   fetched before COMMIT as SQLite requires.
3. Errors in write statements were logged and swallowed; here the caller's
   ``fetch_results()`` raises them.
4. ``_results`` and ``_select_events`` grew by one entry per statement
   forever; here nothing is stored per statement in the engine.
5. Callers were answered before COMMIT; here a caller is answered only after
   the transaction holding its work committed (or with the error if it
   did not).
6. ``execute_init`` was assigned after the thread started; here the thread
   waits until the constructor has finished.
7. An unopenable file was a log line in the background thread; here the
   constructor raises it.

Beyond the fixes: every write transaction starts with ``BEGIN IMMEDIATE``
(a deferred transaction that reads then writes fails at once with
SQLITE_BUSY_SNAPSHOT, without consulting the busy timeout); contention from
other processes is retried with bounded, jittered backoff; and one failing
unit does not roll back the other callers' units in its batch.

fork(): SQLite keeps per-process bookkeeping of the locks its connections
hold (and mutexes of its own). A fork() landing while the engine thread is
inside a transaction or any SQLite call copies that state, held, into the
child, where even a brand-new connection then finds the file locked forever
or hangs in ``sqlite3.connect``. So every live Engine is quiesced around
fork(): whoever is inside SQLite on the connection (the engine thread, or a
caller running its own statement) holds ``_busy``, and an at-fork hook
takes every engine's ``_busy`` before the fork (waiting for the batch or
statement under way to end) and releases it on both sides after.

The file: a database with several names (hard links) is refused at open,
since SQLite keeps one WAL per name; and the path is re-checked around each
batch, so a file deleted or replaced while open fails the batch instead of
taking writes no one will read. After writing, an idle engine shrinks a WAL
that a long reader let grow.

Interrupts: submitting takes no lock (a signal handler may submit in the
middle of its own thread's submit), and a caller interrupted while waiting
keeps waiting for the answer, then raises the interrupt with the outcome
noted on it (task_queue/interrupted.py). A caller running its own statement
holds ``_busy`` only inside one chain of C calls, where no signal handler
or asynchronous exception can land: an interrupt finds the statement not
yet started or committed, and notes which.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import queue
import random
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from sqlite_worker import SqliteWorker  # type: ignore[import-untyped]

from ...errors import (
    DatabaseReplacedError,
    QueueClosedError,
    StorageError,
    UnsafeDatabaseFileError,
)
from ...interrupted import (
    expects_async_exceptions,
    forget_notes,
    is_noted,
    note_error,
    note_result,
    note_unknown,
)
from .errors import is_busy, is_transaction_fatal, translate

LOGGER = logging.getLogger(__name__)

UnitFn = Callable[..., Any]
MergeFn = Callable[[sqlite3.Connection, list[tuple[Any, ...]]], list[Any]]

# Per-attempt wait inside SQLite's own busy handler. Short, because our loop
# adds jitter between attempts and SQLite's handler is an unfair poll.
_SQLITE_BUSY_MS = 25

# A reader holding a snapshot keeps the WAL from being reset, and it only
# grows; once the reader lets go, nothing shrinks it unless a writer comes
# along (and then only to journal_size_limit). So an engine idle this long
# after writing, with a WAL above this size, checkpoints it to zero bytes.
# It retries (less and less often) while readers or writers elsewhere
# keep it from completing; it never waits for them.
_IDLE_CHECKPOINT_AFTER = 0.5
_IDLE_CHECKPOINT_MAX_INTERVAL = 30.0
_WAL_TRUNCATE_ABOVE = 1 << 20


# Request._state: how far handing the request to the engine thread got.
_NEW, _QUEUING, _QUEUED = 0, 1, 2


class Request:
    """One unit of work and, once answered, its outcome.

    Returned by :meth:`Engine.execute` as the "token" of sqlite-worker's API.
    """

    __slots__ = (
        "_answered", "_lock", "_on_answer", "_state", "args", "error", "fn", "merge", "readonly",
        "result", "savepoint",
    )  # fmt: skip

    def __init__(
        self,
        fn: UnitFn,
        args: tuple[Any, ...],
        *,
        readonly: bool,
        savepoint: bool,
        on_answer: Callable[[Request], None] | None = None,
        merge: MergeFn | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        # Consecutive units of one batch with the same merge function run as
        # one call, ``merge(conn, [args, ...])`` answering each in order:
        # one statement for many callers' single-row inserts. If it raises,
        # they run one by one as usual.
        self.merge = merge
        self.readonly = readonly
        self.savepoint = savepoint
        self.result: Any = None
        self.error: BaseException | None = None
        self._state = _NEW
        # Called once answered, in whichever thread answers (the engine's,
        # almost always): how an awaiting caller learns without a thread
        # of its own blocked in wait().
        self._on_answer = on_answer
        # A bare lock, held until the answer: waiting on it is one C call,
        # several times cheaper than threading.Event's Condition (measured
        # as the largest per-request cost after the SQL itself).
        self._answered = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def done(self) -> bool:
        return self._answered

    def wait(self, timeout: float | None = None) -> Any:
        """Block until answered; return the result or raise the error.

        An interrupt (KeyboardInterrupt, or any exception raised
        asynchronously in this thread) while waiting does not abandon the
        unit, which is queued and will commit or fail regardless: the wait
        goes on until the answer, then the interrupt is raised with the
        outcome noted on it (see :mod:`task_queue.interrupted`). A second
        interrupt abandons the wait, noted as unknown.
        """
        if not self._answered:
            try:
                answered = self._lock.acquire(timeout=-1 if timeout is None else timeout)
            except BaseException as interrupt:
                self._outlast(interrupt)
                raise
            if not answered:
                raise TimeoutError("the storage engine did not answer in time")
            self._lock.release()  # let any other waiter through too
        if self.error is not None:
            raise self.error
        return self.result

    def _outlast(self, interrupt: BaseException) -> None:
        """Wait on past ``interrupt`` for the answer, and note it on the interrupt."""
        if not self._answered:
            try:
                self._lock.acquire()
            except BaseException as again:
                self._note(again)
                raise
            self._lock.release()
        self._note(interrupt)

    def _note(self, exc: BaseException) -> None:
        if not self._answered:
            note_unknown(exc)
        elif self.error is not None:
            note_error(exc, self.error)
        else:
            note_result(exc, self.result)

    def _answer(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self._answered = True
        self._lock.release()
        on_answer = self._on_answer
        if on_answer is not None:
            self._on_answer = None
            try:
                on_answer(self)
            except BaseException:
                # The callback only hands the answer over (to an event
                # loop, which may be closed by now): whatever it raises
                # must not reach, let alone stop, the engine thread.
                LOGGER.exception("a storage request's answer callback raised")


def _nothing(conn: sqlite3.Connection) -> None:
    return None


def _mergeable(batch: list[Request], index: int) -> list[Request] | None:
    """The run of two or more units from ``index`` on that share a merge
    function, or None."""
    merge = batch[index].merge
    if merge is None:
        return None
    end = index + 1
    while end < len(batch) and batch[end].merge is merge:
        end += 1
    return batch[index:end] if end - index > 1 else None


_STOP = object()
# Queued by a caller that wrote on the connection itself (see
# Engine.call_insert) while the engine thread slept without a timeout: it
# wakes the thread to schedule the idle WAL checkpoint.
_WROTE = object()

# Calls a callable with no arguments, in C: a chain of these run by
# all(map(_CALL, chain)) has no point between its calls where the
# interpreter runs a signal handler or raises an asynchronous exception
# (those are taken only between bytecodes).
_CALL = operator.methodcaller("__call__")

# -- quiescing around fork() ---------------------------------------------------------

_LIVE: weakref.WeakSet[Engine] = weakref.WeakSet()
# Taken by the fork hook for the whole fork, so no engine is registered (and
# starts opening a connection) between the hook's snapshot and the fork.
_LIVE_LOCK = threading.Lock()
_QUIESCED: list[Engine] = []
# Connections copied into a forked child are the parent's: never closed there
# (closing one checkpoints and may delete the parent's WAL), so kept
# referenced until the child exits.
_INHERITED: list[sqlite3.Connection] = []
# How long a fork waits for a batch beyond its busy budget before it goes
# ahead anyway: a safety valve, not a schedule.
_FORK_WAIT_SLACK = 10.0


def _before_fork() -> None:
    _LIVE_LOCK.acquire()
    me = threading.current_thread()
    for engine in list(_LIVE):
        if engine._thread is me:
            # A unit forked: this thread holds the transaction open itself
            # and cannot wait for it to end.
            LOGGER.warning(
                "fork() from inside a storage unit: the child inherits an open "
                "transaction and may find the database locked"
            )
            continue
        if engine._busy.acquire(timeout=engine._busy_timeout + _FORK_WAIT_SLACK):
            _QUIESCED.append(engine)
        else:
            LOGGER.warning("fork() went ahead while a storage batch was still running")


def _after_fork_in_parent() -> None:
    for engine in _QUIESCED:
        engine._busy.release()
    _QUIESCED.clear()
    _LIVE_LOCK.release()


def _after_fork_in_child() -> None:
    for engine in list(_LIVE):
        engine._inherited_through_fork()
    for engine in _QUIESCED:
        engine._busy.release()
    _QUIESCED.clear()
    _LIVE_LOCK.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def _run_statement(conn: sqlite3.Connection, sql: str, params: Any) -> list[Any]:
    cursor = conn.execute(sql, params)
    # Rows of any statement that has them, RETURNING included, and before
    # COMMIT: SQLite requires RETURNING rows to be stepped to completion.
    return cursor.fetchall() if cursor.description is not None else []


class Engine(SqliteWorker):  # type: ignore[misc]  # sqlite-worker ships no type hints
    """A connection-owning thread that runs queued units in group commits."""

    #: The queue's type; tests interpose a subclass to interrupt a put.
    _queue_class: type[queue.SimpleQueue[object]] = queue.SimpleQueue

    def __init__(
        self,
        file_name: str,
        max_queue_size: int = 10_000,
        execute_init: Iterable[str] = (),
        max_count: int = 500,
        *,
        on_open: Callable[[sqlite3.Connection], None] | None = None,
        busy_timeout: float = 30.0,
        thread_name: str = "task_queue-sqlite",
    ) -> None:
        # Read by the thread; must exist before the base class starts it.
        self._ready = threading.Event()
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._on_open = on_open
        self._busy_timeout = busy_timeout
        self._dead: BaseException | None = None
        self._exited = False
        self._conn: sqlite3.Connection | None = None
        # Held by whoever is inside SQLite on the connection: the engine
        # thread, or a caller running its own statement (see fork() in the
        # module docstring, and call_insert).
        self._busy = threading.Lock()
        # (st_dev, st_ino) of the file opened, and the path that must keep
        # naming it; None for in-memory databases.
        self._identity: tuple[int, int] | None = None
        self._identity_path = ""
        # Seconds of idleness after which to look at the WAL's size; None
        # while nothing was written since the last look.
        self._checkpoint_in: float | None = None
        # Caller runs (call_insert): True while the engine thread has taken
        # work from its queue and not finished it (callers then queue
        # theirs, joining its next transaction); how many callers wait in
        # call() (the same: contention means group commits); the ident of the thread
        # inside a caller-run statement, pushed and popped under _busy; when
        # a caller last wrote (the idle checkpoint waits for quiet).
        self._serving = False
        self._callers = 0
        self._inline: list[int] = []
        self._inline_wrote_at = 0.0
        #: Transactions the engine thread committed, and statements callers
        #: committed themselves (call_insert): for tests and benchmarks.
        self.transactions = 0
        self.inline_statements = 0
        with _LIVE_LOCK:
            _LIVE.add(self)
        init = tuple(execute_init)
        # The base constructor starts the thread, then assigns execute_init
        # and max_count; our _run() waits for _ready so it only ever sees
        # the final values (fix 6).
        super().__init__(
            file_name, max_queue_size=max_queue_size, execute_init=init, max_count=max_count
        )
        self._thread.name = thread_name
        # queue.SimpleQueue is implemented in C: put/get cost a fraction of
        # queue.Queue's Python-level Condition. Callers wait for their own
        # answers, so the queue is bounded by the number of callers plus
        # the Workers' bounded in-flight outcomes; no maxsize needed.
        self._sql_queue: queue.SimpleQueue[object] = self._queue_class()
        self.execute_init = init
        self.max_count = max(1, int(max_count))
        self._ready.set()
        self._opened.wait()
        if self._open_error is not None:
            self._thread.join()
            raise self._open_error

    # -- sqlite-worker's public API, fixed ----------------------------------
    def execute(self, query: str, values: Sequence[Any] | dict[str, Any] | None = None) -> Request:
        """Queue one statement; the returned token answers ``fetch_results()``."""
        return self.submit(
            _run_statement,
            query,
            values if values is not None else (),
            readonly=False,
            savepoint=False,
        )

    def fetch_results(self, token: Request | None) -> Any:
        """Wait for the statement behind ``token``: its rows, or its exception."""
        if token is None:
            return None
        return token.wait()

    def close(self) -> None:
        """Finish queued work, commit it, close the connection."""
        if not self._close_event.is_set():
            self._close_event.set()
            with contextlib.suppress(QueueClosedError):
                self._put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join()

    # -- our extensions -------------------------------------------------------
    def submit(
        self,
        fn: UnitFn,
        *args: Any,
        readonly: bool = False,
        savepoint: bool = True,
        on_answer: Callable[[Request], None] | None = None,
        merge: MergeFn | None = None,
    ) -> Request:
        """Queue ``fn(conn, *args)`` to run in the engine thread.

        ``readonly`` units alone in a batch run in a deferred transaction and
        take no write lock. ``savepoint=False`` is for units with at most one
        write statement: a failing statement is rolled back by SQLite itself,
        so the savepoint would only cost time.

        ``on_answer(request)`` is called exactly once when the request is
        answered (after its transaction committed, or with its error), from
        the thread that answers it: the engine's, so it must be quick and
        must not block (hand the request over, as ``call_soon_threadsafe``
        does; build nothing from the rows there). It is not called if this
        raises (closed: nothing was queued). Whatever it raises is logged.

        ``merge``: consecutive units of a batch with the same merge function
        run as one ``merge(conn, [args, ...])`` answering each caller in
        order (inside a savepoint; if it fails, each unit runs alone).
        """
        if self._close_event.is_set():
            raise QueueClosedError("the TaskQueue is closed")
        request = Request(
            fn, args, readonly=readonly, savepoint=savepoint, on_answer=on_answer, merge=merge
        )
        self._put(request)
        return request

    def call(
        self,
        fn: UnitFn,
        *args: Any,
        readonly: bool = False,
        savepoint: bool = True,
        merge: MergeFn | None = None,
    ) -> Any:
        """Run ``fn(conn, *args)`` in the engine thread and return its result
        (``merge``: see :meth:`submit`).

        An interrupt anywhere in here is raised only once the outcome is
        certain, and carries it (see :meth:`Request.wait`): also when it
        lands while the request is being queued, or just after the answer.
        """
        if self._close_event.is_set():
            raise QueueClosedError("the TaskQueue is closed")
        held = self._inline
        if held and threading.get_ident() in held:
            # Only code run by the interpreter in the middle of this
            # thread's own caller-run statement (a finalizer, on CPython
            # before 3.12, and a signal handler run from it) gets here: the
            # engine thread would wait for that statement, which waits for
            # this call. Refused instead of a deadlock; nothing was done.
            raise StorageError(
                "storage call from inside this thread's own storage statement "
                "(a finalizer or a signal handler); nothing was done"
            )
        request = Request(fn, args, readonly=readonly, savepoint=savepoint, merge=merge)
        # Callers waiting on the engine thread: while there are any, others
        # queue too rather than run their own statements (call_insert).
        self._callers += 1
        try:
            self._put(request)
            return request.wait()
        except BaseException as exc:
            if exc is request.error or is_noted(exc):
                raise  # the unit's own outcome, or one wait() already noted
            if request._state == _NEW:
                if not isinstance(exc, QueueClosedError):
                    note_error(exc, exc)  # interrupted before it was queued
                raise
            if request._state == _QUEUING and not request._answered:
                self._await_queue_behind(request)
            if request._state == _QUEUING and not request._answered:
                note_error(exc, exc)  # the put never happened
            else:
                if self._exited:
                    # The interrupt may have cut _put short of refusing it.
                    self._refuse_queued()
                request._outlast(exc)
            raise
        finally:
            self._callers -= 1

    def call_insert(
        self,
        sql: str,
        params: dict[str, Any],
        answer: Callable[[int], Any],
        fn: UnitFn,
        *args: Any,
        savepoint: bool = True,
        merge: MergeFn | None = None,
    ) -> Any:
        """``answer(rowid)`` of the one-row INSERT ``sql``, run by the calling
        thread itself when nobody else is using the connection ("caller
        runs"); otherwise ``call(fn, *args)``, the same write as a unit.

        A round trip through the engine thread costs several times the
        statement itself. So an uncontended caller runs its statement on the
        connection: ONE autocommit statement, never inside a transaction, so
        it commits (or fails, having written nothing) before this returns,
        and it never runs anyone else's work nor leaves the connection in a
        transaction. Everything else, and everyone while the engine thread
        has work, queues as usual and shares its group commits:

        * the statement holds ``_busy``, as the engine thread does around a
          batch: the two exclude each other, and fork() waits for either;
        * it is only tried (never waited for) when the engine thread is idle,
          its queue is empty and no other caller waits for it: under
          contention a single-task commit would hold up the group commit
          (one fsync for one task). The engine thread itself, and threads
          that may receive asynchronous exceptions (the Worker's executors),
          queue;
        * the lock, the statement and the release run in one chain of C calls
          (_CALL): no signal handler or asynchronous exception can land while
          ``_busy`` is held, so a handler that uses the queue never waits on
          its own thread;
        * any SQLite error (busy: another process holds the write lock)
          wrote nothing: the unit is queued instead (the engine retries busy
          within busy_timeout and reports errors as it does for every unit);
        * an interrupt (Ctrl-C, a signal handler's exception) is noted as for
          :meth:`call`: before the commit, nothing was written; after it, the
          row committed and its answer is noted (``cursor.rowcount`` is set in
          C by the statement itself, so it cannot disagree with the commit);
        * the path is checked before (nothing written if replaced) and after
          (DatabaseReplacedError: durable in the old file) as around a batch.
        """
        cursor = self._inline_cursor()
        if cursor is not None:
            busy, held, me = self._busy, self._inline, threading.get_ident()
            replaced: DatabaseReplacedError | None = None
            try:
                # Prepared before the lock is taken: releasing it after a
                # failed statement is one C call too.
                let_go: partial[deque[Any]] = partial(
                    deque, map(_CALL, (held.pop, busy.release)), 0
                )
                all(
                    map(
                        _CALL,
                        (
                            partial(busy.acquire, False),  # False ends the chain
                            partial(held.__iadd__, (me,)),  # the (truthy) list
                            partial(cursor.execute, sql, params),
                            held.pop,  # the ident: truthy
                            busy.release,
                        ),
                    )
                )
                if cursor.rowcount == 1:
                    result = answer(cursor.lastrowid)  # type: ignore[arg-type]
                    self._after_inline_write()
                    replaced = self._replaced(committed=True)
                    if replaced is None:
                        return result
            except BaseException as exc:
                if me in held:
                    # The statement raised inside the chain: _busy is still
                    # ours (no bytecode ran since), and nothing was written.
                    let_go()
                    if not isinstance(exc, sqlite3.Error):
                        raise
                    LOGGER.debug("caller-run statement failed; queued", exc_info=True)
                else:
                    self._note_inline(exc, cursor, answer)
                    raise
            if replaced is not None:
                raise replaced
        return self.call(fn, *args, savepoint=savepoint, merge=merge)

    def _inline_cursor(self) -> sqlite3.Cursor | None:
        """A fresh cursor if this caller may run its own statement now, else None."""
        conn = self._conn
        if (
            conn is None
            or self._serving
            or self._callers  # others wait on the engine thread: join them
            or self._exited
            or self._close_event.is_set()
            or self._thread.ident == threading.get_ident()
            or not self._sql_queue.empty()
            or conn.in_transaction  # the engine's (only ever under _busy)
            or expects_async_exceptions()
            or self._replaced() is not None  # the engine answers it
        ):
            return None
        try:
            return conn.cursor()
        except sqlite3.ProgrammingError:  # closed meanwhile: the engine path says so
            return None

    def _after_inline_write(self) -> None:
        self.inline_statements += 1
        self._inline_wrote_at = time.monotonic()
        if self._checkpoint_in is None and self._identity is not None:
            self._sql_queue.put(_WROTE)  # schedules the idle WAL checkpoint

    @staticmethod
    def _note_inline(
        exc: BaseException, cursor: sqlite3.Cursor, answer: Callable[[int], Any]
    ) -> None:
        """Note on an interrupt what the caller-run statement did."""
        # An interrupt from a nested call (a signal handler's enqueue) may
        # carry that call's notes: this call's outcome replaces them.
        committed = cursor.rowcount == 1
        try:
            forget_notes(exc)
            if committed:
                note_result(exc, answer(cursor.lastrowid))  # type: ignore[arg-type]
            else:
                note_error(exc, exc)  # nothing was written
        except BaseException as again:
            note_unknown(again)
            raise

    def _await_queue_behind(self, request: Request) -> None:
        """Return once ``request`` is answered, or certainly was never queued.

        The interrupt landed around the put itself, so whether the request
        is in the queue is unknown. The queue is FIFO: once a probe queued
        now is answered, anything queued before it was answered too.
        """
        try:
            probe = Request(_nothing, (), readonly=True, savepoint=False)
            try:
                self._put(probe)
            except QueueClosedError:
                # The thread has exited, or is draining: once it is gone,
                # everything it will ever answer is answered.
                if self._thread is not threading.current_thread():
                    self._thread.join()
                self._refuse_queued()
                return
            if not probe._answered:
                probe._lock.acquire()
        except BaseException as again:
            request._note(again)
            raise

    @property
    def file_identity(self) -> tuple[int, int] | None:
        """(st_dev, st_ino) of the file the connection opened; None in memory."""
        return self._identity

    @property
    def alive(self) -> bool:
        return bool(self._thread.is_alive())

    def _put(self, item: object) -> None:
        # No lock: a signal handler may run this in the middle of the same
        # thread's own _put (SimpleQueue.put is reentrant for that reason).
        # The thread sets _exited before its final drain, so an item put
        # after that drain ended is seen here and refused, never stranded.
        if self._exited:
            raise QueueClosedError("the TaskQueue is closed") from self._dead
        request = item if isinstance(item, Request) else None
        if request is not None:
            request._state = _QUEUING
        self._sql_queue.put(item)
        if request is not None:
            request._state = _QUEUED
        if self._exited:
            self._refuse_queued()

    def _refuse_queued(self) -> None:
        """Answer whatever the exited thread's final drain may have missed."""
        error = QueueClosedError("the TaskQueue is closed")
        error.__cause__ = self._dead
        while True:
            try:
                item = self._sql_queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Request) and not item._answered:
                item._answer(error=error)

    # -- the thread -------------------------------------------------------------
    def _run(self) -> None:
        self._ready.wait()
        try:
            with self._busy:
                conn = self._open()
        except BaseException as exc:
            self._open_error = translate(exc, opening=True)
            self._opened.set()
            return
        self._conn = conn
        self._opened.set()
        try:
            self._process_queries()
        except BaseException as exc:  # never leave a caller waiting forever
            LOGGER.critical("storage thread crashed: %r", exc, exc_info=True)
            self._dead = exc
            self._fail_queued(StorageError(f"storage thread crashed: {exc!r}"))
        finally:
            with self._busy:
                try:
                    conn.close()
                except sqlite3.Error:
                    LOGGER.exception("closing the database failed")

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._file_name, isolation_level=None, check_same_thread=False, timeout=0
        )
        try:
            self._remember_file(conn)
            conn.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
            on_open = self._on_open
            if on_open is not None:
                self._with_busy_retry(lambda: on_open(conn), conn)
            for statement in self.execute_init:
                self._with_busy_retry(partial(conn.execute, statement), conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _remember_file(self, conn: sqlite3.Connection) -> None:
        """Note which file the connection opened; refuse one with several names."""
        row = conn.execute("PRAGMA database_list").fetchone()
        opened = str(row[2]) if row is not None and row[2] else ""
        if not opened:
            return  # in-memory or temporary: no file to lose
        name = os.fspath(self._file_name)
        # The caller's own path, made absolute now (a later chdir must not
        # change what it names); SQLite's resolved one for URIs.
        path = opened if name.startswith("file:") else os.path.abspath(name)
        info = os.stat(path)
        if info.st_nlink > 1:
            raise UnsafeDatabaseFileError(
                f"{name!r} has {info.st_nlink} names (hard links); refusing it, nothing was "
                "written: SQLite keeps the write-ahead log beside the name it was opened by, "
                "so two names get two WALs and writes made through one silently vanish from "
                "the other while its index corrupts. Remove the extra links (or copy the file)"
            )
        self._identity = (info.st_dev, info.st_ino)
        self._identity_path = path

    def _replaced(self, *, committed: bool = False) -> DatabaseReplacedError | None:
        """An error if the path no longer names the file we opened (one stat, ~2 µs)."""
        if self._identity is None:
            return None
        try:
            info = os.stat(self._identity_path)
        except (FileNotFoundError, NotADirectoryError):
            how = "deleted"
        except OSError:
            return None  # cannot tell (a directory made unreadable): SQLite will say
        else:
            if (info.st_dev, info.st_ino) == self._identity:
                return None
            how = "replaced by another file"
        outcome = (
            "this write went to the old file, not to that path"
            if committed
            else "nothing was written"
        )
        return DatabaseReplacedError(
            f"the file at {os.fspath(self._file_name)!r} was {how} while the queue was open; "
            f"{outcome}. Reopen the queue"
        )

    def _process_queries(self) -> None:
        assert self._conn is not None
        conn = self._conn
        q = self._sql_queue
        stop = False
        while not stop:
            if self._checkpoint_in is None:
                first = q.get()
            else:
                try:
                    first = q.get(timeout=self._checkpoint_in)
                except queue.Empty:
                    if time.monotonic() - self._inline_wrote_at < _IDLE_CHECKPOINT_AFTER:
                        continue  # callers are writing on their own: not idle
                    with self._busy:
                        self._idle_checkpoint(conn)
                    continue
            if first is _WROTE:
                self._wrote()
                continue
            if not isinstance(first, Request):  # the stop marker
                break
            # Callers queue from now on instead of running their own
            # statements (call_insert): they join this batch or the next.
            self._serving = True
            batch: list[Request] = [first]
            while len(batch) < self.max_count:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _WROTE:
                    self._wrote()
                    continue
                if not isinstance(item, Request):
                    stop = True
                    break
                batch.append(item)
            if self._identity is not None and not all(r.readonly for r in batch):
                self._checkpoint_in = _IDLE_CHECKPOINT_AFTER
            try:
                with self._busy:
                    try:
                        self._run_batch(conn, batch)
                    except Exception as exc:
                        # Our bookkeeping failed (a ROLLBACK on a broken
                        # connection...): answer everyone left, keep serving.
                        LOGGER.exception("storage batch failed")
                        error = translate(exc)
                        for request in batch:
                            if not request.done():
                                request._answer(error=error)
                        if conn.in_transaction:
                            with contextlib.suppress(sqlite3.Error):
                                conn.execute("ROLLBACK")
            finally:
                self._serving = False
        # Anything queued after the stop marker is refused, not lost silently.
        self._fail_queued(QueueClosedError("the TaskQueue is closed"))

    def _wrote(self) -> None:
        """A caller wrote on its own (call_insert): look at the WAL once idle."""
        if self._identity is not None and self._checkpoint_in is None:
            self._checkpoint_in = _IDLE_CHECKPOINT_AFTER

    def _idle_checkpoint(self, conn: sqlite3.Connection) -> None:
        """Shrink a WAL that grew (a reader held it) back to nothing, never waiting."""
        if self._replaced() is not None:
            self._checkpoint_in = None
            return
        try:
            size = os.stat(self._identity_path + "-wal").st_size
        except OSError:
            size = 0
        if size <= _WAL_TRUNCATE_ABOVE:
            self._checkpoint_in = None
            return
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                conn.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
        except sqlite3.Error:
            LOGGER.debug("idle WAL checkpoint failed", exc_info=True)
            busy = 1
        if busy:
            # A reader still holds an old snapshot, or a writer the lock.
            assert self._checkpoint_in is not None
            self._checkpoint_in = min(self._checkpoint_in * 2, _IDLE_CHECKPOINT_MAX_INTERVAL)
        else:
            self._checkpoint_in = None

    def _fail_queued(self, error: BaseException) -> None:
        self._exited = True
        while True:
            try:
                item = self._sql_queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Request):
                item._answer(error=error)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Request]) -> None:
        write = not all(r.readonly for r in batch)
        while batch:
            replaced = self._replaced()
            if replaced is not None:
                # Whatever we would write or read is in a file no longer at
                # the path: every caller of the batch hears so.
                for r in batch:
                    r._answer(error=replaced)
                return
            try:
                begin = "BEGIN IMMEDIATE" if write else "BEGIN"
                self._with_busy_retry(partial(conn.execute, begin), conn)
            except BaseException as exc:
                error = translate(exc)
                # Readers need no write lock (WAL): a busy writer elsewhere
                # must not fail the reads that shared this batch.
                readers = [r for r in batch if r.readonly] if write else []
                for r in batch:
                    if r not in readers:
                        r._answer(error=error)
                if not readers:
                    return
                batch, write = readers, False
                continue
            answers: list[tuple[Request, Any, BaseException | None]] = []
            restart: list[Request] | None = None
            single = len(batch) == 1
            index = 0
            solo_until = 0  # after a merged run failed, its units run one by one
            while index < len(batch):
                request = batch[index]
                group = _mergeable(batch, index) if index >= solo_until else None
                if group is not None:
                    merge = request.merge
                    assert merge is not None
                    try:
                        conn.execute("SAVEPOINT unit")
                        results = merge(conn, [r.args for r in group])
                        if len(results) != len(group):
                            raise RuntimeError(f"{merge!r} answered {len(results)} of {len(group)}")
                        conn.execute("RELEASE unit")
                    except BaseException as exc:
                        if not conn.in_transaction or is_transaction_fatal(exc):
                            if conn.in_transaction:
                                conn.execute("ROLLBACK")
                            error = translate(exc)
                            for r in group:
                                r._answer(error=error)
                            restart = [r for r, _, _ in answers] + batch[index + len(group) :]
                            break
                        conn.execute("ROLLBACK TO unit")
                        conn.execute("RELEASE unit")
                        # Which one failed is not known: each on its own now.
                        solo_until = index + len(group)
                        continue
                    answered = zip(group, results, strict=True)
                    answers.extend((r, result, None) for r, result in answered)
                    index += len(group)
                    continue
                use_savepoint = request.savepoint and not single
                try:
                    if use_savepoint:
                        conn.execute("SAVEPOINT unit")
                    result = request.fn(conn, *request.args)
                    if use_savepoint:
                        conn.execute("RELEASE unit")
                    answers.append((request, result, None))
                except BaseException as exc:
                    if not conn.in_transaction or is_transaction_fatal(exc):
                        # SQLite rolled the whole transaction back (disk
                        # full, I/O error): the units before this one are
                        # gone too. Answer this one, run the rest again.
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        request._answer(error=translate(exc))
                        restart = [r for r, _, _ in answers] + batch[index + 1 :]
                        break
                    if use_savepoint:
                        conn.execute("ROLLBACK TO unit")
                        conn.execute("RELEASE unit")
                    elif single:
                        conn.execute("ROLLBACK")
                        request._answer(error=translate(exc))
                        return
                    answers.append((request, None, translate(exc)))
                index += 1
            if restart is not None:
                batch = restart
                continue
            try:
                self._with_busy_retry(lambda: conn.execute("COMMIT"), conn)
            except BaseException as exc:
                error = translate(exc)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                # The reads saw writes now rolled back: run them again alone
                # rather than fail them with the writers' error (disk full).
                readers = [r for r, _, _ in answers if r.readonly] if write else []
                for r, _, _ in answers:
                    if r not in readers:
                        r._answer(error=error)
                if not readers:
                    return
                batch, write = readers, False
                continue
            replaced = self._replaced(committed=True) if write else None
            if replaced is not None:
                # Replaced while we committed (an fsync can take long):
                # durable, but in a file no reader of the path will see.
                for r, _, _ in answers:
                    r._answer(error=replaced)
                return
            self.transactions += 1
            # Answer only now that the transaction is durable (fix 5).
            for r, result, err in answers:
                r._answer(result, err)
            return

    def _inherited_through_fork(self) -> None:
        """In a forked child: this engine's thread and connection are the parent's."""
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._dead = StorageError("this storage engine belongs to the parent process (fork)")
        self._exited = True

    def _with_busy_retry(self, action: Callable[[], Any], conn: sqlite3.Connection) -> Any:
        """Run ``action``; on SQLITE_BUSY retry with jittered backoff until the budget.

        Runs in the engine thread, holding ``_busy``. Between attempts outside
        a transaction nothing of SQLite's is held, so a fork() may happen
        then: it need not wait out another process's lock.
        """
        deadline = time.monotonic() + self._busy_timeout
        attempt = 0
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                attempt += 1
                ceiling = min(0.1, 0.001 * (2 ** min(attempt, 10)))
                pause = min(remaining, random.uniform(0, ceiling))
                if conn.in_transaction:
                    time.sleep(pause)
                    continue
                self._busy.release()
                try:
                    time.sleep(pause)
                finally:
                    self._busy.acquire()
