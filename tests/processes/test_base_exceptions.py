"""Handlers that raise BaseExceptions or end their process (issue 3, section 5).

SystemExit, KeyboardInterrupt, GeneratorExit and a custom BaseException
raised by a handler are failed attempts like any other: the task is retried,
then failed, and the worker's threads carry on with the other tasks. A
handler that calls ``os._exit`` takes its whole worker process down: each
crash counts as an attempt, so after its retries the task is failed instead
of killing every worker forever, and the other tasks complete.

An exception whose own ``__str__`` fails is recorded too (with a placeholder
text), not lost in the worker's bookkeeping.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from support import Procs, check_invariants, read_exec_logs, wait_until

from task_queue import HandlerRegistry, RetryPolicy, TaskQueue, TaskStatus, Worker


class CustomBase(BaseException):
    """Neither Exception nor one of Python's own BaseExceptions."""


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ fails")


class UnprintableBase(BaseException):
    def __str__(self) -> str:
        raise SystemExit("__str__ raises SystemExit")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ fails")


RAISED: dict[str, BaseException] = {
    "system_exit_0": SystemExit(0),
    "system_exit_3": SystemExit(3),
    "keyboard_interrupt": KeyboardInterrupt(),
    "generator_exit": GeneratorExit(),
    "custom_base": CustomBase("boom"),
    # Regression: str(error) raised inside the worker's failure bookkeeping,
    # so the failure was never recorded and the task sat "running" until its
    # lease ran out (then was rescued as if its worker had died).
    "unprintable_exception": UnprintableError(),
    "unprintable_base": UnprintableBase(),
}


def test_handlers_raising_base_exceptions(db_path: str) -> None:
    runs: Counter[str] = Counter()
    lock = threading.Lock()
    registry = HandlerRegistry()

    def raiser(kind: str) -> Any:
        def handler(payload: Any) -> Any:
            with lock:
                runs[kind] += 1
            raise RAISED[kind]

        return handler

    def ok(payload: Any) -> Any:
        with lock:
            runs[f"ok {payload}"] += 1
        return payload

    for kind in RAISED:
        registry[kind] = raiser(kind)
    registry["ok"] = ok

    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0.0)) as queue:
        bad = {kind: queue.enqueue(kind, kind, max_retries=2) for kind in RAISED}
        good = [queue.enqueue(f"ok {i}", "ok", i) for i in range(20)]
        worker = Worker(queue, registry, concurrency=2, poll_interval=0.01)
        with worker:
            total = len(bad) + len(good)
            wait_until(
                lambda: sum(queue.get_queue_stats()[s] for s in ("completed", "failed")) == total,
                timeout=20,  # well under the 30 s lease: no failure may wait for a rescue
            )
            # The pool is intact: every executor thread alive, and it still works.
            alive = {t.name for t in threading.enumerate()}
            assert all(f"{worker.name}-{i + 1}" in alive for i in range(worker.concurrency))
            late = queue.enqueue("ok after", "ok", "after")
            wait_until(lambda: queue.get_task(late).status == TaskStatus.COMPLETED, timeout=30)  # type: ignore[union-attr]

    rows = check_invariants(
        db_path,
        [*bad.values(), *good, late],
        per_task={task_id: ("failed",) for task_id in bad.values()},
    )
    for kind, task_id in bad.items():
        row = rows[task_id]
        assert runs[kind] == 3, (kind, runs[kind])
        assert (row["attempts"], row["retry_count"]) == (3, 2), row
        assert row["error_message"].startswith(type(RAISED[kind]).__name__), row
        if kind.startswith("unprintable"):
            assert "unprintable" in row["error_message"], row
        assert row["error_traceback"] and type(RAISED[kind]).__name__ in row["error_traceback"]
    for i in [*range(20), "after"]:
        assert runs[f"ok {i}"] == 1


def test_handler_calling_os_exit_in_a_worker_process(
    procs: Procs, exec_dir: Path, db_path: str
) -> None:
    with TaskQueue(db_path) as queue:
        work = queue.enqueue_many(
            [{"name": f"w{i}", "task_type": "work", "payload": {"sleep": 0.05},
              "max_retries": 10} for i in range(10)]
        )  # fmt: skip
        crasher = queue.enqueue("crash", "exit", {"code": 3}, max_retries=2)
        work += queue.enqueue_many(
            [{"name": f"w{i}", "task_type": "work", "payload": {"sleep": 0.05},
              "max_retries": 10} for i in range(10, 30)]
        )  # fmt: skip
        total = len(work) + 1

        def finished() -> bool:
            stats = queue.get_queue_stats()
            return stats["completed"] + stats["failed"] == total

        crashes = 0
        for _ in range(10):  # each crash costs one process; 3 attempts, then failed
            proc = procs.start(
                "worker", db=db_path, log_dir=str(exec_dir), concurrency=2, lease=2.0
            )
            wait_until(lambda p=proc: p.poll() is not None or finished(), timeout=60)
            if proc.poll() is None:
                procs.signal(proc, signal.SIGTERM)
                assert proc.wait(timeout=30) == 0, procs.output(proc)
                break
            assert proc.returncode == 3, procs.output(proc)
            crashes += 1
        assert finished()

    rows = check_invariants(
        db_path, [*work, crasher], per_task={crasher: ("failed",)}, procs=procs.started
    )
    assert crashes == 3
    row = rows[crasher]
    assert (row["attempts"], row["retry_count"]) == (3, 2), row
    assert "died" in row["error_message"] or "lease" in row["error_message"], row
    logs = read_exec_logs(exec_dir)
    crash_runs = [e for e in logs.executions if e.task_id == crasher]
    assert len(crash_runs) == 3 and all(e.end is None for e in crash_runs)
    crashed = {p.pid for p in procs.started if p.returncode == 3}
    # The other tasks: each ran once outside the crashed processes at most.
    by_task = logs.by_task()
    for task_id in work:
        assert by_task[task_id], task_id
        assert len([e for e in by_task[task_id] if e.pid not in crashed]) <= 1, by_task[task_id]
        assert rows[task_id]["retry_count"] <= 3


class HostileDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("items() fails")


class HostileKey:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ fails")


def test_results_that_fail_to_encode_are_failed_attempts(db_path: str) -> None:
    """Regression: a result whose own methods raise while it is encoded (not a
    PayloadError) escaped the worker's bookkeeping; the task stayed running
    after the worker stopped, until its lease ran out."""
    registry = HandlerRegistry()
    registry["dict"] = lambda payload: HostileDict(a=1)
    registry["key"] = lambda payload: {HostileKey(): 1}
    registry["ok"] = lambda payload: payload
    with TaskQueue(db_path, retry_policy=RetryPolicy(base=0.0)) as queue:  # 30 s lease
        bad = [queue.enqueue(t, t, max_retries=1) for t in ("dict", "key")]
        good = [queue.enqueue("ok", "ok", i) for i in range(5)]
        with Worker(queue, registry, concurrency=2, poll_interval=0.01):
            wait_until(lambda: queue.get_queue_stats()["failed"] == 2, timeout=20)
            wait_until(lambda: queue.get_queue_stats()["completed"] == 5, timeout=20)
    rows = check_invariants(db_path, bad + good, per_task=dict.fromkeys(bad, ("failed",)))
    for task_id, text in zip(bad, ("items() fails", "__repr__ fails"), strict=True):
        assert (rows[task_id]["attempts"], rows[task_id]["retry_count"]) == (2, 1)
        # A PayloadError since the encoder stopped letting them escape raw.
        message = rows[task_id]["error_message"]
        assert message.startswith("PayloadError: result ") and f"RuntimeError: {text}" in message
