"""The storage engine: each fix of sqlite-worker 0.0.4's defects, pinned.

Every test runs the real engine thread on a real SQLite file. The raw Engine
(without TaskQueue's on_open) leaves the file in rollback-journal mode, which
lets a plain reader's SHARED lock hold up a COMMIT: that is how the tests
observe *when* a caller is answered.
"""

from __future__ import annotations

import inspect
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from sqlite_worker import SqliteWorker
from support import wait_until

from task_queue import DatabaseBusyError, DatabaseOpenError, QueueClosedError, StorageError
from task_queue.storage.sqlite.engine import Engine, Request

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "engine.db")


@pytest.fixture
def make_engine(path: str) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(**kwargs: Any) -> Engine:
        kwargs.setdefault("execute_init", ["CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY)"])
        engine = Engine(path, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


def other_connection(path: str) -> sqlite3.Connection:
    """A second, independent connection that never waits for locks."""
    return sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)


def count_rows(path: str) -> int:
    conn = other_connection(path)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        conn.close()


def block_engine(engine: Engine) -> tuple[threading.Event, threading.Event, Request]:
    """Occupy the engine thread with a unit that waits; returns (started, release, request)."""
    started, release = threading.Event(), threading.Event()

    def unit(conn: sqlite3.Connection) -> None:
        started.set()
        if not release.wait(10):
            raise AssertionError("the test never released the engine")

    request = engine.submit(unit, readonly=True, savepoint=False)
    assert started.wait(10)
    return started, release, request


# -- fix 1: fetch_results() right after execute() ---------------------------------


def test_fetch_results_right_after_execute_returns_rows_every_time(engine: Engine) -> None:
    got = [engine.fetch_results(engine.execute("SELECT ?", (i,))) for i in range(1000)]
    assert got == [[(i,)] for i in range(1000)]


def test_fetch_results_of_many_queued_statements(engine: Engine) -> None:
    tokens = [engine.execute("SELECT ? * 2", (i,)) for i in range(1000)]
    assert [engine.fetch_results(t) for t in tokens] == [[(i * 2,)] for i in range(1000)]


def test_fetch_results_of_none_is_none(engine: Engine) -> None:
    assert engine.fetch_results(None) is None


# -- fix 2: rows of statements that do not start with SELECT -------------------------


def test_update_returning_rows_come_back(engine: Engine) -> None:
    for k in range(5):
        engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (?)", (k,)))
    rows = engine.fetch_results(engine.execute("UPDATE t SET k = k + 10 WHERE k >= 3 RETURNING k"))
    assert sorted(rows) == [(13,), (14,)]
    inserted = engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (99) RETURNING k"))
    assert inserted == [(99,)]
    # Also a SELECT that does not start with the word SELECT.
    assert engine.fetch_results(engine.execute("  WITH x AS (SELECT 7) SELECT * FROM x")) == [(7,)]


def test_statement_without_rows_answers_empty_list(engine: Engine) -> None:
    assert engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (1)")) == []


# -- fix 3: write errors reach the caller -------------------------------------------


def test_write_errors_raise_to_the_caller(engine: Engine, path: str) -> None:
    engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (1)"))
    with pytest.raises(sqlite3.IntegrityError):
        engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (1)"))
    with pytest.raises(StorageError, match="no such table"):
        engine.fetch_results(engine.execute("INSERT INTO missing (k) VALUES (1)"))
    with pytest.raises(StorageError, match="incomplete input"):
        engine.fetch_results(engine.execute("INSERT INTO t VALUES"))
    # The engine carries on after errors.
    engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (2)"))
    assert count_rows(path) == 2


def test_errors_raised_by_a_unit_reach_the_caller(engine: Engine) -> None:
    def unit(conn: sqlite3.Connection) -> None:
        raise LookupError("from the unit")

    with pytest.raises(LookupError, match="from the unit"):
        engine.call(unit)


# -- fix 4: no per-statement bookkeeping ----------------------------------------------


def _container_sizes(engine: Engine) -> dict[str, int]:
    return {
        name: len(value)
        for name, value in vars(engine).items()
        if isinstance(value, (dict, list, set, tuple))
    }


def test_no_bookkeeping_grows_per_statement(engine: Engine) -> None:
    engine.fetch_results(engine.execute("SELECT 1"))
    before = _container_sizes(engine)
    for i in range(500):
        engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (?)", (i,)))
        engine.fetch_results(engine.execute("SELECT count(*) FROM t"))
    tokens = [engine.execute("SELECT ?", (i,)) for i in range(500)]
    for token in tokens:
        engine.fetch_results(token)
    assert engine._results == {}
    assert engine._select_events == {}
    assert _container_sizes(engine) == before
    assert engine._sql_queue.qsize() == 0


