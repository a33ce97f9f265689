"""Schedules and limits across processes (issue 9): each slot once with
three processes racing, rate limits and concurrency limits shared by every
process on the file, a killed holder's place freed by its rescue."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support import wait_until

from task_queue import TaskQueue, TaskStatus

ROLES = Path(__file__).resolve().parents[1] / "support" / "limits_roles.py"


def start(role: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROLES), role, json.dumps(kwargs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_all(procs: list[subprocess.Popen[bytes]], stop: Path) -> None:
    stop.touch()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_three_processes_fire_each_slot_once_without_gaps(tmp_path: Path) -> None:
    db = str(tmp_path / "q.db")
    TaskQueue(db).close()
    logs = [tmp_path / f"sched-{i}.log" for i in range(3)]
    procs = [start("scheduler", db=db, log=str(log)) for log in logs]
    try:
        wait_until(lambda: all(Path(str(log) + ".ready").exists() for log in logs), timeout=30)
        begun = time.time()
        wait_until(lambda: time.time() - begun > 6, timeout=30, interval=0.1)
    finally:
        stop_all(procs, tmp_path / "stop")
    slots = [float(s) for log in logs for _, s in lines(log)]
    assert slots, "nothing fired"
    counts = Counter(slots)
    assert max(counts.values()) == 1, f"double fires: {[s for s, n in counts.items() if n > 1]}"
    ordered = sorted(counts)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert all(g == 1.0 for g in gaps), f"gaps between slots: {gaps}"
    assert len(ordered) >= 5
    pids = {pid for log in logs for pid, _ in lines(log)}
    assert len(pids) >= 1  # whichever wins each slot


@pytest.mark.slow
def test_a_rate_limit_holds_across_processes_and_others_flow(tmp_path: Path) -> None:
    db = str(tmp_path / "q.db")
    with TaskQueue(db) as queue:
        queue.enqueue_many([{"name": f"r{i}", "task_type": "rated"} for i in range(200)])
        queue.enqueue_many([{"name": f"f{i}", "task_type": "free"} for i in range(200)])
    logs = [tmp_path / f"lim-{i}.log" for i in range(2)]
    procs = [start("limited", db=db, log=str(log), threads=4) for log in logs]
    try:
        with TaskQueue(db) as queue:
            wait_until(lambda: queue.get_queue_stats()["completed"] == 400, timeout=60)
    finally:
        stop_all(procs, tmp_path / "stop")
    runs = [entry for log in logs for entry in lines(log)]
    rated = sorted(float(e[2]) for e in runs if e[0] == "rated")
    free = sorted(float(e[3]) for e in runs if e[0] == "free")
    assert len(rated) == 200 and len(free) == 200
    burst = 1
    # In no one-second window do more than 20 + burst start.
    worst = max(sum(1 for t in rated if start <= t < start + 1.0) for start in rated)
    assert worst <= 20 + burst, worst
    assert rated[-1] - rated[0] >= (200 - burst) / 20 - 0.5
    # The unlimited type did not wait for the limited one.
    assert free[-1] < rated[0] + 3.0


@pytest.mark.slow
def test_a_concurrency_limit_holds_per_key_and_globally(tmp_path: Path) -> None:
    db = str(tmp_path / "q.db")
    with TaskQueue(db) as queue:
        queue.enqueue_many(
            [{"name": f"c{i}", "task_type": "capped"} for i in range(30)]
            + [
                {"name": f"k{i}", "task_type": "capped", "concurrency_key": f"account-{i % 3}"}
                for i in range(60)
            ]
        )
    logs = [tmp_path / f"conc-{i}.log" for i in range(3)]
    procs = [start("limited", db=db, log=str(log), threads=4, work=0.05) for log in logs]
    try:
        with TaskQueue(db) as queue:
            wait_until(lambda: queue.get_queue_stats()["completed"] == 90, timeout=90)
    finally:
        stop_all(procs, tmp_path / "stop")
    runs = [e for log in logs for e in lines(log) if e[0] == "capped"]
    assert len(runs) == 90
    by_key: dict[str, list[tuple[float, float]]] = {}
    for _, _, start_s, end_s, key in runs:
        by_key.setdefault(key, []).append((float(start_s), float(end_s)))
    for key, spans in by_key.items():
        # The most running at once, from start/end events.
        events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
        level = peak = 0
        for _, delta in events:
            level += delta
            peak = max(peak, level)
        assert peak <= 2, f"key {key}: {peak} at once"
    assert set(by_key) == {"None", "account-0", "account-1", "account-2"}
    # Keys proceed side by side: more than 2 ran at once overall.
    spans = [span for spans in by_key.values() for span in spans]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    assert peak > 2


@pytest.mark.slow
def test_a_killed_holder_does_not_block_its_key_past_the_rescue(tmp_path: Path) -> None:
    db = str(tmp_path / "q.db")
    with TaskQueue(db) as queue:
        held = queue.enqueue("held", "hold", "first", concurrency_key="k", max_retries=0)
        log = tmp_path / "holder.log"
        holder = start("limited", db=db, log=str(log), threads=2)
        try:
            wait_until(lambda: any(e[0] == "hold" for e in lines(log)), timeout=30)
            waiting = queue.enqueue("waits", "hold", "second", concurrency_key="k")
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
            log2 = tmp_path / "next.log"
            other = start("limited", db=db, log=str(log2), threads=2)
            try:
                # The dead holder's task is rescued (its PID is gone), which
                # frees the key: the waiting task starts.
                wait_until(
                    lambda: any(e[4] == "second" for e in lines(log2) if e[0] == "hold"), timeout=30
                )
            finally:
                other.kill()
                other.wait()
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        first = queue.get_task(held)
        assert first is not None and first.status == TaskStatus.FAILED  # its only attempt was lost
        assert queue.get_task(waiting) is not None
