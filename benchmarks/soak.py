"""Soak: a long mixed load on one SQLite file with random faults (issue 3, section 6).

    .venv/bin/python benchmarks/soak.py --minutes 10 --out benchmarks/results/soak-<when>.json

Several producer processes enqueue (single enqueue, enqueue_many, unique
keys, delayed and scheduled tasks, all four priorities) while several worker
processes (``Worker.run()``, so SIGTERM drains) run a mix of handlers: no-op,
short sleeps, one that fails its first attempt, one that always fails (the
dead-letter set), one that loops in Python past its timeout on the first
attempt (interrupted by the asynchronous TaskTimeout) and one that blocks in C
past its timeout (abandoned and replaced). Meanwhile, one fault at a time at
random intervals:

* ``kill``: SIGKILL a worker process, then start a new one;
* ``term``: SIGTERM a worker process (graceful drain), then start a new one;
* ``stop``: SIGSTOP a worker process past its lease, then SIGCONT it;
* ``pkill``: SIGKILL a producer mid-burst, then restart it; it redoes the
  operation it has no acknowledgement for (same unique key, if it had one);
* ``diskfull``: every process caps its own connection at the file's current
  size (``SqliteStorage.set_max_size(0)``, i.e. SQLite's ``max_page_count``)
  for a second or two, as if the disk were full;
* ``fork``: a worker or producer process forks from a thread of its own
  while its other threads write (Python's default start method on Linux
  before 3.14 does this); the child calls ``stop()`` on the Worker it
  inherited (which must leave the parent's claims alone), enqueues a batch
  through the inherited TaskQueue, and exits; it must do so within 30 s;
* ``clockjump``: the wall clock of every process steps at once, as an NTP
  step or an operator does (forward by 2-4 leases, or back to where it
  was): each child's TaskQueue reads ``time.time()`` plus an offset the
  soak writes to a shared 8-byte file (``clock-offset``, mmap'd), while
  the monotonic clock runs on. Live tasks must not be rescued for it.

Worker slot 0 and producer slot 0 are never faulted: their one process lives
through the whole run, so its RSS, descriptors and threads show any leak.

Side channels (files in the work directory, one ``write()`` per line on an
O_APPEND descriptor, so a SIGKILL cannot lose a line whose write returned):

* ``exec-<pid>.log``: ``S <task> <attempt> <pid> <wall> <type>`` when a
  handler starts, ``E <task> <attempt> <pid> <wall> ok|err`` when it ends;
* ``acks-<slot>.log``: ``A <incarnation> <op> <kind> <n> <id,id,...>`` once
  an enqueue returned (the task is acknowledged), ``X <wall> <error>`` for
  each storage error a producer saw (and retried); ``acks-fork.log`` the
  same for forked children (``A 0 <child pid> fork ...``);
* ``forks.log``: ``F <parent pid> <child pid> <exit status> <seconds>`` for
  each forked child (status -9: it hung and was killed).

Every ``--sample`` seconds it reports rows, acknowledged, completed, pending,
running, failed, lost (acknowledged but absent), executions and duplicates,
RSS / open descriptors / threads of every process, and the WAL size. At the
end it stops the faults and the producers, lets the workers drain
everything, stops them, and checks with plain sqlite3: no acknowledged task
lost or unfinished, none running, ``PRAGMA integrity_check`` ok, batches all
or nothing, per-status counts agree, no stale completion recorded.

Duplicates: an execution meant to fail (by task type and attempt) followed by
another is a retry, by design. Any other execution whose outcome is not the
one the database recorded (the row names the process and attempt that
completed it) is a duplicate: work done twice. It is *explained* when its own
process was killed, stopped or terminated around it (from one lease before it
started to a few seconds after it ended, before its outcome could commit),
or when another process's SIGSTOP or a disk-full episode stalled the database
meanwhile; otherwise it is *unexplained* (a bug).

The machine may be shared: throughput is indicative only; the point is
correctness and flat resource use.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()

TYPES = ["noop", "sleep", "flaky", "fail", "hang_py", "hang_c"]
WEIGHTS = [40, 38, 12, 3, 5, 2]
#: Seconds after an execution ended during which a fault of its process
#: still explains a re-execution (its outcome may not have committed yet).
SLACK = 5.0
DISKFULL_FLAG = "diskfull"
STOP_PRODUCERS = "stop-producers"
CLOCK_OFFSET = "clock-offset"
FORK_FLAG = "fork-{pid}"
FORK_DEADLINE = 30.0


def expected_to_fail(task_type: str, attempt: int) -> bool:
    """Whether this attempt of this type fails by design (then a rerun is a retry)."""
    return task_type == "fail" or (task_type in ("flaky", "hang_py", "hang_c") and attempt <= 1)


# == child processes ===========================================================


class AppendLog:
    """One ``write()`` per line on O_APPEND: lines never interleave, and a
    line whose write returned survives a SIGKILL of the writer."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, line: str) -> None:
        os.write(self._fd, (line + "\n").encode())


def _child_logging(workdir: str, role: str) -> None:
    import logging

    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"%(created).3f {role} %(process)d %(threadName)s %(levelname)s %(message)s",
    )


class SoakClock:
    """``time.time()`` plus the offset the soak writes to ``clock-offset``:
    the same step, at once, in every process (a clock jump); the monotonic
    clock is the real one."""

    def __init__(self, workdir: str) -> None:
        import mmap

        fd = os.open(os.path.join(workdir, CLOCK_OFFSET), os.O_RDONLY)
        try:
            self._offset = mmap.mmap(fd, 8, prot=mmap.PROT_READ)
        finally:
            os.close(fd)

    def time(self) -> float:
        """The stepped wall clock (UTC epoch seconds)."""
        return time.time() + struct.unpack_from("d", self._offset)[0]

    def monotonic(self) -> float:
        """The real monotonic clock."""
        return time.monotonic()