# -- fix 5: answered only after COMMIT ----------------------------------------------------


def test_caller_answered_only_once_other_connections_see_the_write(
    engine: Engine, path: str
) -> None:
    reader = other_connection(path)
    try:
        for i in range(200):
            engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (?)", (i,)))
            assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == i + 1
    finally:
        reader.close()


def test_caller_not_answered_while_commit_is_held_up(engine: Engine, path: str) -> None:
    # A reader's SHARED lock (rollback-journal mode) keeps the engine from
    # committing. The statement itself runs; its caller must not hear back
    # until the COMMIT went through.
    reader = other_connection(path)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()
        token = engine.execute("INSERT INTO t (k) VALUES (1)")
        # The engine holds the write lock now (its BEGIN IMMEDIATE ran) ...
        probe = other_connection(path)
        try:

            def engine_has_write_lock() -> bool:
                try:
                    probe.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    return True
                probe.execute("ROLLBACK")
                return False

            wait_until(engine_has_write_lock)
        finally:
            probe.close()
        # ... and for a while after its INSERT ran, it still has no answer.
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert not token.done(), "answered before COMMIT"
            time.sleep(0.01)
        reader.execute("COMMIT")
        assert engine.fetch_results(token) == []
        assert count_rows(path) == 1
    finally:
        reader.close()


def test_failing_commit_answers_with_an_error_and_nothing_is_written(
    make_engine: Callable[..., Engine], path: str
) -> None:
    engine = make_engine(busy_timeout=0.2)
    reader = other_connection(path)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()
        token = engine.execute("INSERT INTO t (k) VALUES (1)")
        with pytest.raises(DatabaseBusyError):
            engine.fetch_results(token)
        reader.execute("COMMIT")
    finally:
        reader.close()
    assert count_rows(path) == 0
    # The engine is still usable afterwards.
    engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (2)"))
    assert count_rows(path) == 1


# -- fix 6: execute_init in place before the first statement ------------------------------


def test_execute_init_applies_before_the_first_statement(tmp_path: Path) -> None:
    for i in range(30):
        engine = Engine(
            str(tmp_path / f"init{i}.db"),
            execute_init=["CREATE TABLE first (x)", "INSERT INTO first VALUES (42)"],
        )
        try:
            # The very first statement, queued at once, sees the init's work.
            assert engine.fetch_results(engine.execute("SELECT x FROM first")) == [(42,)]
        finally:
            engine.close()


def test_thread_sees_final_execute_init_and_max_count(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    class Probe(Engine):
        def _open(self) -> sqlite3.Connection:
            seen["init"] = self.execute_init
            seen["max_count"] = self.max_count
            return super()._open()

    engine = Probe(str(tmp_path / "probe.db"), execute_init=["SELECT 1"], max_count=7)
    engine.close()
    assert seen == {"init": ("SELECT 1",), "max_count": 7}


# -- fix 7: an unopenable path raises in the caller, promptly ---------------------------


def _construct_with_deadline(path: str, timeout: float = 10.0) -> BaseException | None:
    outcome: list[BaseException | None] = []

    def build() -> None:
        try:
            Engine(path).close()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "Engine() hung on an unopenable path"
    return outcome[0]


def test_unopenable_path_raises_promptly(tmp_path: Path) -> None:
    error = _construct_with_deadline(str(tmp_path / "missing" / "dir" / "x.db"))
    assert isinstance(error, DatabaseOpenError)
    error = _construct_with_deadline(str(tmp_path))  # a directory
    assert isinstance(error, DatabaseOpenError)
    assert not (tmp_path / "missing").exists()


def test_on_open_error_raises_and_stops_the_thread(path: str) -> None:
    def refuse(conn: sqlite3.Connection) -> None:
        raise RuntimeError("not this file")

    before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="not this file"):
        Engine(path, on_open=refuse)
    assert all(not t.is_alive() for t in set(threading.enumerate()) - before)


# -- batches: one failing unit does not roll back the others --------------------------------


