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
def test_a_signal_handler_that_enqueues_does_not_deadlock(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    report = run_scenario("signal_reentry", timeout=60, db=str(db), seconds=3.0, interval=0.002)
    assert len(report["from_handler"]) > 50, "the handler hardly ran: not a test"
    acknowledged = report["from_main"] + report["from_handler"]
    assert len(set(acknowledged)) == len(acknowledged)
    assert task_ids(db) == sorted(acknowledged)


@pytest.mark.slow
def test_an_interrupted_enqueue_reports_exactly_what_it_committed(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    report = run_scenario(
        "interrupts", timeout=120, db=str(db), random_interrupts=300, locked_rounds=3
    )
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