def _fork_child(queue: Any, workdir: str, held: dict[str, Any]) -> None:
    """In a child forked while the parent's other threads ran: the Worker
    inherited must be inert, the inherited queue must work."""
    code = 1
    try:
        worker = held.get("worker")
        if worker is not None:
            worker.stop(0)  # the parent's claims: must stay the parent's
        pid = os.getpid()
        n = random.randint(1, 10)
        specs = [
            {"name": f"forked {pid}.{k}", "task_type": "noop",
             "payload": {"kind": "fork", "pid": pid, "k": k}}
            for k in range(n)
        ]  # fmt: skip
        ids = queue.enqueue_many(specs)
        AppendLog(Path(workdir, "acks-fork.log")).write(
            f"A 0 {pid} fork {n} {','.join(map(str, ids))}"
        )
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _fork_once(queue: Any, workdir: str, held: dict[str, Any]) -> None:
    """Fork from this (control) thread; wait for the child with a deadline."""
    start = time.monotonic()
    child = os.fork()
    if child == 0:
        _fork_child(queue, workdir, held)
    status = None
    while time.monotonic() - start < FORK_DEADLINE:
        done, raw = os.waitpid(child, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        time.sleep(0.01)
    if status is None:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        status = -9
    AppendLog(Path(workdir, "forks.log")).write(
        f"F {os.getpid()} {child} {status} {time.monotonic() - start:.3f}"
    )


def _control_thread(
    queue: Any, workdir: str, on_orphan: Any, held: dict[str, Any] | None = None
) -> None:
    """Apply/lift the disk-full cap when the flag file appears/goes; fork
    when asked; react when the soak process is gone (never outlive it)."""
    parent = os.getppid()
    flag = os.path.join(workdir, DISKFULL_FLAG)
    fork_flag = os.path.join(workdir, FORK_FLAG.format(pid=os.getpid()))
    capped = False

    def loop() -> None:
        nonlocal capped
        while True:
            if os.getppid() != parent:
                on_orphan()
                return
            if os.path.exists(fork_flag):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(fork_flag)
                _fork_once(queue, workdir, held or {})
            want = os.path.exists(flag)
            if want != capped:
                try:
                    queue.storage.set_max_size(0 if want else None)
                    capped = want
                except Exception as exc:
                    print(f"set_max_size failed: {exc!r}", file=sys.stderr, flush=True)
            time.sleep(0.05)

    threading.Thread(target=loop, name="soak-control", daemon=True).start()


def worker_main(db: str, workdir: str, concurrency: int, lease: float) -> None:
    from task_queue import HandlerRegistry, RetryPolicy, TaskQueue, Worker, current_task

    _child_logging(workdir, "worker")
    pid = os.getpid()
    log = AppendLog(Path(workdir, f"exec-{pid}.log"))

    def traced(task_type: str, fn: Any) -> Any:
        def handler(payload: Any) -> Any:
            ctx = current_task()
            assert ctx is not None
            task = ctx.task
            log.write(f"S {task.id} {task.attempts} {pid} {time.time():.6f} {task_type}")
            outcome = "err"
            try:
                fn(payload, task.attempts)
                outcome = "ok"
                return {"pid": pid, "attempt": task.attempts}
            finally:
                log.write(f"E {task.id} {task.attempts} {pid} {time.time():.6f} {outcome}")

        return handler

    def noop(payload: Any, attempt: int) -> None:
        pass

    def sleep(payload: Any, attempt: int) -> None:
        time.sleep(payload.get("ms", 10) / 1000)

    def flaky(payload: Any, attempt: int) -> None:
        if attempt <= 1:
            raise ValueError("flaky: the first attempt fails")

    def fail(payload: Any, attempt: int) -> None:
        raise RuntimeError("fail: always")

    def hang_py(payload: Any, attempt: int) -> None:
        # Python code past its 0.3 s timeout: the async TaskTimeout stops it.
        if attempt <= 1:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                time.sleep(0.01)

    def hang_c(payload: Any, attempt: int) -> None:
        # One C call past its timeout and grace: the thread is abandoned.
        if attempt <= 1:
            time.sleep(1.5)

    registry = HandlerRegistry()
    for name, fn in [
        ("noop", noop),
        ("sleep", sleep),
        ("flaky", flaky),
        ("fail", fail),
        ("hang_py", hang_py),
    ]:
        registry.register(name, traced(name, fn))
    registry.register("hang_c", traced("hang_c", hang_c), timeout=0.3)

    queue = TaskQueue(
        db, lease_seconds=lease, retry_policy=RetryPolicy(base=0.2, cap=1.0),
        clock=SoakClock(workdir),
    )  # fmt: skip
    worker = Worker(
        queue,
        registry,
        concurrency=concurrency,
        drain_timeout=10.0,
        timeout_grace=0.5,
        name=f"soak-{pid}",
    )
    _control_thread(queue, workdir, lambda: os.kill(pid, signal.SIGTERM), {"worker": worker})
    try:
        worker.run()
    finally:
        queue.close()


def make_op(seed: int, slot: int, index: int, inc: int) -> tuple[str, list[dict[str, Any]]]:
    """Operation ``index`` of producer ``slot``: the same every time it is
    made (a restarted producer redoes it with the same unique key)."""
    r = random.Random(f"{seed}:{slot}:{index}")
    kind = r.choices(["one", "many", "uniq"], [40, 35, 25])[0]
    n = r.randint(2, 25) if kind == "many" else 1
    specs = []
    for k in range(n):
        task_type = r.choices(TYPES, WEIGHTS)[0]
        payload: dict[str, Any] = {"p": slot, "inc": inc, "i": index, "k": k, "n": n, "kind": kind}
        if task_type == "sleep":
            payload["ms"] = r.randint(2, 40)
        spec: dict[str, Any] = {
            "name": f"{task_type} p{slot}.{index}.{k}",
            "task_type": task_type,
            "payload": payload,
            "priority": r.randint(1, 4),
            "max_retries": 1 if task_type == "fail" else 6,
        }
        if task_type == "hang_py":
            spec["timeout"] = 0.3
        x = r.random()
        if x < 0.10:
            spec["delay"] = r.uniform(0.5, 5.0)
        elif x < 0.15:
            spec["scheduled_at"] = time.time() + r.uniform(1.0, 5.0)
        if kind == "uniq":
            spec["unique_key"] = f"u{slot}-{r.randrange(40)}"
        specs.append(spec)
    return kind, specs


def producer_main(
    db: str, workdir: str, slot: int, inc: int, seed: int, rate: float, max_pending: int
) -> None:
    from task_queue import StorageError, TaskQueue

    _child_logging(workdir, "producer")
    path = Path(workdir, f"acks-{slot}.log")
    start = 0
    if path.exists():
        for line in path.read_text().splitlines(keepends=True):
            if line.endswith("\n") and line.startswith("A "):
                start = max(start, int(line.split()[2]) + 1)
    acks = AppendLog(path)
    stop_flag = os.path.join(workdir, STOP_PRODUCERS)
    orphaned = threading.Event()
    queue = TaskQueue(db, clock=SoakClock(workdir))
    _control_thread(queue, workdir, orphaned.set)
    pace = random.Random()
    next_check = 0.0
    pending = 0

    def stopping() -> bool:
        return orphaned.is_set() or os.path.exists(stop_flag)

    index = start
    burst = 0
    try:
        while not stopping():
            if time.monotonic() >= next_check:
                with contextlib.suppress(StorageError):
                    pending = queue.get_queue_stats()["pending"]
                next_check = time.monotonic() + 1.0
            if pending > max_pending:  # back-pressure: let the workers catch up
                time.sleep(0.2)
                continue
            kind, specs = make_op(seed, slot, index, inc)
            while True:
                try:
                    if kind == "many":
                        ids = queue.enqueue_many(specs)
                    else:
                        ids = [queue.enqueue(**specs[0])]
                    break
                except StorageError as exc:
                    # Typed storage errors write nothing: retrying is safe.
                    acks.write(f"X {time.time():.3f} {type(exc).__name__}")
                    if stopping():
                        return
                    time.sleep(pace.uniform(0.02, 0.1))
            acks.write(f"A {inc} {index} {kind} {len(specs)} {','.join(map(str, ids))}")
            index += 1
            # Bursts of back-to-back operations (mean 4), so a SIGKILL often
            # lands mid-burst, between a commit and its acknowledgement.
            burst -= 1
            if burst <= 0:
                burst = pace.randint(1, 7)
                time.sleep(pace.expovariate(rate / 4))
    finally:
        queue.close()


def child_entry(role: str, args: dict[str, Any]) -> None:
    if role == "worker":
        worker_main(**args)
    elif role == "producer":
        producer_main(**args)
    else:
        raise SystemExit(f"unknown role {role!r}")


# == the soak process ==========================================================


@dataclasses.dataclass
class Child:
    role: str
    slot: int
    proc: subprocess.Popen[bytes]
    started: float
    inc: int

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclasses.dataclass
class Fault:
    kind: str  # kill, term, stop, pkill, diskfull
    role: str
    slot: int
    pid: int
    start: float  # wall
    end: float | None = None
    note: str = ""


@dataclasses.dataclass(slots=True)
class Exec:
    task_id: int
    attempt: int
    pid: int
    start: float
    task_type: str
    end: float | None = None
    ok: bool | None = None


class LogReader:
    """Reads appended lines of a file incrementally (whole lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        cut = data.rfind(b"\n")
        if cut < 0:
            return []
        self.offset += cut + 1
        return data[: cut + 1].decode(errors="replace").splitlines()


class Soak:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.workdir = Path(opts.workdir or tempfile.mkdtemp(prefix="soak-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = str(self.workdir / "soak.db")
        self.rng = random.Random(opts.seed)
        self.children: dict[tuple[str, int], Child] = {}
        self.retired: list[Child] = []
        self.incarnations: collections.Counter[tuple[str, int]] = collections.Counter()
        self.faults: list[Fault] = []
        self.active: Fault | None = None
        self.active_due = 0.0
        self.anomalies: list[str] = []
        self.samples: list[dict[str, Any]] = []
        self.t0 = time.time()
        self.git = git_state()
        # Acknowledgements and executions, read incrementally.
        self.ack_readers: dict[int, LogReader] = {}
        self.acked: set[int] = set()
        self.acked_ops = 0
        self.ack_ops: dict[tuple[int, int, int], tuple[str, int, list[int]]] = {}
        self.unverified: set[int] = set()
        self.lost: set[int] = set()
        self.producer_errors: collections.Counter[str] = collections.Counter()
        self.exec_readers: dict[Path, LogReader] = {}
        self.open_execs: dict[tuple[int, int, int], Exec] = {}
        self.by_task: dict[int, list[Exec]] = collections.defaultdict(list)
        self.n_execs = 0
        self.wal_max = 0
        self.wal_max_interval = 0
        self.proc_stats: dict[int, Any] = {}
        #: task id -> (pid, attempt) whose completion the database recorded
        self.recorded: dict[int, tuple[int, int]] = {}
        # The wall-clock step every child adds to time.time() (clockjump).
        import mmap

        offset_path = self.workdir / CLOCK_OFFSET
        offset_path.write_bytes(struct.pack("d", 0.0))
        with open(offset_path, "r+b") as handle:
            self.offset_map = mmap.mmap(handle.fileno(), 8)
        self.fork_reader = LogReader(self.workdir / "forks.log")
        self.fork_acks = LogReader(self.workdir / "acks-fork.log")
        self.forks: list[tuple[int, int, int, float]] = []

    # -- processes -----------------------------------------------------------
    def spawn(self, role: str, slot: int) -> Child:
        key = (role, slot)
        self.incarnations[key] += 1
        inc = self.incarnations[key]
        o = self.opts
        if role == "worker":
            args: dict[str, Any] = {
                "db": self.db,
                "workdir": str(self.workdir),
                "concurrency": o.concurrency,
                "lease": o.lease,
            }
        else:
            args = {
                "db": self.db,
                "workdir": str(self.workdir),
                "slot": slot,
                "inc": inc,
                "seed": o.seed,
                "rate": o.rate,
                "max_pending": o.max_pending,
            }
        err = open(self.workdir / f"{role}-{slot}-{inc}.err", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [sys.executable, str(HERE), "--child", role, json.dumps(args)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # own process group: killpg in cleanup
            )
        finally:
            err.close()
        child = Child(role, slot, proc, time.time(), inc)
        self.children[key] = child
        return child

    def retire(self, child: Child) -> None:
        self.retired.append(child)
        self.children.pop((child.role, child.slot), None)

    def all_procs(self) -> list[Child]:
        return list(self.children.values()) + self.retired

    def cleanup(self) -> None:
        """Every child process and its group gone, whatever happened."""
        for child in self.all_procs():
            if child.proc.poll() is None:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.pid, sig)
        for child in self.all_procs():
            with contextlib.suppress(Exception):
                child.proc.wait(timeout=10)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.workdir / DISKFULL_FLAG)

    def check_children(self) -> None:
        """A child that exited on its own is an anomaly: note it, replace it."""
        faulted = self.active.pid if self.active is not None else None
        for child in list(self.children.values()):
            rc = child.proc.poll()
            if rc is not None and child.pid != faulted:
                self.anomalies.append(
                    f"{self.now():.1f}s: {child.role} {child.slot} (pid {child.pid}) "
                    f"exited on its own, rc={rc}"
                )
                self.retire(child)
                self.spawn(child.role, child.slot)

    # -- faults ----------------------------------------------------------------
    def now(self) -> float:
        return time.time() - self.t0

    def offset(self) -> float:
        return float(struct.unpack_from("d", self.offset_map)[0])

    def wall(self) -> float:
        """The children's wall clock (time.time() plus the clock step)."""
        return time.time() + self.offset()

    def next_fault_gap(self) -> float:
        lo, hi = self.opts.fault_gap
        return self.rng.uniform(lo, hi)

    def start_fault(self) -> None:
        workers = [c for (r, s), c in self.children.items() if r == "worker" and s > 0]
        producers = [c for (r, s), c in self.children.items() if r == "producer" and s > 0]
        kinds = {
            "kill": 30, "term": 20, "stop": 20, "pkill": 20, "diskfull": 10, "fork": 15,
            "clockjump": 10,
        }  # fmt: skip
        if not workers:
            for k in ("kill", "term", "stop"):
                kinds.pop(k)
        if not producers:
            kinds.pop("pkill")
        if not workers and not producers:
            kinds.pop("fork")
        kind = self.rng.choices(list(kinds), list(kinds.values()))[0]
        wall = time.time()
        if kind == "clockjump":
            # Forward by 2-4 leases, or back to where it was: both directions.
            before = self.offset()
            after = 0.0 if before else self.rng.uniform(2.0, 4.0) * self.opts.lease
            struct.pack_into("d", self.offset_map, 0, after)
            self.active = Fault(kind, "all", -1, -1, wall, note=f"{after - before:+.1f}s")
            # Nothing else meanwhile: what follows is the jump's doing.
            self.active_due = time.monotonic() + 2 * self.opts.lease
            return
        if kind == "fork":
            target = self.rng.choice(workers + producers)
            (self.workdir / FORK_FLAG.format(pid=target.pid)).touch()
            self.faults.append(Fault(kind, target.role, target.slot, target.pid, wall, wall))
            self.active = None
            return
        if kind == "diskfull":
            (self.workdir / DISKFULL_FLAG).touch()
            self.active = Fault(kind, "all", -1, -1, wall)
            self.active_due = time.monotonic() + self.rng.uniform(1.0, 2.0)
            return
        target = self.rng.choice(producers if kind == "pkill" else workers)
        fault = Fault(kind, target.role, target.slot, target.pid, wall)
        self.faults.append(fault)
        if kind in ("kill", "pkill"):
            os.kill(target.pid, signal.SIGKILL)
            target.proc.wait()  # reap at once: a zombie's PID still looks alive
            fault.end = time.time()
            self.retire(target)
            self.spawn(target.role, target.slot)
            self.active = None
        elif kind == "term":
            os.kill(target.pid, signal.SIGTERM)
            self.active = fault
            self.active_due = time.monotonic() + 30.0  # drain_timeout 10 s, plus margin
        elif kind == "stop":
            os.kill(target.pid, signal.SIGSTOP)
            self.active = fault
            self.active_due = time.monotonic() + self.opts.lease + self.rng.uniform(1.5, 3.0)

    def finish_fault(self, force: bool = False) -> bool:
        """Advance the active fault; True once it is over."""
        fault = self.active
        if fault is None:
            return True
        due = time.monotonic() >= self.active_due
        if fault.kind == "clockjump":
            if due or force:
                fault.end = time.time()
                self.faults.append(fault)
                self.active = None
            return self.active is None
        if fault.kind == "diskfull":
            if due or force:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.workdir / DISKFULL_FLAG)
                fault.end = time.time() + 0.1  # the children look every 0.05 s
                self.faults.append(fault)
                self.active = None
            return self.active is None
        child = self.children[(fault.role, fault.slot)]
        if fault.kind == "stop":
            if due or force:
                os.kill(child.pid, signal.SIGCONT)
                fault.end = time.time()
                self.active = None
        elif fault.kind == "term":
            rc = child.proc.poll()
            if rc is None and due:
                fault.note = "did not exit within 30 s of SIGTERM; killed"
                self.anomalies.append(f"{self.now():.1f}s: worker pid {child.pid} {fault.note}")
                os.killpg(child.pid, signal.SIGKILL)
                rc = child.proc.wait()
            if rc is not None:
                fault.end = time.time()
                if rc != 0 and not fault.note:
                    fault.note = f"exit code {rc}"
                    self.anomalies.append(f"{self.now():.1f}s: worker after SIGTERM: rc={rc}")
                self.retire(child)
                self.spawn(child.role, child.slot)
                self.active = None
        return self.active is None

    # -- observation -----------------------------------------------------------
    def ingest(self) -> None:
        for slot in range(self.opts.producers):
            reader = self.ack_readers.setdefault(slot, LogReader(self.workdir / f"acks-{slot}.log"))
            for line in reader.new_lines():
                fields = line.split()
                if fields[0] == "X":
                    self.producer_errors[fields[2]] += 1
                elif fields[0] == "A":
                    inc, index, kind, n = int(fields[1]), int(fields[2]), fields[3], int(fields[4])
                    ids = [int(x) for x in fields[5].split(",")]
                    self.acked_ops += 1
                    self.ack_ops[(slot, inc, index)] = (kind, n, ids)
                    new = set(ids) - self.acked
                    self.acked |= new
                    self.unverified |= new
        for line in self.fork_acks.new_lines():
            fields = line.split()
            ids = [int(x) for x in fields[5].split(",")]
            self.acked_ops += 1
            self.ack_ops[(-1, 0, int(fields[2]))] = (fields[3], int(fields[4]), ids)
            new = set(ids) - self.acked
            self.acked |= new
            self.unverified |= new
        for line in self.fork_reader.new_lines():
            _, parent, child, status, seconds = line.split()
            self.forks.append((int(parent), int(child), int(status), float(seconds)))
            if int(status) != 0:
                self.anomalies.append(
                    f"{self.now():.1f}s: a child forked by pid {parent} exited {status} "
                    f"after {seconds} s"
                )
        for path in self.workdir.glob("exec-*.log"):
            reader = self.exec_readers.setdefault(path, LogReader(path))
            for line in reader.new_lines():
                fields = line.split()
                task_id, attempt, pid, wall = (
                    int(fields[1]),
                    int(fields[2]),
                    int(fields[3]),
                    float(fields[4]),
                )
                if fields[0] == "S":
                    run = Exec(task_id, attempt, pid, wall, fields[5])
                    self.open_execs[(task_id, attempt, pid)] = run
                    self.by_task[task_id].append(run)
                    self.n_execs += 1
                elif fields[0] == "E":
                    opened = self.open_execs.pop((task_id, attempt, pid), None)
                    if opened is not None:
                        opened.end = wall
                        opened.ok = fields[5] == "ok"

    def classify(self) -> dict[str, Any]:
        """Retries by design vs duplicates, and what explains each duplicate.

        Of a task's executions, those meant to fail (by type and attempt)
        are retries by design, and the one whose outcome the database
        recorded (its process and attempt are in the row: ``self.recorded``)
        is the one that counted. Every other execution is a duplicate: work
        done twice. It is explained by a fault of its own process near it
        (killed or terminated while running it, or stopped while holding it:
        from a lease before it started to a few seconds after it ended), or
        else by a database stall (another process's SIGSTOP, a disk-full
        episode) around it; otherwise it is unexplained.
        """
        now = time.time()
        windows: dict[int, list[tuple[float, float, str]]] = collections.defaultdict(list)
        stalls: list[tuple[float, float, str]] = []
        faults = list(self.faults) + ([self.active] if self.active is not None else [])
        rank = {"kill": 0, "term": 1, "stop": 2}
        for f in faults:
            window = (f.start, f.end if f.end is not None else now, f.kind)
            # A fork or a clock jump explains nothing: work done twice
            # around one is a bug.
            if f.pid > 0 and f.kind in rank:
                windows[f.pid].append(window)
            if f.kind in ("stop", "diskfull"):
                stalls.append(window)
        by_design = 0
        explained: collections.Counter[str] = collections.Counter()
        unexplained: list[dict[str, Any]] = []
        concurrent: collections.Counter[str] = collections.Counter()
        concurrent_other: list[dict[str, Any]] = []
        cut = 0  # executions that never ended (their process died)
        hang_py: list[float] = []  # durations of Python-hang first attempts (timeout 0.3 s)
        hang_py_ok = 0
        hang_py_stopped = 0
        hang_py_stalled = 0
        lease = self.opts.lease

        def died_at(run: Exec) -> float:
            """When an execution that never logged its end stopped (kill/term)."""
            # A process may log a start between the moment the soak notes a
            # kill and the signal's arrival: compare with the window's end.
            ends = [w[1] for w in windows.get(run.pid, ()) if w[2] != "stop" and w[1] >= run.start]
            return min(ends, default=math.inf)

        def stopped_during(run: Exec, end: float) -> bool:
            return any(
                w[2] == "stop" and w[0] <= end and w[1] >= run.start
                for w in windows.get(run.pid, ())
            )

        for task_id, runs in self.by_task.items():
            for run in runs:
                if run.end is None and run.pid in windows:
                    cut += 1
                if run.task_type == "hang_py" and run.attempt <= 1 and run.end is not None:
                    if stopped_during(run, run.end):
                        hang_py_stopped += 1  # its clock ran on while it was frozen
                    elif run.ok and any(w[0] <= run.end and w[1] >= run.start for w in stalls):
                        # Not interrupted while the database was stalled by
                        # another process: the dispatcher that enforces
                        # timeouts was itself waiting on the database.
                        hang_py_stalled += 1
                    else:
                        hang_py.append(run.end - run.start)
                        hang_py_ok += bool(run.ok)
            if len(runs) < 2:
                continue
            runs.sort(key=lambda e: e.start)
            for prev, nxt in itertools.pairwise(runs):
                prev_end = prev.end if prev.end is not None else died_at(prev)
                if nxt.start < prev_end and nxt.pid != prev.pid:
                    if expected_to_fail(prev.task_type, prev.attempt):
                        concurrent["timed-out attempt still running"] += 1
                    elif stopped_during(prev, prev_end):
                        concurrent["frozen holder resumed (SIGSTOP)"] += 1
                    else:
                        concurrent["other"] += 1
                        concurrent_other.append(
                            {"task": task_id, "runs": [self.run_info(r) for r in (prev, nxt)]}
                        )
            recorded = self.recorded.get(task_id)
            successes = [r for r in runs if not expected_to_fail(r.task_type, r.attempt)]
            if recorded is not None:
                counted = next((r for r in successes if (r.pid, r.attempt) == recorded), None)
            else:  # not finished yet (or failed): the latest may still count
                counted = successes[-1] if successes else None
            by_design += len(runs) - len(successes) - (1 if not successes else 0)
            for run in successes:
                if run is counted:
                    continue
                end = run.end if run.end is not None else min(died_at(run), now)
                lo, hi = run.start - lease - SLACK, end + SLACK

                def distance(
                    w: tuple[float, float, str], run: Exec = run, end: float = end
                ) -> float:
                    return max(0.0, w[0] - end, run.start - w[1])

                own = sorted(
                    (w for w in windows.get(run.pid, ()) if w[0] <= hi and w[1] >= lo),
                    key=lambda w: (distance(w), rank[w[2]]),
                )
                if own:
                    explained[own[0][2]] += 1
                    continue
                other = sorted((w for w in stalls if w[0] <= hi and w[1] >= lo), key=distance)
                if other:
                    explained[f"other-{other[0][2]}"] += 1
                    continue
                unexplained.append(
                    {
                        "task": task_id,
                        "recorded": recorded,
                        "runs": [self.run_info(r) for r in runs],
                    }
                )
        duplicates = sum(explained.values()) + len(unexplained)
        return {
            "executions": self.n_execs,
            "tasks_executed": len(self.by_task),
            "retries_by_design": by_design,
            "duplicates": duplicates,
            "duplicates_explained": dict(explained),
            "duplicates_unexplained": len(unexplained),
            "unexplained_examples": unexplained[:20],
            "concurrent_executions": sum(concurrent.values()),
            "concurrent_by_kind": dict(concurrent),
            "concurrent_other_examples": concurrent_other[:20],
            "executions_cut_by_fault": cut,
            "hang_py_first_attempts": len(hang_py),
            "hang_py_first_attempts_not_interrupted": hang_py_ok,
            "hang_py_first_attempts_frozen": hang_py_stopped,
            "hang_py_first_attempts_not_interrupted_during_stall": hang_py_stalled,
            "hang_py_first_attempt_seconds_max": round(max(hang_py, default=0.0), 3),
            "hang_py_first_attempt_seconds_median": round(statistics.median(hang_py), 3)
            if hang_py
            else None,
        }

    def run_info(self, r: Exec) -> dict[str, Any]:
        return {
            "pid": r.pid,
            "attempt": r.attempt,
            "type": r.task_type,
            "start": round(r.start - self.t0, 3),
            "end": None if r.end is None else round(r.end - self.t0, 3),
            "ok": r.ok,
        }

    def db_counts(self) -> dict[str, int]:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            counts = {
                s: int(n)
                for s, n in conn.execute("SELECT status, sum(n) FROM task_counts GROUP BY status")
            }
            due = conn.execute(
                "SELECT count(*) FROM tasks WHERE status = 'pending' AND run_at <= ?",
                (self.wall(),),
            ).fetchone()[0]
            counts["pending_due"] = int(due)
            # Acknowledged ids not yet seen in the table (rows are never deleted).
            if self.unverified:
                ids = json.dumps(sorted(self.unverified))
                found = {
                    int(r[0])
                    for r in conn.execute(
                        "SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?))", (ids,)
                    )
                }
                self.lost |= self.unverified - found
                self.unverified = set()
            # Which execution counted, for tasks executed more than once.
            multi = [t for t, runs in self.by_task.items() if len(runs) > 1]
            todo = sorted(t for t in multi if t not in self.recorded)
            for i in range(0, len(todo), 5000):
                chunk = json.dumps(todo[i : i + 5000])
                for task_id, pid, attempts in conn.execute(
                    "SELECT id, owner_pid, attempts FROM tasks WHERE status = 'completed' "
                    "AND id IN (SELECT value FROM json_each(?))",
                    (chunk,),
                ):
                    self.recorded[int(task_id)] = (int(pid), int(attempts))
        finally:
            conn.close()
        return counts

    def resources(self) -> dict[str, Any]:
        import psutil

        out: dict[str, Any] = {"workers": [], "producers": []}
        for (role, slot), child in sorted(self.children.items()):
            try:
                p = self.proc_stats.get(child.pid) or psutil.Process(child.pid)
                self.proc_stats[child.pid] = p
                with p.oneshot():
                    info = {
                        "slot": slot,
                        "pid": child.pid,
                        "age_s": round(time.time() - child.started, 1),
                        "rss_mb": round(p.memory_info().rss / 2**20, 1),
                        "fds": p.num_fds(),
                        "threads": p.num_threads(),
                        "status": p.status(),
                    }
            except psutil.Error:
                continue
            out[f"{role}s"].append(info)
        return out

    def file_sizes(self) -> dict[str, int]:
        sizes = {}
        for name, path in (("db", self.db), ("wal", self.db + "-wal"), ("shm", self.db + "-shm")):
            try:
                sizes[name] = os.path.getsize(path)
            except FileNotFoundError:
                sizes[name] = 0
        return sizes

    def watch_wal(self) -> None:
        size = self.file_sizes()["wal"]
        self.wal_max = max(self.wal_max, size)
        self.wal_max_interval = max(self.wal_max_interval, size)

    def sample(self, phase: str) -> dict[str, Any]:
        self.ingest()
        counts = self.db_counts()
        sizes = self.file_sizes()
        dup = self.classify()
        kinds = collections.Counter(f.kind for f in self.faults)
        s = {
            "t": round(self.now(), 1),
            "phase": phase,
            "rows": sum(
                counts.get(k, 0) for k in ("pending", "running", "completed", "failed", "cancelled")
            ),
            "acked_ids": len(self.acked),
            "acked_ops": self.acked_ops,
            **{
                k: counts.get(k, 0)
                for k in ("completed", "pending", "pending_due", "running", "failed", "cancelled")
            },
            "lost": len(self.lost),
            **{
                k: dup[k]
                for k in (
                    "executions",
                    "retries_by_design",
                    "duplicates",
                    "duplicates_unexplained",
                    "concurrent_executions",
                )
            },
            "duplicates_explained": dup["duplicates_explained"],
            "wal_bytes": sizes["wal"],
            "wal_max_bytes_interval": max(self.wal_max_interval, sizes["wal"]),
            "db_bytes": sizes["db"],
            "faults": dict(kinds),
            "producer_errors": dict(self.producer_errors),
            **self.resources(),
        }
        self.wal_max_interval = 0
        self.samples.append(s)
        print(self.format_sample(s), flush=True)
        return s

    @staticmethod
    def format_sample(s: dict[str, Any]) -> str:
        w = s["workers"]
        rss = "/".join(f"{x['rss_mb']:.0f}" for x in w)
        fds = "/".join(str(x["fds"]) for x in w)
        thr = "/".join(str(x["threads"]) for x in w)
        return (
            f"[{s['t']:7.1f}s {s['phase']:5}] acked {s['acked_ids']:7d} done {s['completed']:7d} "
            f"pend {s['pending']:5d} run {s['running']:3d} failed {s['failed']:5d} "
            f"lost {s['lost']} dup {s['duplicates']} (unexpl {s['duplicates_unexplained']}) "
            f"faults {sum(s['faults'].values())} | worker RSS MB {rss} fds {fds} thr {thr} "
            f"| WAL {s['wal_bytes'] / 2**20:.1f} MB (max {s['wal_max_bytes_interval'] / 2**20:.1f})"
        )

    # -- the run ---------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        o = self.opts
        for slot in range(o.workers):
            self.spawn("worker", slot)
        for slot in range(o.producers):
            self.spawn("producer", slot)
        load_end = time.monotonic() + o.minutes * 60
        next_sample = time.monotonic() + min(o.sample, 5.0)
        next_fault = time.monotonic() + (self.next_fault_gap() if o.faults else math.inf)
        next_wal = 0.0
        while time.monotonic() < load_end:
            now = time.monotonic()
            if self.active is not None:
                if self.finish_fault():
                    next_fault = now + self.next_fault_gap()
            elif now >= next_fault:
                self.start_fault()
                if self.active is None:
                    next_fault = now + self.next_fault_gap()
            self.check_children()
            if now >= next_wal:
                self.watch_wal()
                next_wal = now + 0.5
            if now >= next_sample:
                self.sample("load")
                next_sample = now + o.sample
            time.sleep(0.05)

        # Faults off, producers off, then let the workers drain everything.
        print("load phase over: ending the active fault, stopping producers", flush=True)
        while not self.finish_fault(force=True):
            self.check_children()
            time.sleep(0.05)
        (self.workdir / STOP_PRODUCERS).touch()
        deadline = time.monotonic() + 30
        for key in [k for k in self.children if k[0] == "producer"]:
            child = self.children[key]
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.anomalies.append(f"producer {child.slot} did not stop in 30 s; killed")
                os.killpg(child.pid, signal.SIGKILL)
                child.proc.wait()
            self.retire(child)
        drain_start = time.monotonic()
        drained = False
        next_sample = drain_start
        while time.monotonic() < drain_start + o.drain_timeout:
            self.check_children()
            self.watch_wal()
            counts = self.db_counts()
            if counts.get("pending", 0) == 0 and counts.get("running", 0) == 0:
                drained = True
                break
            if time.monotonic() >= next_sample:
                self.sample("drain")
                next_sample = time.monotonic() + min(o.sample, 10.0)
            time.sleep(0.2)
        drain_seconds = time.monotonic() - drain_start
        final = self.sample("end")
        # Stop the workers gracefully (SIGTERM: drain), then check with nobody
        # using the file.
        for child in [c for k, c in self.children.items() if k[0] == "worker"]:
            os.kill(child.pid, signal.SIGTERM)
        for child in [c for k, c in self.children.items() if k[0] == "worker"]:
            try:
                rc = child.proc.wait(timeout=30)
                if rc != 0:
                    self.anomalies.append(f"worker {child.slot} exit code {rc} at the end")
            except subprocess.TimeoutExpired:
                self.anomalies.append(f"worker {child.slot} did not stop in 30 s; killed")
                os.killpg(child.pid, signal.SIGKILL)
                child.proc.wait()
            self.retire(child)
        self.ingest()
        checks = self.final_checks(drained)
        return self.report(final, checks, drain_seconds)

    def final_checks(self, drained: bool) -> dict[str, Any]:
        alive = [c.pid for c in self.all_procs() if c.proc.poll() is None]
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            rows = {
                int(r[0]): (r[1], r[2], r[3], r[4], r[5], r[6], r[7])
                for r in conn.execute(
                    "SELECT id, status, task_type, payload, result, owner_pid, attempts, "
                    "error_message FROM tasks"
                )
            }
            counts = {
                s: int(n)
                for s, n in conn.execute("SELECT status, sum(n) FROM task_counts GROUP BY status")
            }
        finally:
            conn.close()
        actual = collections.Counter(r[0] for r in rows.values())
        for task_id, row in rows.items():
            if row[0] == "completed" and row[4] is not None and row[5] is not None:
                self.recorded[task_id] = (int(row[4]), int(row[5]))
        counts_agree = all(counts.get(s, 0) == actual.get(s, 0) for s in set(counts) | set(actual))
        lost = sorted(self.acked - rows.keys())
        unfinished = sorted(
            i for i in self.acked & rows.keys() if rows[i][0] in ("pending", "running")
        )
        running = sorted(i for i, r in rows.items() if r[0] == "running")
        # Batches all or nothing: rows per (producer, incarnation, op) of
        # enqueue_many are 0 or the batch size.
        per_op: collections.Counter[tuple[int, int, int]] = collections.Counter()
        sizes: dict[tuple[int, int, int], int] = {}
        unacked_rows = 0
        for task_id, (_status, _type, payload, *_rest) in rows.items():
            p = json.loads(payload)
            if p["kind"] == "many":
                key = (p["p"], p["inc"], p["i"])
                per_op[key] += 1
                sizes[key] = p["n"]
            if task_id not in self.acked:
                unacked_rows += 1
        partial_batches = sorted(k for k, n in per_op.items() if n != sizes[k])
        # Fencing: a completed task's result comes from the claim that holds
        # it (same process, same attempt), never from a stale holder.
        stale = []
        no_execution = []
        status_by_type: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        failed_reasons: collections.Counter[str] = collections.Counter()
        for task_id, (status, task_type, _payload, result, owner, attempts, error) in rows.items():
            status_by_type[task_type][status] += 1
            if status == "failed" and task_type != "fail":
                failed_reasons[(error or "")[:80]] += 1
            if status != "completed":
                continue
            res = json.loads(result)
            if res.get("pid") != owner or res.get("attempt") != attempts:
                stale.append(task_id)
            if not any(e.ok and e.pid == res.get("pid") for e in self.by_task.get(task_id, ())):
                no_execution.append(task_id)
        unexpected_failed = sum(
            n
            for t, c in status_by_type.items()
            if t != "fail"
            for s, n in c.items()
            if s == "failed"
        )
        ok = (
            not alive
            and drained
            and integrity == ["ok"]
            and not lost
            and not self.lost
            and not unfinished
            and not running
            and not partial_batches
            and counts_agree
            and not stale
            and not no_execution
            and all(status == 0 for *_, status, _ in self.forks)
        )
        return {
            "ok": ok,
            "processes_alive_at_check": alive,
            "drained": drained,
            "integrity_check": integrity,
            "rows": len(rows),
            "acked_ids": len(self.acked),
            "acked_ops": self.acked_ops,
            "unacknowledged_rows": unacked_rows,
            "lost": len(lost),
            "lost_ids": lost[:50],
            "lost_during_run": len(self.lost),
            "acked_unfinished": len(unfinished),
            "stuck_running": len(running),
            "batches": len(per_op),
            "partial_batches": len(partial_batches),
            "counts_agree": counts_agree,
            "stale_completions": len(stale),
            "stale_examples": stale[:20],
            "completed_without_execution": len(no_execution),
            "forks": len(self.forks),
            "forks_failed": sum(1 for *_, status, _ in self.forks if status != 0),
            "fork_seconds_max": round(max((f[3] for f in self.forks), default=0.0), 3),
            "status_by_type": {t: dict(c) for t, c in sorted(status_by_type.items())},
            "unexpected_failed": unexpected_failed,
            "unexpected_failed_reasons": dict(failed_reasons.most_common(5)),
        }

    def child_logs(self) -> dict[str, int]:
        """WARNING+ lines of every child, digits folded, by count: the
        handlers' designed failures and anything else the library said."""
        import re

        counts: collections.Counter[str] = collections.Counter()
        for path in self.workdir.glob("*.err"):
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split(" ", 4)
                text = parts[4] if len(parts) == 5 and parts[0][:1].isdigit() else line
                counts[re.sub(r"\d+(\.\d+)?", "N", text)[:160]] += 1
        return dict(counts.most_common(40))

    def report(
        self, final: dict[str, Any], checks: dict[str, Any], drain_seconds: float
    ) -> dict[str, Any]:
        dup = self.classify()
        load = [s for s in self.samples if s["phase"] == "load"]

        def series(role: str, key: str, slot: int = 0) -> list[Any]:
            return [x[key] for s in self.samples for x in s[f"{role}s"] if x["slot"] == slot]

        def all_of(role: str, key: str) -> list[Any]:
            return [x[key] for s in self.samples for x in s[f"{role}s"]]

        resources: dict[str, Any] = {}
        for role in ("worker", "producer"):
            for key in ("rss_mb", "fds", "threads"):
                s0 = series(role, key)
                values = all_of(role, key)
                resources[f"{role}0_{key}"] = {
                    "first": s0[0] if s0 else None,
                    "last": s0[-1] if s0 else None,
                    "min": min(s0) if s0 else None,
                    "max": max(s0) if s0 else None,
                }
                resources[f"{role}s_{key}_max"] = max(values) if values else None
        wal = [s["wal_bytes"] for s in self.samples]
        duration = self.opts.minutes * 60
        result = {
            "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
            "started_utc": dt.datetime.fromtimestamp(self.t0, dt.timezone.utc).isoformat(),
            "git": self.git,
            "config": {k: v for k, v in vars(self.opts).items() if k != "child"},
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "load_seconds": duration,
            "drain_seconds": round(drain_seconds, 1),
            "throughput_load": {
                "acked_per_s": round(load[-1]["acked_ids"] / load[-1]["t"], 1) if load else None,
                "completed_per_s": round(load[-1]["completed"] / load[-1]["t"], 1)
                if load
                else None,
            },
            "faults": {
                "counts": dict(collections.Counter(f.kind for f in self.faults)),
                "events": [
                    {
                        "kind": f.kind,
                        "role": f.role,
                        "slot": f.slot,
                        "pid": f.pid,
                        "start": round(f.start - self.t0, 2),
                        "end": None if f.end is None else round(f.end - self.t0, 2),
                        "note": f.note,
                    }
                    for f in self.faults
                ],
            },
            "producer_storage_errors": dict(self.producer_errors),
            "anomalies": self.anomalies,
            "child_log_lines": self.child_logs(),
            "executions": dup,
            "checks": checks,
            "resources": resources,
            "wal": {
                "max_bytes": self.wal_max,
                "max_sampled_bytes": max(wal) if wal else 0,
                "last_bytes": wal[-1] if wal else 0,
                "median_bytes": statistics.median(wal) if wal else 0,
            },
            "db_bytes_end": final["db_bytes"],
            "samples": self.samples,
            "workdir": str(self.workdir),
        }
        return result


