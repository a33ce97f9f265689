"""Subprocess entry points of the process-fault tests.

Run as a script (``python tests/support/procs_faults.py <role> '<json args>'``),
never imported into a forked child: every role opens its own TaskQueue, as a
real deployment does, so a SIGKILL or SIGSTOP sent by a test hits a real,
separate process. Only ``task_queue``, the standard library and wait.py (its
condition waits, stdlib only) are imported.

Roles and their side channels (files the test reads, also after a SIGKILL):

* ``worker``: ``Worker.run()`` in the main thread (so SIGTERM drains). Each
  handler execution appends, to ``<log_dir>/exec-<pid>.log``, one fsync'd line
  when it starts and one when it ends::

      S <task id> <attempt> <pid> <monotonic> <wall>
      E <task id> <attempt> <pid> <monotonic> <wall>

  Every claim that returned tasks appends ``C <pid> <wall start> <wall end>
  <id,id,...>``, and the start of ``Worker.stop()`` appends ``T <pid> <wall>``.
* ``producer``: a thread per slot enqueues a numbered series of single tasks
  and batches with unique keys, appending ``A <index> <id,id,...>`` to
  ``<ack_dir>/acks-<slot>`` (fsync'd) once each enqueue returned, ``D`` when
  finished. Restarted after a kill, each resumes at the first index it has no
  ack for: the retry of an enqueue whose outcome it never learned. Given a
  ``budget_file``, it starts an item only while its index is below the number
  in that file, which the test raises.
* ``contention``: threads that enqueue (some with unique keys shared by all
  processes) and work one file while a Worker works it too, for a fixed
  time; writes a JSON report of its executions and of every exception that
  reached a caller.

CLOCK_MONOTONIC is system-wide on Linux, so monotonic times of different
processes compare (the contention test checks that executions of one task
never overlap).
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


class Log:
    """An append-only file, one fsync'd line per record (survives SIGKILL)."""

    def __init__(self, path: str | Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        data = (line + "\n").encode()
        with self._lock:
            # One write() per line on O_APPEND: lines never interleave.
            os.write(self._fd, data)
            os.fsync(self._fd)


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        stream=sys.stderr,
        format="%(created).3f %(process)d %(threadName)s %(name)s %(levelname)s %(message)s",
    )


# -- handlers ------------------------------------------------------------------