def test_one_failing_unit_does_not_roll_back_its_batch(engine: Engine, path: str) -> None:
    engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (0)"))
    _, release, blocker = block_engine(engine)

    def failing_unit(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k) VALUES (1000)")
        raise ValueError("unit failed after writing")

    outcomes: dict[str, Any] = {}

    def submit(label: str, make: Callable[[], Request]) -> None:
        try:
            outcomes[label] = ("ok", engine.fetch_results(make()))
        except BaseException as exc:
            outcomes[label] = ("error", exc)

    jobs: dict[str, Callable[[], Request]] = {
        f"ok{k}": (lambda k=k: engine.execute("INSERT INTO t (k) VALUES (?)", (k,)))
        for k in range(1, 9)
    }
    jobs["duplicate"] = lambda: engine.execute("INSERT INTO t (k) VALUES (0)")
    jobs["failing_unit"] = lambda: engine.submit(failing_unit)
    jobs["bad_sql"] = lambda: engine.execute("INSERT INTO nowhere VALUES (1)")
    threads = [threading.Thread(target=submit, args=item) for item in jobs.items()]
    for thread in threads:
        thread.start()
    # All of them wait in the queue behind the blocker: one batch.
    wait_until(lambda: engine._sql_queue.qsize() == len(jobs))
    release.set()
    engine.fetch_results(blocker)
    for thread in threads:
        thread.join(10)
    assert {label: kind for label, (kind, _) in outcomes.items()} == {
        **{f"ok{k}": "ok" for k in range(1, 9)},
        "duplicate": "error",
        "failing_unit": "error",
        "bad_sql": "error",
    }
    assert isinstance(outcomes["duplicate"][1], sqlite3.IntegrityError)
    assert isinstance(outcomes["failing_unit"][1], ValueError)
    conn = other_connection(path)
    try:
        keys = [row[0] for row in conn.execute("SELECT k FROM t ORDER BY k")]
    finally:
        conn.close()
    # Every successful unit committed; the failing unit's own write is gone.
    assert keys == list(range(9))


def test_batches_are_bounded_by_max_count(make_engine: Callable[..., Engine]) -> None:
    statements: list[str] = []
    engine = make_engine(max_count=4, on_open=lambda c: c.set_trace_callback(statements.append))
    _, release, blocker = block_engine(engine)
    tokens = [engine.execute("INSERT INTO t (k) VALUES (?)", (k,)) for k in range(10)]
    wait_until(lambda: engine._sql_queue.qsize() == 10)
    statements.clear()
    release.set()
    engine.fetch_results(blocker)
    for token in tokens:
        engine.fetch_results(token)
    # The blocker's transaction ends, then 10 queued writes go in 4 + 4 + 2.
    assert statements.count("BEGIN IMMEDIATE") == 3
    assert statements.count("COMMIT") == 4


# -- BEGIN IMMEDIATE ---------------------------------------------------------------------


def test_write_transactions_begin_immediate(make_engine: Callable[..., Engine]) -> None:
    statements: list[str] = []
    engine = make_engine(on_open=lambda conn: conn.set_trace_callback(statements.append))
    statements.clear()
    engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (1)"))
    engine.call(lambda conn: conn.execute("SELECT count(*) FROM t").fetchall(), readonly=True)
    assert statements == [
        "BEGIN IMMEDIATE",
        "INSERT INTO t (k) VALUES (1)",
        "COMMIT",
        "BEGIN",
        "SELECT count(*) FROM t",
        "COMMIT",
    ]


