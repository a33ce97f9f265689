"""Signals to worker processes (issue 3, section 5).

* SIGTERM to a process running ``Worker.run()`` with tasks in flight: no
  claims after the signal, tasks that finish within the drain deadline are
  completed, the rest (prefetched, or still running at the deadline) are
  back to pending without using a retry. A second SIGTERM (or SIGINT)
  gives the running tasks back at once instead of waiting out the drain.
* A worker frozen with SIGSTOP past its lease, then continued with SIGCONT:
  another worker took the task over, and the frozen one's late completion is
  rejected (fenced); the task's outcome is the other worker's.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from support import Procs, check_invariants, read_exec_logs, wait_until

from task_queue import TaskPriority, TaskQueue

#: Time a process may take, once it began stopping, to notice that it is:
#: a claim or handler start that was already under way may land this late.
SLACK = 0.5


@pytest.mark.slow
def test_sigterm_drains_then_gives_the_rest_back(
    procs: Procs, exec_dir: Path, db_path: str
) -> None:
    with TaskQueue(db_path) as queue:
        long_ids = [
            queue.enqueue(f"long {i}", "long", {"seconds": 60}, priority=TaskPriority.HIGH)
            for i in range(2)
        ]
        work_ids = queue.enqueue_many(
            [{"name": f"work {i}", "task_type": "work", "payload": {"sleep": 1.0}}
             for i in range(20)]
        )  # fmt: skip
        worker = procs.start(
            "worker", db=db_path, log_dir=str(exec_dir), concurrency=3, prefetch=3,
            lease=5.0, drain_timeout=2.0,
        )  # fmt: skip

        def busy() -> bool:
            logs = read_exec_logs(exec_dir, [worker.pid])
            runs = logs.executions
            running = [e for e in runs if e.end is None]
            finished = [e for e in runs if e.end is not None]
            claimed = {i for c in logs.claims.get(worker.pid, []) for i in c[2]}
            # Both long tasks running, two short ones done, a short one that
            # started moments ago (it will end within the drain time), and
            # some prefetched that have not started.
            fresh = [e for e in running if e.task_id in work_ids]
            return (
                {e.task_id for e in running} >= set(long_ids)
                and len(finished) >= 2
                and len(fresh) == 1
                and time.monotonic() - fresh[0].start < 0.5
                and bool(claimed - {e.task_id for e in runs})
            )

        wait_until(busy, timeout=60, interval=0.01)
        sent, sent_mono = time.time(), time.monotonic()
        procs.signal(worker, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, procs.output(worker)
        counts = queue.get_queue_stats()

    logs = read_exec_logs(exec_dir)
    stopped_at = logs.stops[worker.pid]
    assert stopped_at - sent < 5.0, "the signal was not acted on promptly"
    late_claims = [c for c in logs.claims.get(worker.pid, []) if c[0] > stopped_at + SLACK]
    assert late_claims == [], f"claims after the signal: {late_claims}"
    late_starts = [e for e in logs.executions if e.start_wall > stopped_at + SLACK]
    assert late_starts == [], f"handlers started after the signal: {late_starts}"

    finished = {e.task_id for e in logs.executions if e.end is not None}
    in_flight_finished = [
        e
        for e in logs.executions
        if e.start < sent_mono and e.end is not None and e.end > sent_mono
    ]
    expected = {i: ("completed",) if i in finished else ("pending",) for i in long_ids + work_ids}
    rows = check_invariants(db_path, long_ids + work_ids, per_task=expected, procs=procs.started)
    # Finished tasks completed, among them the one in flight at the signal.
    assert in_flight_finished
    assert counts["completed"] == len(finished) >= 3
    # The rest: pending again, as if never claimed; no retry used.
    for task_id in long_ids + work_ids:
        row = rows[task_id]
        if row["status"] == "pending":
            assert (row["retry_count"], row["attempts"]) == (0, 0), row
            assert row["error_message"] is None, row
    for task_id in long_ids:
        assert rows[task_id]["status"] == "pending"
    claimed = {i for c in logs.claims[worker.pid] for i in c[2]}
    prefetched = claimed - {e.task_id for e in logs.executions}
    assert prefetched and all(rows[i]["status"] == "pending" for i in prefetched)
    print(
        f"completed {len(finished)}, pending {counts['pending']} (2 running past the drain "
        f"deadline, {len(prefetched)} prefetched, the rest never claimed), "
        f"stop began {stopped_at - sent:.3f}s after SIGTERM"
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_gives_running_tasks_back_at_once(
    procs: Procs, exec_dir: Path, db_path: str, sig: signal.Signals
) -> None:
    with TaskQueue(db_path) as queue:
        ids = [queue.enqueue(f"long {i}", "long", {"seconds": 60}) for i in range(2)]
        worker = procs.start(
            "worker", db=db_path, log_dir=str(exec_dir), concurrency=2, prefetch=0,
            lease=5.0, drain_timeout=60.0,
        )  # fmt: skip
        wait_until(lambda: len(read_exec_logs(exec_dir, [worker.pid]).open_in(worker.pid)) == 2)
        procs.signal(worker, sig)
        # Draining (it would wait 60 s for the handlers)...
        wait_until(lambda: worker.pid in read_exec_logs(exec_dir, [worker.pid]).stops)
        assert worker.poll() is None
        procs.signal(worker, sig)  # ...until told again.
        started = time.monotonic()
        assert worker.wait(timeout=30) == 0, procs.output(worker)
        assert time.monotonic() - started < 30
    rows = check_invariants(db_path, ids, statuses=("pending",), procs=procs.started)
    assert all((r["attempts"], r["retry_count"]) == (0, 0) for r in rows.values())


def test_sigstopped_worker_late_completion_is_fenced(
    procs: Procs, exec_dir: Path, tmp_path: Path, db_path: str
) -> None:
    release = tmp_path / "release"
    with TaskQueue(db_path) as queue:
        task_id = queue.enqueue(
            "held", "hold", {"first_sleep": 1.0, "release_file": str(release)}, max_retries=5
        )
        frozen = procs.start("worker", db=db_path, log_dir=str(exec_dir), concurrency=1, lease=1.0)
        wait_until(lambda: read_exec_logs(exec_dir, [frozen.pid]).open_in(frozen.pid), timeout=60)
        procs.signal(frozen, signal.SIGSTOP)
        stopped = time.monotonic()

        # A long lease for the other worker: nothing must take the task from it.
        other = procs.start("worker", db=db_path, log_dir=str(exec_dir), concurrency=1, lease=10.0)
        # The lease runs out (a stopped process is alive: no fast rescue),
        # the other worker rescues the task and runs it again.
        wait_until(lambda: read_exec_logs(exec_dir, [other.pid]).open_in(other.pid), timeout=60)
        assert time.monotonic() - stopped >= 1.0  # not before the lease ran out
        task = queue.get_task(task_id)
        assert task is not None and task.status == "running" and task.owner_pid == other.pid

        procs.signal(frozen, signal.SIGCONT)
        # The frozen handler returns; its completion must be turned away.
        rejected = re.compile(rf"task {task_id}\b.*(not recorded|discarded)")
        wait_until(lambda: rejected.search(procs.output(frozen)), timeout=60)
        first = read_exec_logs(exec_dir, [frozen.pid]).executions
        assert len(first) == 1 and first[0].end is not None
        task = queue.get_task(task_id)
        assert task is not None and task.status == "running" and task.owner_pid == other.pid

        release.touch()  # now the other worker finishes
        wait_until(lambda: queue.get_queue_stats()["completed"] == 1, timeout=60)
        for proc in (frozen, other):
            procs.signal(proc, signal.SIGTERM)
        for proc in (frozen, other):
            assert proc.wait(timeout=60) == 0, procs.output(proc)

    rows = check_invariants(db_path, [task_id], procs=procs.started)
    row = rows[task_id]
    assert json.loads(row["result"]) == {"pid": other.pid, "attempt": 2}
    assert (row["attempts"], row["retry_count"]) == (2, 1)  # the lost attempt counted
    runs = sorted(read_exec_logs(exec_dir).executions, key=lambda e: e.start)
    assert [(e.pid, e.attempt) for e in runs] == [(frozen.pid, 1), (other.pid, 2)]
    # The frozen worker's handler finished while the other one held the task.
    assert runs[0].end is not None and runs[1].end is not None
    assert runs[1].start < runs[0].end < runs[1].end