def git_state() -> dict[str, Any]:
    """The library version under test (the checkout may be shared and dirty)."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip()

    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "uncommitted_library_files": git("status", "--short", "--", "task_queue").splitlines(),
    }


# == output ======================================================================


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    c, e, res, w = r["checks"], r["executions"], r["resources"], r["wal"]

    def mb(x: float) -> str:
        return f"{x / 2**20:.1f} MB"

    def span(key: str) -> str:
        v = res[key]
        return f"{v['first']} -> {v['last']} (min {v['min']}, max {v['max']})"

    explained = ", ".join(f"{k} {n}" for k, n in sorted(e["duplicates_explained"].items()))
    return [
        ("load / drain", f"{r['load_seconds'] / 60:.1f} min / {r['drain_seconds']} s"),
        ("faults", ", ".join(f"{k} {n}" for k, n in sorted(r["faults"]["counts"].items()))),
        ("acknowledged tasks (ops)", f"{c['acked_ids']} ({c['acked_ops']})"),
        ("rows / unacknowledged rows", f"{c['rows']} / {c['unacknowledged_rows']}"),
        (
            "throughput during load",
            f"{r['throughput_load']['acked_per_s']} acked/s, "
            f"{r['throughput_load']['completed_per_s']} completed/s",
        ),
        ("LOST (acked, absent)", str(c["lost"])),
        ("acked but unfinished", str(c["acked_unfinished"])),
        ("stuck running", str(c["stuck_running"])),
        ("integrity_check", ",".join(c["integrity_check"])),
        ("partial batches", f"{c['partial_batches']} of {c['batches']}"),
        ("stale completions recorded", str(c["stale_completions"])),
        ("per-status counts agree", str(c["counts_agree"])),
        (
            "forked children (enqueue through the inherited queue, exit)",
            f"{c['forks']}, {c['forks_failed']} failed or hung, slowest {c['fork_seconds_max']} s",
        ),
        ("executions / retries by design", f"{e['executions']} / {e['retries_by_design']}"),
        ("duplicate executions", f"{e['duplicates']} (explained: {explained or 'none'})"),
        ("UNEXPLAINED duplicates", str(e["duplicates_unexplained"])),
        (
            "concurrent executions of one task",
            ", ".join(f"{k} {n}" for k, n in sorted(e["concurrent_by_kind"].items())) or "none",
        ),
        (
            "Python hang past 0.3 s timeout: interrupted after",
            f"median {e['hang_py_first_attempt_seconds_median']} s, max "
            f"{e['hang_py_first_attempt_seconds_max']} s; not interrupted "
            f"{e['hang_py_first_attempts_not_interrupted']} of {e['hang_py_first_attempts']} "
            f"(not counted: {e['hang_py_first_attempts_frozen']} frozen by SIGSTOP, "
            f"{e['hang_py_first_attempts_not_interrupted_during_stall']} not interrupted while "
            "another process's SIGSTOP / a disk-full episode stalled the database)",
        ),
        ("failed, other than type 'fail'", str(c["unexpected_failed"])),
        (
            "producer storage errors (retried)",
            ", ".join(f"{k} {n}" for k, n in sorted(r["producer_storage_errors"].items()))
            or "none",
        ),
        ("worker 0 RSS MB", span("worker0_rss_mb")),
        ("worker 0 fds", span("worker0_fds")),
        ("worker 0 threads", span("worker0_threads")),
        ("producer 0 RSS MB", span("producer0_rss_mb")),
        (
            "max over all workers: RSS MB / fds / threads",
            f"{res['workers_rss_mb_max']} / {res['workers_fds_max']} / "
            f"{res['workers_threads_max']}",
        ),
        ("WAL max (0.5 s watch) / last", f"{mb(w['max_bytes'])} / {mb(w['last_bytes'])}"),
        ("database size at the end", mb(r["db_bytes_end"])),
        ("anomalies", str(len(r["anomalies"]))),
        ("RESULT", "PASS" if c["ok"] else "FAIL"),
    ]


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Soak run {r['started_utc'][:19]}Z",
        "",
        f"Command: `{r['command']}`  ",
        f"Library: git {r['git']['head']}"
        + (
            f" plus uncommitted changes to {', '.join(r['git']['uncommitted_library_files'])}"
            if r["git"]["uncommitted_library_files"]
            else ""
        )
        + " (at the start).  ",
        f"Python {r['python']}, SQLite {r['sqlite']}, {r['cpus']} CPUs (shared machine: "
        "throughput is indicative only). Config: "
        f"{r['config']['workers']} worker processes x {r['config']['concurrency']} threads, "
        f"{r['config']['producers']} producers, lease {r['config']['lease']} s.",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in summary_rows(r)],
        "",
        "## Over time",
        "",
        "| t (s) | phase | acked | completed | pending | running | failed | lost | dup "
        "(unexpl.) | faults | worker RSS MB | fds | threads | WAL MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["samples"]:
        w = s["workers"]
        lines.append(
            f"| {s['t']} | {s['phase']} | {s['acked_ids']} | {s['completed']} | {s['pending']} "
            f"| {s['running']} | {s['failed']} | {s['lost']} | {s['duplicates']} "
            f"({s['duplicates_unexplained']}) | {sum(s['faults'].values())} "
            f"| {'/'.join(str(x['rss_mb']) for x in w)} | {'/'.join(str(x['fds']) for x in w)} "
            f"| {'/'.join(str(x['threads']) for x in w)} | {s['wal_bytes'] / 2**20:.2f} |"
        )
    lines += [
        "",
        "Worker columns list the worker slots in order; slot 0 is never faulted, the others "
        "are restarted after kills and SIGTERMs (so their age varies). An execution meant to "
        "fail (by task type and attempt) followed by another is a retry by design. Any other "
        "execution whose outcome is not the one the database recorded is a duplicate: work done "
        "twice. It is explained when its own process was killed, stopped or terminated around it "
        "(from one lease before it started to 5 s after it ended: `kill`, `stop`, `term`), or "
        "else when another process's SIGSTOP or a disk-full episode stalled the database then "
        "(`other-stop`, `other-diskfull`); otherwise it is unexplained (a bug).",
    ]
    lines += ["", "## What the child processes logged (WARNING and above, digits as N)", ""]
    lines += [f"- {n} x `{text}`" for text, n in r["child_log_lines"].items()]
    if r["anomalies"]:
        lines += ["", "## Anomalies", "", *[f"- {a}" for a in r["anomalies"]]]
    if r["executions"]["unexplained_examples"]:
        lines += ["", "## Unexplained duplicates (first ones)", "", "```"]
        lines += [json.dumps(x) for x in r["executions"]["unexplained_examples"]]
        lines += ["```"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="load phase length")
    ap.add_argument("--out", help="JSON result path (a .md summary is written next to it)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=15.0, help="operations/s per producer")
    ap.add_argument("--max-pending", type=int, default=3000, help="producer back-pressure")
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--sample", type=float, default=15.0, help="seconds between samples")
    ap.add_argument("--fault-gap", type=float, nargs=2, default=[4.0, 12.0], metavar=("LO", "HI"))
    ap.add_argument("--no-faults", dest="faults", action="store_false")
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--workdir", help="where the database and logs go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = ap.parse_args(argv)
    if opts.seed is None:
        opts.seed = random.randrange(10**6)
    return opts


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child_entry(argv[1], json.loads(argv[2]))
        return 0
    opts = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a shell without job control starts background jobs with
    # SIGINT ignored, and Python keeps that.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # started with nohup: keep running
        signal.signal(sig, on_term)
    soak = Soak(opts)
    print(f"soak: work directory {soak.workdir}, seed {opts.seed}", flush=True)
    try:
        result = soak.run()
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc}); stopping every child process", flush=True)
        return 130
    finally:
        soak.cleanup()
    ok = bool(result["checks"]["ok"])
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(opts.out or HERE.parent / "results" / f"soak-{stamp}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    width = max(len(k) for k, _ in summary_rows(result))
    print()
    for key, value in summary_rows(result):
        print(f"  {key:<{width}}  {value}")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    if ok and not opts.keep and not opts.workdir:
        import shutil

        shutil.rmtree(soak.workdir, ignore_errors=True)
    else:
        print(f"work directory kept: {soak.workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