def test_write_unit_holds_the_write_lock_before_it_writes(engine: Engine, path: str) -> None:
    started, release = threading.Event(), threading.Event()

    def read_then_write(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT count(*) FROM t").fetchall()
        started.set()
        assert release.wait(10)
        conn.execute("INSERT INTO t (k) VALUES (1)")

    request = engine.submit(read_then_write)
    assert started.wait(10)
    other = other_connection(path)
    try:
        # Nothing written yet, but the write lock is already taken: another
        # writer cannot slip in between the unit's read and its write.
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        release.set()
    request.wait(10)
    assert count_rows(path) == 1


# -- contention from another connection ---------------------------------------------------


def test_lock_held_past_the_busy_timeout_raises_database_busy(
    make_engine: Callable[..., Engine], path: str
) -> None:
    engine = make_engine(busy_timeout=0.3)
    holder = other_connection(path)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(DatabaseBusyError):
            engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (1)"))
        assert time.monotonic() - started < 10
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert count_rows(path) == 0


def test_shorter_lock_hold_is_retried_transparently(
    make_engine: Callable[..., Engine], path: str
) -> None:
    engine = make_engine(busy_timeout=20.0)
    holder = other_connection(path)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO t (k) VALUES (1)")
        token = engine.execute("INSERT INTO t (k) VALUES (2)")
        # Hold the lock a while: the engine keeps retrying, no error surfaces.
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert not token.done()
            time.sleep(0.01)
        holder.execute("COMMIT")
    finally:
        holder.close()
    assert engine.fetch_results(token) == []
    assert count_rows(path) == 2


# -- lifecycle ------------------------------------------------------------------------------


def test_close_commits_queued_work_then_refuses(engine: Engine, path: str) -> None:
    tokens = [engine.execute("INSERT INTO t (k) VALUES (?)", (k,)) for k in range(50)]
    engine.close()
    assert all(t.done() for t in tokens)
    assert count_rows(path) == 50
    assert not engine.alive
    with pytest.raises(QueueClosedError):
        engine.execute("SELECT 1")
    engine.close()  # twice is fine


# -- the sqlite-worker internals we lean on -------------------------------------------------


def test_sqlite_worker_internals_we_rely_on(engine: Engine) -> None:
    assert issubclass(Engine, SqliteWorker)
    params = list(inspect.signature(SqliteWorker.__init__).parameters)
    assert params == ["self", "file_name", "max_queue_size", "execute_init", "max_count"]
    for name in ("_run", "_process_queries", "execute", "fetch_results", "close"):
        assert callable(getattr(SqliteWorker, name, None)), name
    # Our overrides replace the base's loop and thread body.
    assert Engine._run is not SqliteWorker._run
    assert Engine._process_queries is not SqliteWorker._process_queries
    # Attributes the base constructor creates and we use.
    for method in ("put", "get", "get_nowait", "qsize"):
        assert callable(getattr(engine._sql_queue, method)), method
    assert engine.queue_size == 0  # the base's property reads _sql_queue.qsize()
    assert isinstance(engine._close_event, threading.Event)
    assert type(engine._lock) is type(threading.Lock())
    assert isinstance(engine._thread, threading.Thread)
    assert engine._thread.daemon
    assert engine._file_name.endswith("engine.db")
    assert engine.execute_init == ("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY)",)
    assert engine.max_count == 500
    # The base's constructor starts the thread running our _run().
    assert engine._thread.is_alive()
    # The base constructor: creates the queue, lock and close event, then
    # starts the thread on self._run *before* assigning execute_init (the
    # race our _ready event closes).
    source = inspect.getsource(SqliteWorker.__init__)
    assert "target=self._run" in source
    for attribute in ("self._sql_queue =", "self._lock =", "self._close_event ="):
        assert source.index(attribute) < source.index("self._thread.start()"), attribute
    assert source.index("self._thread.start()") < source.index("self.execute_init =")


def test_declared_dependency_range_admits_0_0_4_only_series() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [d for d in project["dependencies"] if d.replace("_", "-").startswith("sqlite-worker")]
    assert len(specs) == 1
    spec = SpecifierSet(specs[0][len("sqlite-worker") :])
    assert Version("0.0.4") in spec
    assert Version(metadata.version("sqlite-worker")) in spec
    # An incompatible future release is kept out.
    assert Version("0.1.0") not in spec
    assert Version("1.0.0") not in spec
    assert Version("0.0.3") not in spec


# -- interrupts: the outcome travels with the interrupt ------------------------------------


def _interrupting_engine(path: str, target: object, after: bool) -> Engine:
    """An Engine whose queue raises KeyboardInterrupt from the put of the
    request for ``target``, before or after the item really went in: the two
    sides of an interrupt that lands around the put itself, where the caller
    cannot tell whether it happened."""

    class InterruptingQueue(queue.SimpleQueue):  # type: ignore[type-arg]
        def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
            hit = isinstance(item, Request) and item.fn is target
            if hit and not after:
                raise KeyboardInterrupt
            super().put(item)
            if hit:
                raise KeyboardInterrupt

    class InterruptingEngine(Engine):
        _queue_class = InterruptingQueue

    return InterruptingEngine(path, execute_init=["CREATE TABLE IF NOT EXISTS t (k)"])


@pytest.mark.parametrize("after", [False, True], ids=["before the put", "after the put"])
def test_an_interrupt_around_the_put_reports_whether_the_unit_ran(path: str, after: bool) -> None:
    def unit(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k) VALUES (7)")
        return "committed"

    engine = _interrupting_engine(path, unit, after)
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            engine.call(unit)
        if after:
            assert info.value.task_queue_result == "committed"  # type: ignore[attr-defined]
            assert count_rows(path) == 1
        else:
            assert info.value.task_queue_error is info.value  # type: ignore[attr-defined]
            assert not hasattr(info.value, "task_queue_result")
            assert count_rows(path) == 0
        assert engine.call(lambda conn: "still serving") == "still serving"
    finally:
        engine.close()


def test_an_interrupt_while_waiting_waits_for_the_commit(engine: Engine, path: str) -> None:
    """Delivered to a waiting thread as an asynchronous exception: the wait
    goes on until the engine answers, then the interrupt carries the result."""
    import ctypes

    _, release, blocker = block_engine(engine)
    outcome: list[BaseException] = []

    def caller() -> None:
        try:
            engine.call(lambda conn: conn.execute("INSERT INTO t (k) VALUES (1)").rowcount)
        except KeyboardInterrupt as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    wait_until(lambda: engine._sql_queue.qsize() == 1)
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
    )
    # Still waiting: the engine has not run the unit yet.
    assert not outcome and thread.is_alive()
    release.set()
    engine.fetch_results(blocker)
    thread.join(10)
    assert len(outcome) == 1 and outcome[0].task_queue_result == 1  # type: ignore[attr-defined]
    assert count_rows(path) == 1


