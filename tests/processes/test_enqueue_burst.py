"""SIGKILL during an enqueue burst, producers retrying with unique keys
(issue 3, section 5).

Producer processes, two threads each (their writes share group commits),
enqueue numbered single tasks and batches (enqueue_many), each with unique
keys, and record every acknowledgement durably once enqueue returned. They
are killed at random moments and restarted; a restarted producer retries the
first item it has no acknowledgement for, which may or may not have been
committed before the kill. The test hands each process its work a few items at
a time (a budget file), the one it is about to kill with room to spare, so the
others cannot finish before the kills are made however the machine's load
falls; once they are, every process gets the rest. Then: no
acknowledged task is lost, no unique key has two rows, and a batch is never
seen partly written (checked after every kill, not only at the end, since a
retry would fill a half-written batch up and hide it).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from support import Procs, check_invariants, rawdb, wait_until

from task_queue import TaskQueue

pytestmark = pytest.mark.slow

PROCESSES = 3
THREADS = 2  # producer threads per process, each with its own series ("slot")
SLOTS = PROCESSES * THREADS
ITEMS = 200  # per slot; every third item is a batch
BATCH = 5
MIN_KILLS = 10
# Items per slot a process may run ahead: the victim is still enqueueing, not
# waiting for budget, when it is killed. A grant is at most HEADROOM past the
# last one (no slot can be beyond its budget), so MIN_KILLS kills leave every
# process short of ITEMS: (MIN_KILLS + 1) * HEADROOM < ITEMS.
HEADROOM = 12


def read_acks(ack_dir: Path, slot: int) -> tuple[dict[int, list[int]], bool]:
    path = ack_dir / f"acks-{slot}"
    acks: dict[int, list[int]] = {}
    done = False
    if not path.exists():
        return acks, done
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue  # cut short by a kill: not acknowledged
        fields = line.split()
        if fields[0] == "A":
            index, ids = int(fields[1]), [int(x) for x in fields[2].split(",")]
            assert index not in acks, f"slot {slot}: item {index} acknowledged twice"
            acks[index] = ids
        elif fields[0] == "D":
            done = True
    return acks, done


def expected_keys(slot: int, index: int) -> list[str]:
    if index % 3 == 2:
        return [f"s{slot}-i{index}-j{j}" for j in range(BATCH)]
    return [f"s{slot}-i{index}"]


def assert_batches_whole(db_path: str) -> set[str]:
    """No key has two rows and no batch is partly visible; returns the keys."""
    with rawdb.connect(db_path) as conn:
        keys = [k for (k,) in conn.rows("SELECT unique_key FROM tasks")]
    per_key = Counter(keys)
    dups = {k: n for k, n in per_key.items() if n > 1}
    assert not dups, f"duplicate rows for unique keys: {dups}"
    batches = Counter(k.rsplit("-j", 1)[0] for k in keys if "-j" in k)
    partial = {b: n for b, n in batches.items() if n != BATCH}
    assert not partial, f"batches partly written: {partial}"
    return set(keys)


def test_sigkill_during_enqueue_burst(procs: Procs, tmp_path: Path, db_path: str) -> None:
    assert (MIN_KILLS + 1) * HEADROOM < ITEMS
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 2**32))
    print(f"FAULT_SEED={seed}")
    rng = random.Random(seed)
    TaskQueue(db_path).close()  # the file exists before the burst
    ack_dir = tmp_path / "acks"
    ack_dir.mkdir()

    def budget_file(proc: int) -> Path:
        return ack_dir / f"budget-{proc}"

    def grant(proc: int, items: int) -> None:
        tmp = budget_file(proc).with_suffix(".tmp")
        tmp.write_text(str(min(items, ITEMS)))
        tmp.replace(budget_file(proc))  # readers see the old number or the new one

    def start(proc: int) -> subprocess.Popen[bytes]:
        slots = [proc * THREADS + t for t in range(THREADS)]
        return procs.start(
            "producer",
            db=db_path,
            ack_dir=str(ack_dir),
            slots=slots,
            count=ITEMS,
            batch=BATCH,
            budget_file=str(budget_file(proc)),
        )

    def slots_of(proc: int) -> range:
        return range(proc * THREADS, (proc + 1) * THREADS)

    def acked_count(proc: int) -> int:
        return sum(len(read_acks(ack_dir, s)[0]) for s in slots_of(proc))

    def finished(proc: int) -> bool:
        return all(read_acks(ack_dir, s)[1] for s in slots_of(proc))

    def next_items(proc: int) -> int:
        return max(max(read_acks(ack_dir, s)[0], default=-1) + 1 for s in slots_of(proc))

    for n in range(PROCESSES):
        grant(n, HEADROOM)
    live = {n: start(n) for n in range(PROCESSES)}
    kills = ambiguous = 0
    while kills < MIN_KILLS:
        running = [p for p in live if not finished(p)]
        assert running, f"every producer finished after {kills} kills"
        crashed = [p for p in running if live[p].poll() is not None]
        assert not crashed, procs.dump()
        victim = rng.choice(running)
        before = acked_count(victim)
        step = rng.randint(1, 5)
        grant(victim, next_items(victim) + HEADROOM)

        def progressed(victim: int = victim, before: int = before, step: int = step) -> bool:
            return finished(victim) or acked_count(victim) >= before + step

        wait_until(progressed, timeout=60, interval=0.002)
        if finished(victim):
            continue  # finished before we could kill it
        procs.kill(live[victim])
        kills += 1
        keys = assert_batches_whole(db_path)  # at the moment of the kill
        # Committed but never acknowledged: the retry must find it, not add it.
        for slot in slots_of(victim):
            acks = read_acks(ack_dir, slot)[0]
            unacked = max(acks, default=-1) + 1
            if unacked < ITEMS and expected_keys(slot, unacked)[0] in keys:
                ambiguous += 1
        live[victim] = start(victim)

    for n in range(PROCESSES):
        grant(n, ITEMS)
    for proc in live.values():
        assert proc.wait(timeout=60) == 0, procs.output(proc)

    acked: list[int] = []
    for slot in range(SLOTS):
        acks, done = read_acks(ack_dir, slot)
        assert done and sorted(acks) == list(range(ITEMS)), f"slot {slot} incomplete"
        for ids in acks.values():
            acked.extend(ids)
    rows = check_invariants(db_path, acked, statuses=("pending",), procs=procs.started)
    total = len(assert_batches_whole(db_path))
    per_slot = ITEMS // 3 * BATCH + (ITEMS - ITEMS // 3)
    assert total == len(rows) == SLOTS * per_slot
    assert len(set(acked)) == len(acked) == total
    # Each acknowledgement names the rows of exactly the keys it was for.
    for slot in range(SLOTS):
        for index, ids in read_acks(ack_dir, slot)[0].items():
            assert [rows[i]["unique_key"] for i in ids] == expected_keys(slot, index)
    assert kills >= MIN_KILLS
    print(
        f"{kills} kills ({ambiguous} enqueues committed but never acknowledged, retried), "
        f"{total} tasks, {len(procs.started)} producer processes"
    )
