"""A TaskQueue used in a child after os.fork() (issue 3, section 4).

The child must open its own connection and never touch the parent's (a
SQLite connection carried across fork() corrupts databases); the parent
keeps working meanwhile and afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import wait_until

from task_queue import TaskQueue, TaskStatus, Worker

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns about fork() in a process with threads: that is the
    # very situation under test.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def run_in_child(body: Callable[[], dict[str, Any]], timeout: float = 30.0) -> dict[str, Any]:
    """Fork; run ``body`` in the child; return what it returned (or fail)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(read_fd)
        code = 0
        try:
            report: dict[str, Any] = {"ok": True, **body()}
        except BaseException:
            report = {"ok": False, "error": traceback.format_exc()}
            code = 1
        try:
            os.write(write_fd, json.dumps(report).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the child hung (did it use the parent's connection?)")
            time.sleep(0.01)
        data = b""
        while chunk := os.read(read_fd, 65536):
            data += chunk
    finally:
        os.close(read_fd)
    assert data, f"child exited with status {status} and no report"
    report = json.loads(data)
    assert report["ok"], report.get("error")
    assert os.waitstatus_to_exitcode(status) == 0
    return report


def integrity_ok(db: str) -> bool:
    conn = sqlite3.connect(db)
    try:
        return bool(conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
    finally:
        conn.close()


def test_child_gets_its_own_connection_and_parent_keeps_working(db_path: str) -> None:
    q = TaskQueue(db_path)
    try:
        before = q.enqueue("before fork", "parent")
        parent_engine = q.storage._engine_obj  # type: ignore[attr-defined]
        parent_conn = parent_engine._conn

        def child() -> dict[str, Any]:
            assert q.get_task(before).name == "before fork"  # type: ignore[union-attr]
            ids = [q.enqueue(f"child {i}", "child", {"i": i}) for i in range(5)]
            engine = q.storage._engine_obj  # type: ignore[attr-defined]
            assert engine is not parent_engine
            assert engine._conn is not parent_conn
            with Worker(q, {"child": lambda p: {"doubled": p["i"] * 2}}, concurrency=2):
                for tid in ids:
                    wait_until(
                        lambda tid=tid: q.get_task(tid).status == TaskStatus.COMPLETED  # type: ignore[misc,union-attr]
                    )
            results = [q.get_task(t).result for t in ids]  # type: ignore[union-attr]
            q.close()
            return {"ids": ids, "results": results}

        report = run_in_child(child)
        assert report["results"] == [{"doubled": i * 2} for i in range(5)]

        # The parent's connection and thread are the ones it had, and work.
        assert q.storage._engine_obj is parent_engine  # type: ignore[attr-defined]
        assert parent_engine._conn is parent_conn
        for tid in report["ids"]:
            task = q.get_task(tid)
            assert task is not None and task.status == TaskStatus.COMPLETED
        after = q.enqueue("after fork", "parent")
        claimed = [q.dequeue(task_types=["parent"]), q.dequeue(task_types=["parent"])]
        assert sorted(t.id for t in claimed if t is not None) == [before, after]
        for t in claimed:
            assert t is not None and q.complete_task(t, "parent done")
        stats = q.get_queue_stats()
        assert stats == {**stats, "completed": 7, "pending": 0, "running": 0}
    finally:
        q.close()
    assert integrity_ok(db_path)


def test_fork_while_parent_worker_runs(db_path: str) -> None:
    """The parent has a live Worker (threads, a connection mid-use); the child
    enqueues through the inherited TaskQueue; the parent's worker runs it."""
    q = TaskQueue(db_path)
    done: list[Any] = []
    try:
        with Worker(q, {"job": lambda p: done.append(p) or p}, concurrency=2, poll_interval=0.02):
            warm = q.enqueue("warm", "job", "warm")
            wait_until(lambda: q.get_task(warm).status == TaskStatus.COMPLETED)  # type: ignore[union-attr]

            def child() -> dict[str, Any]:
                ids = [q.enqueue(f"from child {i}", "job", f"child {i}") for i in range(3)]
                q.close()
                return {"ids": ids}

            report = run_in_child(child)
            for tid in report["ids"]:
                # Another connection committed: the parent's worker sees it.
                wait_until(lambda tid=tid: q.get_task(tid).status == TaskStatus.COMPLETED)  # type: ignore[misc,union-attr]
            mine = q.enqueue("parent again", "job", "parent")
            wait_until(lambda: q.get_task(mine).status == TaskStatus.COMPLETED)  # type: ignore[union-attr]
        assert sorted(done) == ["child 0", "child 1", "child 2", "parent", "warm"]
    finally:
        q.close()
    assert integrity_ok(db_path)


def test_queue_closed_in_parent_is_closed_in_child(tmp_path: Path) -> None:
    q = TaskQueue(str(tmp_path / "q.db"))
    q.enqueue("t", "x")
    q.close()

    def child() -> dict[str, Any]:
        from task_queue import QueueClosedError

        try:
            q.enqueue("t", "x")
        except QueueClosedError:
            return {"refused": True}
        return {"refused": False}

    assert run_in_child(child)["refused"] is True


def test_child_that_fails_to_open_never_falls_back_to_parents_connection(
    tmp_path: Path,
) -> None:
    """Regression: the child's first reopen failed (here: the directory was
    moved away), yet the storage had already marked itself as the child's, so
    the next call went to the parent's copied engine, whose thread does not
    exist in the child: a hang, and the parent's connection touched."""
    home = tmp_path / "home"
    home.mkdir()
    db = str(home / "q.db")
    q = TaskQueue(db)
    try:
        q.enqueue("before", "x")
        parent_engine = q.storage._engine_obj  # type: ignore[attr-defined]

        def child() -> dict[str, Any]:
            from task_queue import StorageError

            moved = tmp_path / "moved"
            os.rename(home, moved)
            errors = []
            try:
                for _ in range(2):
                    try:
                        q.get_queue_stats()
                    except StorageError as exc:
                        errors.append(type(exc).__name__)
            finally:
                os.rename(moved, home)
            stats = q.get_queue_stats()  # the directory is back: it opens now
            assert q.storage._engine_obj is not parent_engine  # type: ignore[attr-defined]
            q.close()
            return {"errors": errors, "pending": stats["pending"]}

        report = run_in_child(child, timeout=10)
        assert report["errors"] == ["DatabaseOpenError", "DatabaseOpenError"]
        assert report["pending"] == 1
        assert q.get_queue_stats()["pending"] == 1  # the parent is unaffected
    finally:
        q.close()