# -- answers through a callback (the asyncio seam) ---------------------------------------


def test_on_answer_is_called_once_after_the_commit(engine: Engine, path: str) -> None:
    seen: list[tuple[str, Any, int]] = []
    done = threading.Event()

    def on_answer(request: Request) -> None:
        # The write is already visible to another connection: answered after COMMIT.
        conn = other_connection(path)
        try:
            count = conn.execute("SELECT count(*) FROM t WHERE k = 7").fetchone()[0]
        finally:
            conn.close()
        seen.append((threading.current_thread().name, request.result, count))
        done.set()

    engine.submit(lambda c: c.execute("INSERT INTO t (k) VALUES (7)").rowcount, on_answer=on_answer)
    assert done.wait(10)
    engine.fetch_results(engine.execute("SELECT 1"))  # the engine went on
    assert seen == [("task_queue-sqlite", 1, 1)]


def test_on_answer_that_raises_does_not_stop_the_engine(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    def on_answer(request: Request) -> None:
        raise RuntimeError("Event loop is closed")

    request = engine.submit(
        lambda c: c.execute("INSERT INTO t (k) VALUES (8)"), on_answer=on_answer
    )
    request.wait(10)
    assert engine.fetch_results(engine.execute("SELECT k FROM t")) == [(8,)]
    assert engine.alive
    assert "answer callback raised" in caplog.text


def test_on_answer_of_a_failed_unit_carries_the_error(engine: Engine) -> None:
    answered: list[Request] = []
    request = engine.submit(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"),
                            on_answer=answered.append)  # fmt: skip
    with pytest.raises(StorageError):
        request.wait(10)
    wait_until(lambda: answered)
    assert answered == [request] and isinstance(request.error, StorageError)


def _insert_each(conn: sqlite3.Connection, units: list[tuple[Any, ...]]) -> list[Any]:
    keys = json_list([k for (k,) in units])
    return [r[0] for r in conn.execute(
        "INSERT INTO t (k) SELECT value FROM json_each(?) ORDER BY key RETURNING k", (keys,)
    ).fetchall()]  # fmt: skip


def json_list(values: list[Any]) -> str:
    import json

    return json.dumps(values)


def _insert_one(conn: sqlite3.Connection, k: int) -> int:
    conn.execute("INSERT INTO t (k) VALUES (?)", (k,))
    return k


def test_units_with_one_merge_function_run_as_one_statement(
    make_engine: Callable[..., Engine], path: str
) -> None:
    statements: list[str] = []
    engine = make_engine(on_open=lambda c: c.set_trace_callback(statements.append))
    _, release, blocker = block_engine(engine)
    requests = [engine.submit(_insert_one, k, merge=_insert_each) for k in range(1, 6)]
    wait_until(lambda: engine._sql_queue.qsize() == 5)
    statements.clear()
    release.set()
    engine.fetch_results(blocker)
    assert [r.wait(10) for r in requests] == [1, 2, 3, 4, 5]
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == 1 and "json_each" in inserts[0]


def test_a_failing_merged_run_falls_back_to_each_unit_alone(engine: Engine, path: str) -> None:
    engine.fetch_results(engine.execute("INSERT INTO t (k) VALUES (3)"))
    _, release, blocker = block_engine(engine)
    # Key 3 exists: the merged INSERT fails as a whole, then each runs alone.
    requests = [engine.submit(_insert_one, k, merge=_insert_each) for k in range(1, 6)]
    wait_until(lambda: engine._sql_queue.qsize() == 5)
    release.set()
    engine.fetch_results(blocker)
    outcomes = []
    for request in requests:
        try:
            outcomes.append(request.wait(10))
        except sqlite3.IntegrityError:
            outcomes.append("duplicate")
    assert outcomes == [1, 2, "duplicate", 4, 5]
    assert engine.fetch_results(engine.execute("SELECT k FROM t ORDER BY k")) == [
        (1,), (2,), (3,), (4,), (5,),
    ]  # fmt: skip
