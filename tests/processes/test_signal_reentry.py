"""Signal handlers and interrupts that land while the main thread is inside enqueue().

* A signal handler runs in the main thread between two bytecodes, so also
  in the middle of ``enqueue()``. One that enqueues too deadlocked on a
  non-reentrant lock the interrupted call held (``Engine._put``'s, and
  TaskQueue's listener lock). Submitting and waiting are now re-entrant.
* Ctrl-C (KeyboardInterrupt) during ``enqueue()`` raised *and* committed, in
  168 of 168 interrupted calls: a caller that retried created duplicates.
  Now the interrupted call keeps waiting for the storage's answer (the task
  was handed over and will commit or fail), then re-raises the interrupt
  with ``task_ids`` attached: the tasks that exist because of that call. A
  second interrupt abandons the wait (``task_ids`` is None: unknown).
* Caller runs: an uncontended single-task ``enqueue()`` runs its INSERT on
  the connection in the calling thread. The same storms run against it
  (most of the main thread's calls run that way, counted by the engine): a
  handler that lands in it, or that needs the engine thread meanwhile, must
  neither deadlock nor lose a task; Ctrl-C reports exactly what committed;
  an executor thread, which gets TaskTimeout asynchronously, hands its
  writes to the engine thread.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
from support import wait_until
from support.scenarios import run_scenario

pytestmark = pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="POSIX")


def task_ids(db: Path) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM tasks ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("mixed", [False, True], ids=["enqueues", "engine-thread work"])
def test_a_signal_handler_that_writes_does_not_deadlock(tmp_path: Path, mixed: bool) -> None:
    """The handler enqueues while the main thread it interrupted may be
    running its own statement. ``engine-thread work``: it also runs batches
    and reads (the engine thread's work): the engine thread never waits for
    an interrupted thread."""
    db = tmp_path / "q.db"
    report = run_scenario(
        "signal_reentry",
        timeout=90,
        db=str(db),
        seconds=3.0,
        interval=0.002,
        mixed=mixed,
        min_inline=150,
        min_handler=75,
    )
    assert len(report["from_handler"]) > 50, "the handler hardly ran: not a test"
    assert report["inline"] > 100, "the main thread hardly ran its own statements"
    acknowledged = report["from_main"] + report["from_handler"]
    assert len(set(acknowledged)) == len(acknowledged)
    assert task_ids(db) == sorted(acknowledged)


@pytest.mark.slow
@pytest.mark.parametrize("singles", [False, True], ids=["mixed", "single-task calls"])
def test_an_interrupted_enqueue_reports_exactly_what_it_committed(
    tmp_path: Path, singles: bool
) -> None:
    """``single-task calls``: a loop of one-task enqueue() calls, which run
    their own INSERT (caller runs) unless the engine thread is busy."""
    db = tmp_path / "q.db"
    report = run_scenario(
        "interrupts",
        timeout=120,
        db=str(db),
        random_interrupts=300,
        locked_rounds=3,
        singles=singles,
    )
    assert report["inline"] > 100, "hardly any call ran its own statement: not a test"
    noted = report["noted"]
    assert "missing" not in noted, "an interrupt inside enqueue() carried no task_ids"
    assert None not in noted, "one interrupt at a time must never leave the outcome unknown"
    known = list(report["acked"]) + [i for ids in noted for i in ids]
    assert len(set(known)) == len(known)
    # The abandoned call's task may or may not have committed: it is the
    # one id allowed beyond those the callers know of.
    stored = task_ids(db)
    unknown = sorted(set(stored) - set(known))
    assert len(unknown) <= 1, "tasks committed without their caller knowing the ids"
    assert set(known) <= set(stored), "a task_ids entry names a task that does not exist"
    # Interrupted while another process held the lock: the call waited the
    # lock out (about a second), then reported the task it committed.
    summary = {k: v for k, v in report.items() if k not in ("acked", "noted")}
    summary["noted"] = len(noted)
    assert len(report["waits"]) == 3, summary
    assert all(wait > 0.7 for wait in report["waits"]), report["waits"]
    assert all(ids for ids in noted[-3:]), noted[-3:]
    # The second interrupt abandoned the wait at once, before the lock went.
    assert report["abandoned"] is None
    assert 0.4 < report["abandoned_after"] < 1.4
    # Some interrupts must have landed inside enqueue calls, many with a commit.
    assert sum(1 for ids in noted if ids) > 20, noted


def test_an_asynchronous_exception_in_a_waiting_thread_carries_the_outcome(
    tmp_path: Path,
) -> None:
    """The Worker's timeouts raise TaskTimeout inside a handler thread
    (PyThreadState_SetAsyncExc); a handler that was enqueueing learns
    what its enqueue committed, also when it waited out another
    connection's lock."""
    import ctypes
    import threading

    from task_queue import TaskQueue, TaskTimeout

    db = tmp_path / "q.db"
    with TaskQueue(str(db), busy_timeout=20) as q:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        seen: list[object] = []
        started = threading.Event()

        def enqueue() -> None:
            started.set()
            try:
                q.enqueue("while locked", "t")
            except TaskTimeout as exc:
                seen.append(getattr(exc, "task_ids", "missing"))

        thread = threading.Thread(target=enqueue)
        thread.start()
        assert started.wait(10)
        assert thread.ident is not None
        ident = thread.ident
        # Blocked waiting for the answer (Request.wait), not still on its way.
        wait_until(lambda: sys._current_frames()[ident].f_code.co_name == "wait")
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(TaskTimeout)
        )
        holder.execute("COMMIT")
        holder.close()
        thread.join(30)
        assert not thread.is_alive()
        assert len(seen) == 1 and isinstance(seen[0], list) and len(seen[0]) == 1
        task = q.get_task(seen[0][0])
        assert task is not None and task.name == "while locked"
        assert q.get_queue_stats()["pending"] == 1


