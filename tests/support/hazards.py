"""Scenarios that must run in a process of their own, with a deadline.

Run as a script (``python tests/support/hazards.py <scenario> '<json args>'``):
each scenario prints one JSON report on its last line of stdout and exits
0. Their failure modes are hangs (a deadlock, a child stuck in
``sqlite3.connect``), so the test that starts them kills them at a deadline
instead of hanging CI. Only ``task_queue`` and the standard library are
imported.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

from task_queue import TaskQueue

# -- fork() while other threads write -------------------------------------------------


def _child_round_trip(db: str, deadline: float) -> int:
    """In a forked child: a NEW TaskQueue on the same file, one task enqueued,
    claimed and completed. Exit status 0 on success, 1 on any error; a hang is
    ended by SIGALRM's default action, which no Python-level state can delay
    (status -14)."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, deadline)
    try:
        q = TaskQueue(db, busy_timeout=deadline)
        try:
            tid = q.enqueue("from a child", "child", {"pid": os.getpid()})
            task = q.dequeue(task_types=["child"])
            while task is not None and task.id != tid:  # another child's, left by a kill
                q.complete_task(task, "swept")
                task = q.dequeue(task_types=["child"])
            if task is None or not q.complete_task(task, "done"):
                return 1
        finally:
            q.close()
        return 0
    except BaseException:
        traceback.print_exc()
        return 1


def _inline_statements(q: TaskQueue) -> int:
    """How many statements callers ran on the connection themselves."""
    return int(q.storage._engine.inline_statements)  # type: ignore[attr-defined]


def fork_storm(
    db: str, forks: int, writers: int, child_deadline: float, singles: bool = False
) -> dict[str, Any]:
    """``singles``: the writers only enqueue one task per call, which an
    uncontended caller runs on the connection itself (caller runs)."""
    q = TaskQueue(db)
    stop = threading.Event()
    written = [0] * writers
    errors: list[str] = []

    def write(slot: int) -> None:
        try:
            while not stop.is_set():
                if singles:
                    q.enqueue("w", "w", {"slot": slot})
                    written[slot] += 1
                    continue
                ids = q.enqueue_many([{"name": "w", "task_type": "w"} for _ in range(5)])
                q.enqueue("w", "w", {"slot": slot})
                for task in q.claim(3, task_types=["w"]):
                    q.complete_task(task, None)
                written[slot] += len(ids) + 1
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(writers)]
    for thread in threads:
        thread.start()
    while sum(written) < 50:
        time.sleep(0.001)
    statuses: dict[str, int] = {}
    rng = random.Random(os.getpid())
    for _ in range(forks):
        time.sleep(rng.uniform(0, 0.003))  # land anywhere in the writers' batches
        pid = os.fork()
        if pid == 0:
            os._exit(_child_round_trip(db, child_deadline))
        _, status = os.waitpid(pid, 0)
        key = str(os.waitstatus_to_exitcode(status))
        statuses[key] = statuses.get(key, 0) + 1
        print(f"fork {sum(statuses.values())}: {key}", file=sys.stderr, flush=True)
    stop.set()
    for thread in threads:
        thread.join(30)
    inline = _inline_statements(q)
    q.close()
    return {"statuses": statuses, "written": sum(written), "errors": errors, "inline": inline}


# -- a signal handler that enqueues ----------------------------------------------------


def signal_reentry(
    db: str,
    seconds: float,
    interval: float,
    mixed: bool = False,
    min_inline: int = 0,
    min_handler: int = 0,
    max_seconds: float = 30.0,
) -> dict[str, Any]:
    """The main thread enqueues in a tight loop; a SIGALRM handler, running
    in the main thread between two of its bytecodes (so also inside
    ``enqueue()``, and inside a statement the main thread runs on the
    connection itself), enqueues too. ``mixed``: the handler also does what
    the engine thread must run (a batch, a read), which must not wait for
    the main thread it interrupted.

    Runs ``seconds``, then on until the main thread ran ``min_inline`` of
    its own statements and the handler made ``min_handler`` enqueues (on a
    loaded machine 3 s were not always enough), for at most
    ``max_seconds``."""
    q = TaskQueue(db, synchronous="NORMAL")
    from_handler: list[int] = []
    from_main: list[int] = []
    calls = [0]

    def handler(signum: int, frame: Any) -> None:
        calls[0] += 1
        if mixed and calls[0] % 3 == 1:
            from_handler.extend(q.enqueue_many([{"name": "handler batch", "task_type": "h"}] * 2))
        elif mixed and calls[0] % 3 == 2:
            from_handler.append(q.enqueue("from the handler", "h"))
            assert q.get_task(from_handler[-1]) is not None
        else:
            from_handler.append(q.enqueue("from the handler", "h"))

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    started = time.monotonic()

    def more() -> bool:
        elapsed = time.monotonic() - started
        if elapsed < seconds:
            return True
        enough = _inline_statements(q) >= min_inline and len(from_handler) >= min_handler
        return not enough and elapsed < max_seconds

    try:
        while more():
            if len(from_main) % 2:
                from_main.append(q.enqueue("from main", "m"))
            else:
                from_main.extend(q.enqueue_many([{"name": "batch", "task_type": "m"}] * 2))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
    inline = _inline_statements(q)
    q.close()
    return {"from_main": from_main, "from_handler": from_handler, "inline": inline}


