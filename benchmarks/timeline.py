"""Where the time of a drain (B4) and of one task's start (B5) goes, as timelines.

    .venv/bin/python benchmarks/timeline.py [B4|B5 ...] [--sync FULL|NORMAL] [--n 20000]

Instrumentation only (it wraps a few internal methods to stamp when they
start and end, in this process): what the profilers cannot show, because
the cost is in who waits for whom, not in any one function.

B4 prints, for a drain of ``--n`` no-op tasks by a Worker with 4 threads:
each storage transaction (its units), each claim of the dispatcher (from
its call to the tasks being in the buffer; how many), each dispatcher step
and each wake-up of the dispatcher by an executor, with the executors'
buffer (tasks buffered, running) as the step began or the wake-up came;
and how busy the storage thread was. B5 prints, for 40 tasks enqueued
one at a time into an idle Worker, when each stage happened after the
``enqueue()`` call began, and the median latency to the handler's start.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scenarios as S

from task_queue import TaskQueue, Worker
from task_queue.storage.sqlite.engine import Engine, Request
from task_queue.worker.dispatcher import Dispatcher
from task_queue.worker.ledger import THREADS, InFlight

now = time.perf_counter
#: (kind, start, end, detail)
EVENTS: list[tuple[str, float, float, Any]] = []


def stamp(
    cls: type, name: str, kind: str, detail: Callable[..., Any], *, before: bool = False
) -> None:
    """Record every call of ``cls.name`` as an event of ``kind``; its detail
    is taken when the call returns (``before``: when it starts)."""
    original = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = now()
        early = detail(self, args, None) if before else None
        result = original(self, *args, **kwargs)
        late = early if before else detail(self, args, result)
        EVENTS.append((kind, start, now(), late))
        return result

    setattr(cls, name, wrapper)


def units(batch: list[Request]) -> list[str]:
    names = []
    for request in batch:
        name = getattr(request.fn, "__name__", "?")
        if request.args and isinstance(request.args[0], str):
            name += ":" + request.args[0]  # a named read
        names.append(name)
    return names


def buffer_of(dispatcher: Dispatcher) -> tuple[int, int]:
    ledger = dispatcher._ledger
    return ledger.buffered_in(THREADS), ledger.running_in(THREADS)


def instrument() -> None:
    stamp(Engine, "_run_batch", "tx", lambda self, args, result: units(args[1]))
    stamp(Dispatcher, "_claim_lane", "claim", lambda self, args, result: result)
    stamp(Dispatcher, "_step", "step", lambda self, args, result: buffer_of(self), before=True)
    stamp(InFlight, "offer", "offer", lambda self, args, result: len(args[0]))
    original_room = Dispatcher.room

    def room(self: Dispatcher) -> None:
        was_set = self._wake.is_set()
        original_room(self)
        if not was_set and self._wake.is_set():
            EVENTS.append(("wake", now(), now(), buffer_of(self)))

    Dispatcher.room = room  # type: ignore[method-assign]


def drain(sync: str, n: int) -> None:
    path = os.path.join(tempfile.mkdtemp(), "timeline.db")
    S.preload_ours(path, sync, n)
    queue = S.open_ours(path, sync)
    completed = S.completed_counter(path)
    worker = Worker(queue, {S.NOOP: lambda payload: None}, concurrency=4)
    del EVENTS[:]
    t0 = now()
    worker.start()
    S.wait_for(lambda: completed() >= n, timeout=600, interval=0.005)
    elapsed = now() - t0
    worker.stop()
    queue.close()
    events = sorted((e for e in EVENTS if e[1] >= t0), key=lambda e: e[1])
    txs = [e for e in events if e[0] == "tx"]
    busy = sum(e[2] - e[1] for e in txs)
    print(f"B4 {sync}: {n:,} tasks in {elapsed:.3f}s = {n / elapsed:,.0f}/s")
    print(f"storage thread: {len(txs)} transactions, busy {busy:.3f}s ({busy / elapsed:.0%})")
    print("transactions by units:", dict(Counter(tuple(sorted(set(e[3]))) for e in txs)))
    print("\n  event   start ms ->   end ms  (   ms)  detail")
    middle = len(events) // 3  # steady state, past the start-up
    for kind, start, end, detail in events[middle : middle + 50]:
        at, until, took = 1000 * (start - t0), 1000 * (end - t0), 1000 * (end - start)
        print(f"  {kind:6s} {at:8.2f} -> {until:8.2f}  ({took:5.2f})  {detail}")


def latency(sync: str, samples: int = 40) -> None:
    queue = TaskQueue(os.path.join(tempfile.mkdtemp(), "timeline.db"), synchronous=sync)
    started = threading.Event()

    def handler(payload: Any) -> None:
        EVENTS.append(("handler", now(), now(), None))
        started.set()

    worker = Worker(queue, {"noop": handler}, concurrency=4).start()
    time.sleep(0.3)  # idle, as in B5
    waits, rows = [], []
    for _ in range(samples):
        started.clear()
        del EVENTS[:]
        t0 = now()
        queue.enqueue(name="lat", task_type="noop")
        done = now()
        if not started.wait(10):
            raise TimeoutError("the handler did not start")
        events = sorted(EVENTS, key=lambda e: e[1])
        waits.append(next(e[1] for e in events if e[0] == "handler") - t0)
        row = [("enqueue returned", done - t0)]
        for kind, start, end, _ in events:
            row.append((f"{kind}>", start - t0))
            if end > start:
                row.append((f"{kind}<", end - t0))
        rows.append(row)
        time.sleep(random.uniform(0.06, 0.12))
    worker.stop()
    queue.close()
    print(f"\nB5 {sync}: enqueue -> handler start, p50 {1000 * statistics.median(waits):.2f} ms")
    print("ms after enqueue() began (tx = a storage transaction, > start, < end):")
    for row in rows[-5:]:
        print("  " + "  ".join(f"{name} {1000 * at:.2f}" for name, at in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=["B4", "B5"])
    parser.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    instrument()
    for scenario in args.scenarios:
        if scenario == "B4":
            drain(args.sync, args.n)
        elif scenario == "B5":
            latency(args.sync)
        else:
            parser.error(f"unknown scenario {scenario!r} (B4 or B5)")


if __name__ == "__main__":
    main()
