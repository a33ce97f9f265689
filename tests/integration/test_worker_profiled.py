"""A Worker keeps working while a profiler or tracer is active in its threads.

Found while profiling the benchmarks (benchmarks/profile_hot.py): after each
handler the executor cleared a possible pending TaskTimeout with
``PyThreadState_SetAsyncExc(tid, NULL)``. On CPython 3.11 that leaves the
interpreter's eval breaker set for good, and a thread running under
``sys.setprofile``/``sys.settrace`` (cProfile, coverage, pdb) then spins
forever after its first task, holding the GIL: the whole process hung and
nothing was completed.

Each case runs in a child process, so a regression fails by timeout instead
of hanging the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from task_queue import HandlerRegistry, TaskQueue, TaskStatus, Worker

    hook_kind, path = sys.argv[1], sys.argv[2]

    def profile_hook(frame, event, arg):
        return None

    def trace_hook(frame, event, arg):
        return trace_hook

    if hook_kind == "setprofile":
        threading.setprofile(profile_hook)
    else:
        threading.settrace(trace_hook)

    def spin(payload):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # pure Python: interruptible
            pass
        return "not interrupted"

    registry = HandlerRegistry()
    registry["noop"] = lambda payload: payload["i"]
    registry.register("spin", spin, timeout=0.2, max_retries=0)
    queue = TaskQueue(path)
    ids = [queue.enqueue(name=f"t{i}", task_type="noop", payload={"i": i}) for i in range(20)]
    spun = queue.enqueue(name="spin", task_type="spin")
    worker = Worker(queue, registry, concurrency=2).start()
    deadline = time.monotonic() + 30
    def status(task_id):
        return queue.get_task(task_id).status
    while time.monotonic() < deadline:
        if status(spun) == TaskStatus.FAILED and all(
            status(i) == TaskStatus.COMPLETED for i in ids
        ):
            break
        time.sleep(0.01)
    # The thread that was interrupted goes on with new work.
    after = queue.enqueue(name="after", task_type="noop", payload={"i": -1})
    while time.monotonic() < deadline and status(after) != TaskStatus.COMPLETED:
        time.sleep(0.01)
    worker.stop(timeout=5)
    print("completed", sum(status(i) == TaskStatus.COMPLETED for i in [*ids, after]))
    print("spin", status(spun).value, "TaskTimeout" in (queue.get_task(spun).error_message or ""))
    queue.close()
    """
)


@pytest.mark.parametrize("hook", ["setprofile", "settrace"])
def test_worker_runs_tasks_and_timeouts_under_a_profiler(tmp_path: Path, hook: str) -> None:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, hook, str(tmp_path / "queue.db")],
            capture_output=True,
            text=True,
            timeout=90,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker process hung with a {hook} hook installed")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "completed 21" in lines, proc.stdout
    assert "spin failed True" in lines, proc.stdout