# -- Ctrl-C while enqueueing -------------------------------------------------------------

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""

MISSING = "missing"


class _Interrupter:
    """Sends SIGINT to the main thread, one at a time: the next only once the
    main thread has handled the previous one (so no interrupt lands inside
    the handling of another, which would be the documented second-interrupt
    case)."""

    def __init__(self) -> None:
        self.handled = 0
        self._sent = 0

    def send(self) -> None:
        self._sent += 1
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    def wait_handled(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.handled < self._sent:
            if time.monotonic() > deadline:
                raise AssertionError("the main thread did not handle an interrupt")
            time.sleep(0.0005)


_ENTRY_POINTS = (TaskQueue.enqueue.__code__, TaskQueue.enqueue_many.__code__)


def _at_entry(exc: BaseException) -> bool:
    """Whether ``exc`` was raised at the first instruction of enqueue() or
    enqueue_many(), before the call ran anything (nothing to note it on)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return (
        tb is not None
        and tb.tb_frame.f_code in _ENTRY_POINTS
        and tb.tb_lineno == tb.tb_frame.f_code.co_firstlineno
    )


def _lock_elsewhere(db: str, seconds: float) -> subprocess.Popen[str]:
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, db, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def interrupts(
    db: str, random_interrupts: int, locked_rounds: int, singles: bool = False
) -> dict[str, Any]:
    """``singles``: every call enqueues one task (the caller runs its own
    statement when uncontended, as here); else one task and three in turn."""
    q = TaskQueue(db, synchronous="NORMAL", busy_timeout=20)
    acked: list[int] = []
    noted: list[Any] = []  # task_ids of each interrupt (MISSING when absent)
    outside = 0
    at_entry = 0
    sig = _Interrupter()
    done = threading.Event()

    go = threading.Event()

    def storm() -> None:
        rng = random.Random(7)
        # Not before the main thread is in its loop: an interrupt landing in
        # thread.start() itself (seen under load) is nobody's enqueue.
        go.wait()
        try:
            for _ in range(random_interrupts):
                time.sleep(rng.uniform(0, 0.003))
                sig.send()
                sig.wait_handled()
        finally:
            done.set()

    def one_call(i: int) -> None:
        nonlocal outside, at_entry
        try:
            ids = None
            try:
                if singles or i % 2:
                    ids = [q.enqueue("single", "t", {"i": i})]
                else:
                    ids = q.enqueue_many([{"name": "many", "task_type": "t"}] * 3)
            except KeyboardInterrupt as exc:
                if _at_entry(exc):
                    at_entry += 1  # nothing ran yet: README, "Ctrl-C during enqueue()"
                else:
                    noted.append(getattr(exc, "task_ids", MISSING))
                sig.handled += 1
                return
            acked.extend(ids)
        except KeyboardInterrupt:
            # Landed in this loop's own code, not in an enqueue call.
            outside += 1
            sig.handled += 1

    thread = threading.Thread(target=storm, daemon=True)
    thread.start()
    go.set()
    i = 0
    while True:
        try:
            while not done.is_set():
                one_call(i)
                i += 1
            break
        except KeyboardInterrupt:
            # Landed between two calls, in this loop's own bytecodes.
            outside += 1
            sig.handled += 1
    thread.join()

    # While another process holds the write lock for a second: the interrupt
    # lands while the call waits; the caller learns the outcome once the lock
    # is released and the task committed.
    waits: list[float] = []
    for round_ in range(locked_rounds):
        locker = _lock_elsewhere(db, 1.0)
        timer = threading.Timer(0.2, sig.send)
        started = time.monotonic()
        timer.start()
        try:
            acked.append(q.enqueue("while locked", "t", {"round": round_}))
        except KeyboardInterrupt as exc:
            waits.append(time.monotonic() - started)
            noted.append(getattr(exc, "task_ids", MISSING))
            sig.handled += 1
        timer.join()
        locker.wait(30)

    # A second interrupt abandons the wait: the outcome is then unknown.
    locker = _lock_elsewhere(db, 1.5)
    timers = [threading.Timer(0.2, sig.send), threading.Timer(0.5, sig.send)]
    abandoned: Any = MISSING
    abandoned_after = 0.0
    started = time.monotonic()
    for timer in timers:
        timer.start()
    try:
        q.enqueue("abandoned", "t", {"abandoned": True})
    except KeyboardInterrupt as exc:
        abandoned_after = time.monotonic() - started
        abandoned = getattr(exc, "task_ids", MISSING)
    # If the first interrupt ended the call (as before the fix did), the
    # second must not end the scenario before it reports.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for timer in timers:
        timer.join()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    locker.wait(30)
    inline = _inline_statements(q)
    q.close()
    return {
        "inline": inline,
        "acked": acked,
        "noted": noted,
        "outside": outside,
        "at_entry": at_entry,
        "waits": waits,
        "abandoned": abandoned,
        "abandoned_after": abandoned_after,
    }


SCENARIOS = {"fork_storm": fork_storm, "signal_reentry": signal_reentry, "interrupts": interrupts}

if __name__ == "__main__":
    scenario, raw = sys.argv[1], sys.argv[2]
    report = SCENARIOS[scenario](**json.loads(raw))
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()
    os._exit(0)
