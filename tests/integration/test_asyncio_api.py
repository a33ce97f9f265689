"""The asyncio twins of the queue's API (issue 12, section 2): aenqueue and
friends never block the event loop, also while another process holds the
write lock, take no thread per call, and keep the sync API's checks and
outcomes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from support import wait_until

from task_queue import (
    BatchRef,
    PayloadError,
    QueueClosedError,
    TaskCancelled,
    TaskFailedError,
    TaskNotFoundError,
    TaskQueue,
    TaskStatus,
    Worker,
)
from task_queue.queue import is_postgres_dsn
from task_queue.storage.base import _POOL_THREADS
from task_queue.storage.sqlite import SqliteStorage


class WriteLock:
    """Another connection (as another process would) holding the write lock
    until released, from a thread of its own."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._held.set()
            self._release.wait(30)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def __enter__(self) -> WriteLock:
        self._thread.start()
        assert self._held.wait(10)
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)

    def __exit__(self, *exc: object) -> None:
        self.release()


class Ticker:
    """Measures the longest gap between ticks of a coroutine that sleeps
    10 ms in a loop: how long the event loop was blocked."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), 60))  # type: ignore[arg-type]


@pytest.fixture
def aq(db_path: str) -> Iterator[TaskQueue]:
    # busy_timeout is the SQLite storage's; on PostgreSQL the same tests run
    # through the shared thread pool (PostgresStorage has no native submit).
    q = TaskQueue(db_path) if is_postgres_dsn(db_path) else TaskQueue(db_path, busy_timeout=20)
    yield q
    q.close()


def test_aenqueue_returns_ids_and_the_task_is_stored(aq: TaskQueue) -> None:
    async def main() -> None:
        first = await aq.aenqueue("a", "echo", {"n": 1}, priority="HIGH", queue_name="mail")
        ids = await aq.aenqueue_many(
            [{"name": "b", "task_type": "echo"}, {"name": "c", "task_type": "echo",
                                                   "depends_on": [BatchRef(0)]}]
        )  # fmt: skip
        task = await aq.aget_task(first)
        assert task is not None and task.payload == {"n": 1} and task.queue_name == "mail"
        assert [t.id for t in await aq.aget_tasks([ids[1], first])] == [ids[1], first]
        assert await aq.aget_task(10_000) is None
        stats = await aq.aget_queue_stats()
        assert stats == aq.get_queue_stats()
        assert stats["pending"] == 2 and stats["waiting"] == 1
        assert await aq.aget_queue_stats("mail") == aq.get_queue_stats("mail")
        assert await aq.aenqueue_many([]) == []

    run(main)


def test_aenqueue_checks_its_arguments_before_writing_anything(aq: TaskQueue) -> None:
    async def main() -> None:
        with pytest.raises(PayloadError):
            await aq.aenqueue("nan", "t", float("nan"))
        with pytest.raises(ValueError, match="priority"):
            await aq.aenqueue("p", "t", priority="URGENT")
        with pytest.raises(ValueError, match="BatchRef"):
            await aq.aenqueue("b", "t", depends_on=[BatchRef(0)])  # type: ignore[list-item]
        with pytest.raises(PayloadError, match="task #1"):
            bad = {"name": "bad", "task_type": "t", "payload": {1, 2}}
            await aq.aenqueue_many([{"name": "ok", "task_type": "t"}, bad])
        with pytest.raises(TaskNotFoundError):
            await aq.aenqueue("orphan", "t", depends_on=[12345])
        with pytest.raises(ValueError):
            await aq.aget_queue_stats("no spaces allowed")
        with pytest.raises(TypeError):
            await aq.aget_task("1")  # type: ignore[arg-type]

    run(main)
    assert aq.get_queue_stats()["pending"] == 0


def test_unique_key_returns_the_live_task_from_both_apis(aq: TaskQueue) -> None:
    first = aq.enqueue("u", "t", unique_key="k")

    async def main() -> list[int]:
        return list(
            await asyncio.gather(*(aq.aenqueue("u", "t", unique_key="k") for _ in range(5)))
        )

    assert run(main) == [first] * 5


@pytest.mark.sqlite_only("holds SQLite's write lock from another connection")
def test_loop_is_not_blocked_while_another_connection_holds_the_lock(
    aq: TaskQueue, db_path: str
) -> None:
    aq.get_queue_stats()  # opened

    async def main() -> None:
        threads_before = threading.active_count()
        ticker = Ticker()
        ticker.start()
        with WriteLock(db_path) as lock:
            pending = [asyncio.ensure_future(aq.aenqueue(f"t{i}", "t")) for i in range(50)]
            ticks = ticker.ticks
            await asyncio.sleep(0.5)
            assert not any(p.done() for p in pending)
            # The loop ran on while the enqueues waited for the lock (a
            # blocked loop would tick not once until busy_timeout, 20 s).
            assert ticker.ticks - ticks >= 3
            # No thread per awaiting call.
            assert threading.active_count() <= threads_before + 1
            lock.release()
            ids = await asyncio.gather(*pending)
        await ticker.stop()
        assert sorted(ids) == list(range(1, 51))
        assert ticker.longest < 5.0, ticker.longest

    run(main)
    assert aq.get_queue_stats()["pending"] == 50


@pytest.mark.sqlite_only("holds SQLite's write lock from another connection")
def test_a_cancelled_aenqueue_still_commits_once_and_says_it_may_have(
    aq: TaskQueue, db_path: str
) -> None:
    aq.get_queue_stats()

    async def main() -> None:
        with WriteLock(db_path) as lock:
            call = asyncio.ensure_future(aq.aenqueue("c", "t"))
            await asyncio.sleep(0.05)
            call.cancel()
            with pytest.raises(asyncio.CancelledError) as caught:
                await call
            assert caught.value.task_ids is None  # type: ignore[attr-defined]  # unknown
            lock.release()
        # The unit was submitted: it commits, exactly once.
        await asyncio.sleep(0)

    run(main)
    wait_until(lambda: aq.get_queue_stats()["pending"] == 1)
    assert [t.name for t in aq.list_tasks().tasks] == ["c"]


@pytest.mark.sqlite_only("holds SQLite's write lock from another connection")
def test_a_loop_closed_before_the_answer_does_not_hurt_the_engine(
    aq: TaskQueue, db_path: str
) -> None:
    aq.get_queue_stats()
    lock = WriteLock(db_path).__enter__()
    loop = asyncio.new_event_loop()
    call = loop.create_task(aq.aenqueue("orphaned", "t"))
    loop.run_until_complete(asyncio.sleep(0.05))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(call)
    loop.close()
    lock.release()  # the answer now arrives for a closed loop
    assert aq.enqueue("after", "t") == 2
    assert [t.name for t in aq.get_tasks([1, 2])] == ["orphaned", "after"]
    assert aq.storage._engine_obj.alive  # type: ignore[attr-defined]


def test_await_task_and_aresult_follow_wait_and_result(aq: TaskQueue) -> None:
    release = threading.Event()

    def fails(payload: Any) -> Any:
        raise RuntimeError("boom")

    def slow(payload: Any) -> Any:
        release.wait(10)
        return "late"

    handlers = {"echo": lambda p: p, "fails": fails, "slow": slow}

    async def main() -> None:
        ok = await aq.aenqueue("ok", "echo", {"x": 1})
        bad = await aq.aenqueue("bad", "fails", max_retries=0)
        waits = [aq.aresult(ok, timeout=10) for _ in range(20)]
        assert await asyncio.gather(*waits) == [{"x": 1}] * 20
        with pytest.raises(TaskFailedError, match="boom"):
            await aq.aresult(bad, timeout=10)
        task = await aq.await_task(ok)
        assert task.status == TaskStatus.COMPLETED
        pending = await aq.aenqueue("slow", "slow")
        with pytest.raises(TimeoutError):
            await aq.await_task(pending, timeout=0.2)
        cancelled = await aq.aenqueue("never", "nobody-handles-it")
        waiting = asyncio.ensure_future(aq.aresult(cancelled, timeout=10))
        await asyncio.sleep(0.05)
        aq.cancel_task(cancelled)
        with pytest.raises(TaskCancelled):
            await waiting
        with pytest.raises(TaskNotFoundError):
            await aq.await_task(99_999)
        with pytest.raises(ValueError):
            await aq.await_task(ok, timeout=-1)
        release.set()
        assert await aq.aresult(pending, timeout=10) == "late"

    with Worker(aq, handlers, concurrency=2):
        run(main)


def test_awaiting_coroutines_are_woken_through_the_loop(aq: TaskQueue) -> None:
    """The watcher thread resolves the futures; no thread per waiter."""

    async def main() -> None:
        ids = await aq.aenqueue_many([{"name": f"t{i}", "task_type": "echo"} for i in range(100)])
        before = threading.active_count()
        waits = asyncio.ensure_future(asyncio.gather(*(aq.await_task(i, 20) for i in ids)))
        await asyncio.sleep(0.1)
        # The one watcher; on PostgreSQL also the shared pool's few threads
        # (its storage has no native submit): bounded, not one per waiter.
        spare = 0 if not is_postgres_dsn(aq.path) else _POOL_THREADS
        assert threading.active_count() <= before + 1 + spare
        with Worker(aq, {"echo": lambda p: p}, concurrency=2):
            tasks = await waits
        assert {t.status for t in tasks} == {TaskStatus.COMPLETED}

    run(main)


def test_closing_the_queue_wakes_awaiting_coroutines(db_path: str) -> None:
    q = TaskQueue(db_path)

    async def main() -> None:
        tid = await q.aenqueue("t", "nobody")
        waiting = asyncio.ensure_future(q.await_task(tid))
        await asyncio.sleep(0.05)
        q.close()
        with pytest.raises(QueueClosedError):
            await waiting
        with pytest.raises(QueueClosedError):
            await q.aenqueue("t", "x")

    run(main)


class NoNativeSubmit:
    """A storage without a submit() of its own: the default seam (a small
    shared thread pool running the blocking operation) serves it."""

    def __init__(self, inner: SqliteStorage) -> None:
        self._inner = inner
        self.threads: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name == "submit":
            raise AttributeError(name)
        method = getattr(self._inner, name)
        if not callable(method):
            return method

        def traced(*args: Any, **kwargs: Any) -> Any:
            self.threads.add(threading.current_thread().name)
            return method(*args, **kwargs)

        return traced


@pytest.mark.sqlite_only("wraps a SqliteStorage; on PostgreSQL every test here takes that path")
def test_a_storage_without_native_submit_gets_the_shared_thread_pool(db_path: str) -> None:
    storage = NoNativeSubmit(SqliteStorage(db_path))
    q = TaskQueue(storage=storage)  # type: ignore[arg-type]
    try:

        async def main() -> None:
            ids = await asyncio.gather(*(q.aenqueue(f"t{i}", "t") for i in range(20)))
            assert sorted(ids) == list(range(1, 21))
            assert (await q.aget_queue_stats())["pending"] == 20

        run(main)
        assert storage.threads and all(
            name.startswith("task_queue-storage") for name in storage.threads
        )
    finally:
        q.close()