def test_an_executor_thread_hands_its_enqueues_to_the_engine_thread(tmp_path: Path) -> None:
    """A handler that enqueues in a loop until its timeout: the Worker's
    TaskTimeout lands asynchronously, often inside enqueue(). Executor
    threads never run statements on the connection themselves (counted by
    the engine), and each timeout reports exactly what its call committed:
    every task the handlers made is one they were told of."""
    from task_queue import TaskQueue, TaskTimeout, Worker

    acked: list[int] = []
    noted: list[object] = []

    with TaskQueue(str(tmp_path / "q.db"), synchronous="NORMAL") as q:
        engine = q.storage._engine  # type: ignore[attr-defined]

        def spawner(payload: object) -> None:
            try:
                while True:
                    acked.append(q.enqueue("child", "child"))
            except TaskTimeout as exc:
                noted.append(getattr(exc, "task_ids", "missing"))
                raise

        parents = [q.enqueue(f"parent {i}", "spawn", timeout=0.2, max_retries=0) for i in range(6)]
        inline_before = engine.inline_statements
        with Worker(q, {"spawn": spawner}, concurrency=2, poll_interval=0.01):
            wait_until(
                lambda: all(
                    (t := q.get_task(p)) is not None and t.status == "failed" for p in parents
                ),
                timeout=60,
            )
        # The Worker's own writes go through the engine too; none ran inline.
        assert engine.inline_statements == inline_before
    conn = sqlite3.connect(tmp_path / "q.db")
    try:
        children = [r[0] for r in conn.execute("SELECT id FROM tasks WHERE task_type = 'child'")]
    finally:
        conn.close()
    assert len(noted) == len(parents), noted
    assert all(isinstance(ids, list) and len(ids) <= 1 for ids in noted), noted
    told = acked + [i for ids in noted if isinstance(ids, list) for i in ids]
    assert len(set(told)) == len(told)
    assert sorted(told) == sorted(children)
    assert len(children) > 100
