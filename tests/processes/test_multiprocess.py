"""Several processes, each with a Worker pool, on one database file."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import procs, wait_until

from task_queue import TaskQueue, TaskStatus, Worker, current_task


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=30)


def integrity_ok(db: str) -> bool:
    conn = sqlite3.connect(db)
    try:
        return bool(conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
    finally:
        conn.close()


def test_three_processes_run_every_task_exactly_once(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    db = str(tmp_path / "q.db")
    n = 600
    outs = [tmp_path / f"exec-{k}.txt" for k in range(3)]
    with TaskQueue(db):
        pass  # create the file before three processes race to
    for out in outs:
        children.append(
            procs.start(
                "pool", db=db, out=str(out), expect=n, concurrency=4, peers=[str(o) for o in outs]
            )
        )
    for out in outs:
        wait_until(Path(f"{out}.ready").exists, timeout=60)
    # Enqueue while all three pools are waiting for work: they race for it.
    ids: list[int] = []
    with TaskQueue(db) as q:
        for start in range(0, n, 50):
            batch = [{"name": f"t{i}", "task_type": "count"} for i in range(start, start + 50)]
            ids += q.enqueue_many(batch)
    for p in children:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    executions: collections.Counter[int] = collections.Counter()
    per_process: dict[int, int] = {}
    for out in outs:
        lines = out.read_text().splitlines() if out.exists() else []
        for line in lines:
            pid, tid = map(int, line.split())
            executions[tid] += 1
            per_process[pid] = per_process.get(pid, 0) + 1
    assert sorted(executions) == sorted(ids)
    assert set(executions.values()) == {1}, [t for t, c in executions.items() if c > 1]
    assert sum(per_process.values()) == n
    assert len(per_process) >= 2, per_process  # the processes did race for tasks

    with TaskQueue(db) as q:
        stats = q.get_queue_stats()
        assert stats == {**stats, "completed": n, "pending": 0, "running": 0, "failed": 0}
        pids_recorded = collections.Counter()
        for t in q.get_tasks_by_status(TaskStatus.COMPLETED, limit=n):
            assert t.attempts == 1 and t.retry_count == 0
            assert t.result == {"pid": int(t.worker_id.split(":")[1])}  # type: ignore[union-attr]
            pids_recorded[t.result["pid"]] += 1
        assert dict(pids_recorded) == per_process  # database and side channel agree
    assert integrity_ok(db)


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_killed_worker_process_task_is_completed_by_another(
    tmp_path: Path, children: list[subprocess.Popen[str]], reap: bool
) -> None:
    """SIGKILL a worker process mid-task; after its lease (1 s) another worker
    completes the task. "zombie": the dead process is not reaped yet, so its
    PID still exists and only the lease expiry can free the task; "reaped":
    same-host rescue may notice the dead PID sooner."""
    db = str(tmp_path / "q.db")
    markers = tmp_path / "markers"
    markers.mkdir()
    lease = 1.0
    with TaskQueue(db, lease_seconds=lease) as q:
        tid = q.enqueue("hang", "hang", max_retries=2)
        victim = procs.start("hang", db=db, markers=str(markers), lease=lease)
        children.append(victim)
        marker = markers / f"started-{tid}"
        wait_until(marker.exists, timeout=30)
        running = q.get_task(tid)
        assert running is not None and running.status == TaskStatus.RUNNING
        assert running.worker_id is not None and f":{victim.pid}:" in running.worker_id
        os.kill(victim.pid, signal.SIGKILL)
        if reap:
            victim.wait(timeout=30)

        def rescuer(payload: Any) -> Any:
            ctx = current_task()
            assert ctx is not None
            return {"rescued_attempt": ctx.task.attempts}

        with Worker(q, {"hang": rescuer}, concurrency=1, name="rescuer"):
            done = wait_until(
                lambda: (t := q.get_task(tid)) is not None and t.status == TaskStatus.COMPLETED,
                timeout=30,
            )
            assert done
        task = q.get_task(tid)
    assert task is not None
    assert task.status == TaskStatus.COMPLETED
    assert task.result == {"rescued_attempt": 2}
    assert (task.attempts, task.retry_count) == (2, 1)  # the crash counted as an attempt
    assert task.worker_id is not None and task.worker_id.endswith(":rescuer")
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert integrity_ok(db)


def test_task_that_kills_its_worker_every_time_ends_failed(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    """Each attempt's worker is killed: after max_retries the rescue marks it
    failed instead of looping forever."""
    db = str(tmp_path / "q.db")
    markers = tmp_path / "markers"
    markers.mkdir()
    lease = 0.5
    with TaskQueue(db, lease_seconds=lease) as q:
        tid = q.enqueue("deadly", "hang", max_retries=1)
        for attempt in (1, 2):
            marker = markers / f"started-{tid}"
            victim = procs.start("hang", db=db, markers=str(markers), lease=lease)
            children.append(victim)
            wait_until(marker.exists, timeout=30)
            marker.unlink()
            assert q.get_task(tid).attempts == attempt  # type: ignore[union-attr]
            victim.kill()
            victim.wait(timeout=30)

        def rescued() -> bool:
            q.rescue_expired()  # what any live worker or dequeue() does
            t = q.get_task(tid)
            return t is not None and t.status == TaskStatus.FAILED

        wait_until(rescued, timeout=30, interval=0.05)
        task = q.get_task(tid)
    assert task is not None
    assert task.status == TaskStatus.FAILED
    assert (task.attempts, task.retry_count) == (2, 1)
    assert task.error_message is not None and "claim lost" in task.error_message


def test_a_pause_reaches_a_worker_in_another_process(tmp_path: Path) -> None:
    """pause() is stored in the file: a Worker in another process claims
    nothing from the paused queue (within its poll interval), and takes it
    up again once resumed."""
    db = str(tmp_path / "q.db")
    out = tmp_path / "exec.log"
    with TaskQueue(db) as queue:
        queue.pause("held")
        child = procs.start("pool", db=db, out=str(out), expect=6, concurrency=2)
        try:
            wait_until(lambda: Path(str(out) + ".ready").exists(), timeout=30)
            held = queue.enqueue_many(
                [{"name": f"h{i}", "task_type": "count", "queue_name": "held"} for i in range(5)]
            )
            free = queue.enqueue("free", "count")  # proves the worker saw the enqueues
            wait_until(lambda: queue.get_task(free).status == TaskStatus.COMPLETED, timeout=30)  # type: ignore[union-attr]
            assert all(queue.get_task(i).status == TaskStatus.PENDING for i in held)  # type: ignore[union-attr]
            assert queue.resume("held")
            assert child.wait(timeout=60) == 0, child.communicate()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert queue.get_queue_stats("held")["completed"] == 5