def _make_handlers(log: Log) -> dict[str, Any]:
    from task_queue import current_task

    pid = os.getpid()

    def record(kind: str) -> tuple[int, int]:
        ctx = current_task()
        assert ctx is not None
        task = ctx.task
        log.write(
            f"{kind} {task.id} {task.attempts} {pid} {time.monotonic():.6f} {time.time():.6f}"
        )
        return task.id, task.attempts

    def traced(fn: Any) -> Any:
        def handler(payload: Any) -> Any:
            record("S")
            try:
                return fn(payload)
            finally:
                record("E")

        return handler

    def work(payload: Any) -> Any:
        """Sleep ``payload["sleep"]`` seconds; the result names this process."""
        time.sleep(float((payload or {}).get("sleep", 0.0)))
        return {"pid": pid}

    def long(payload: Any) -> Any:
        """Sleep in slices for ``payload["seconds"]``, ignoring cancellation."""
        end = time.monotonic() + float(payload["seconds"])
        while time.monotonic() < end:
            time.sleep(0.05)
        return {"pid": pid}

    def exit_now(payload: Any) -> Any:
        """Take the whole process down, as a crashing C extension would."""
        os._exit(int((payload or {}).get("code", 3)))

    def sys_exit(payload: Any) -> Any:
        raise SystemExit(2)

    def hold(payload: Any) -> Any:
        """First attempt: sleep ``first_sleep``. Later attempts: wait until
        ``release_file`` exists (the test decides when they finish)."""
        ctx = current_task()
        assert ctx is not None
        if ctx.task.attempts <= 1:
            time.sleep(float(payload["first_sleep"]))
        else:
            deadline = time.monotonic() + 60
            while not os.path.exists(payload["release_file"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("release_file never appeared")
                time.sleep(0.01)
        return {"pid": pid, "attempt": ctx.task.attempts}

    plain = {"work": work, "long": long, "exit": exit_now, "sysexit": sys_exit, "hold": hold}
    return {name: traced(fn) for name, fn in plain.items()}


# -- roles ---------------------------------------------------------------------


def worker(
    db: str,
    log_dir: str,
    concurrency: int = 4,
    lease: float = 1.0,
    prefetch: int | None = None,
    drain_timeout: float = 10.0,
    types: list[str] | None = None,
    retry_base: float = 0.0,
) -> None:
    """A worker process: Worker.run() until SIGTERM/SIGINT (or killed)."""
    from task_queue import Event, EventKind, RetryPolicy, TaskQueue, Worker

    _setup_logging()
    pid = os.getpid()
    log = Log(Path(log_dir, f"exec-{pid}.log"))

    def log_claims(event: Event) -> None:
        # Emitted after the claim committed, once per task claimed; "at" is
        # the time the claim started.
        if event.kind is EventKind.CLAIMED:
            log.write(f"C {pid} {event.at:.6f} {time.time():.6f} {event.task_id}")

    class RecordingWorker(Worker):
        def stop(self, timeout: float | None = None) -> None:
            log.write(f"T {pid} {time.time():.6f}")
            super().stop(timeout)

    handlers = _make_handlers(log)
    if types is not None:
        handlers = {name: fn for name, fn in handlers.items() if name in types}
    queue = TaskQueue(
        db, lease_seconds=lease, retry_policy=RetryPolicy(base=retry_base), hooks=[log_claims]
    )
    try:
        RecordingWorker(
            queue,
            handlers,
            concurrency=concurrency,
            prefetch=prefetch,
            drain_timeout=drain_timeout,
            poll_interval=0.02,
        ).run()
    finally:
        queue.close()
    logging.getLogger("procs_faults").info("worker %d exits", pid)


def producer(
    db: str,
    ack_dir: str,
    slots: list[int],
    count: int,
    batch: int = 5,
    budget_file: str | None = None,
) -> None:
    """One thread per slot, all on one TaskQueue (so their writes share group
    commits): each enqueues items 0..count-1 of its slot, every third item a
    batch.

    With ``budget_file``, a slot's thread starts item ``index`` only once the
    integer in that file exceeds ``index``: the parent hands out work, so the
    processes it is not about to kill cannot run out of items before it has
    made its kills (on a loaded machine they did)."""
    from task_queue import TaskQueue

    _setup_logging("WARNING")
    budget = _Budget(budget_file)
    with TaskQueue(db) as queue:
        threads = [
            threading.Thread(target=_produce, args=(queue, ack_dir, slot, count, batch, budget))
            for slot in slots
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


class _Budget:
    """How many items per slot the parent allows so far (it only grows)."""

    DEADLINE = 120.0  # a parent that stops handing out work has failed

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._known = 0

    def wait_for(self, index: int) -> None:
        if self._path is None or index < self._known:
            return
        # tests/support/wait.py: this runs as a script from that directory.
        from wait import wait_until  # type: ignore[import-not-found]

        path = self._path

        def granted() -> bool:
            # The parent writes the file before starting us and replaces it
            # atomically: a read sees a whole number.
            self._known = max(self._known, int(Path(path).read_text()))
            return index < self._known

        wait_until(granted, timeout=self.DEADLINE, interval=0.002)


def _produce(queue: Any, ack_dir: str, slot: int, count: int, batch: int, budget: _Budget) -> None:
    acks_path = Path(ack_dir, f"acks-{slot}")
    start = 0
    if acks_path.exists():
        # Only whole lines count: a kill may cut the last one short.
        text = acks_path.read_text()
        for line in text.splitlines(keepends=True):
            if line.endswith("\n") and line.startswith("A "):
                start = max(start, int(line.split()[1]) + 1)
    acks = Log(acks_path)
    for index in range(start, count):
        budget.wait_for(index)
        if index % 3 == 2:
            specs = [
                {
                    "name": f"s{slot} batch {index} #{j}",
                    "task_type": "work",
                    "payload": {"slot": slot, "index": index, "batch": batch},
                    "unique_key": f"s{slot}-i{index}-j{j}",
                }
                for j in range(batch)
            ]
            ids = queue.enqueue_many(specs)
        else:
            ids = [
                queue.enqueue(
                    f"s{slot} item {index}",
                    "work",
                    {"slot": slot, "index": index, "batch": 0},
                    unique_key=f"s{slot}-i{index}",
                )
            ]
        acks.write(f"A {index} {','.join(map(str, ids))}")
    acks.write("D")


def contention(
    db: str,
    out: str,
    duration: float = 20.0,
    threads: int = 8,
    worker_concurrency: int = 4,
    lease: float = 30.0,
    fail_every: int = 50,
    unique_keys: int = 40,
) -> None:
    """``threads`` threads enqueue and work the file by hand (dequeue,
    complete_task / fail_task) while a Worker works it too, for ``duration``
    seconds; then everything is drained and a JSON report written to ``out``."""
    from task_queue import RetryPolicy, TaskQueue, Worker, current_task

    pid = os.getpid()
    problems: list[str] = []  # anything at WARNING or above, and caller errors
    caller_errors: list[str] = []
    executions: list[tuple[int, int, float, float, str]] = []  # id, pid, start, end, who
    acked: list[int] = []
    unique_acked: list[int] = []  # ids returned by enqueue(unique_key=...): may repeat
    lock = threading.Lock()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            # Deliberate handler failures are expected; nothing else is.
            if "failed after" in message and "deliberate" in message:
                return
            with lock:
                problems.append(f"{record.name} {record.levelname}: {message}")

    _setup_logging("ERROR")
    library_log = logging.getLogger("task_queue")
    library_log.setLevel(logging.WARNING)
    library_log.addHandler(Collect(level=logging.WARNING))

    def run_task(payload: Any, task_id: int, who: str) -> Any:
        started = time.monotonic()
        try:
            time.sleep(random.uniform(0, 0.002))
            if payload["n"] % fail_every == 0:
                raise ValueError("deliberate failure")
            return {"pid": pid}
        finally:
            with lock:
                executions.append((task_id, pid, started, time.monotonic(), who))

    def handler(payload: Any) -> Any:
        ctx = current_task()
        assert ctx is not None
        return run_task(payload, ctx.task.id, "worker")

    queue = TaskQueue(db, lease_seconds=lease, retry_policy=RetryPolicy(base=0.01, cap=0.05))
    w = Worker(
        queue, {"mixed": handler}, concurrency=worker_concurrency, poll_interval=0.01
    ).start()
    stop_at = time.monotonic() + duration
    counter = iter(range(1, 10**9))
    counter_lock = threading.Lock()

    def next_n() -> int:
        with counter_lock:
            return next(counter)

    def mixed_thread(index: int) -> None:
        rng = random.Random(pid * 100 + index)
        while time.monotonic() < stop_at:
            try:
                roll = rng.random()
                if roll < 0.1:
                    # A key shared by all processes: one live task per key.
                    n = next_n()
                    key = f"k{rng.randrange(unique_keys)}"
                    task_id = queue.enqueue(f"p{pid} {key}", "mixed", {"n": n}, unique_key=key)
                    with lock:
                        unique_acked.append(task_id)
                    ids = []
                elif roll < 0.7:
                    n = next_n()
                    ids = [queue.enqueue(f"p{pid} t{index} n{n}", "mixed", {"n": n})]
                else:
                    specs = [
                        {"name": f"p{pid} t{index} batch", "task_type": "mixed",
                         "payload": {"n": next_n()}}
                        for _ in range(rng.randint(2, 6))
                    ]  # fmt: skip
                    ids = queue.enqueue_many(specs)
                with lock:
                    acked.extend(ids)
                for task in queue.claim(rng.randint(1, 3), task_types=["mixed"]):
                    try:
                        result = run_task(task.payload, task.id, "thread")
                    except ValueError as exc:
                        queue.fail_task(task, exc)
                    else:
                        queue.complete_task(task, result)
                if ids and rng.random() < 0.1:
                    queue.get_queue_stats()
                    queue.get_task(ids[0])
            except BaseException as exc:
                with lock:
                    caller_errors.append("".join(traceback.format_exception(exc)))
                time.sleep(0.01)

    workers = [
        threading.Thread(target=mixed_thread, args=(i,), name=f"mixed-{i}") for i in range(threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    # Drain: keep working until nothing is pending or running anywhere.
    drain_deadline = time.monotonic() + 120
    drained = False
    while time.monotonic() < drain_deadline:
        try:
            stats = queue.get_queue_stats()
        except BaseException as exc:
            caller_errors.append("".join(traceback.format_exception(exc)))
            time.sleep(0.05)
            continue
        if stats["pending"] == 0 and stats["running"] == 0:
            drained = True
            break
        time.sleep(0.05)
    w.stop(10)
    queue.close()
    report = {
        "pid": pid,
        "drained": drained,
        "acked": acked,
        "unique_acked": unique_acked,
        "executions": executions,
        "caller_errors": caller_errors,
        "problems": problems,
    }
    tmp = out + ".tmp"
    Path(tmp).write_text(json.dumps(report))
    os.replace(tmp, out)


ROLES = {"worker": worker, "producer": producer, "contention": contention}


def main(argv: list[str]) -> None:
    role, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    ROLES[role](**args)


if __name__ == "__main__":
    main(sys.argv[1:])
