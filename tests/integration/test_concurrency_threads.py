"""Threads racing dequeue(): every task claimed exactly once."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from support import rawdb

from task_queue import Task, TaskQueue


def race(claimers: list[Callable[[], Task | None]], start: threading.Barrier) -> list[list[int]]:
    """Run one thread per claimer, all released at once; each drains until None."""
    claimed: list[list[int]] = [[] for _ in claimers]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=30)
            while (task := claimers[index]()) is not None:
                claimed[index].append(task.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(claimers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a claimer thread hung"
    assert errors == []
    return claimed


def assert_each_claimed_once(db_path: str, ids: list[int], claimed: list[list[int]]) -> None:
    every = [task_id for per_thread in claimed for task_id in per_thread]
    duplicates = [i for i, n in collections.Counter(every).items() if n > 1]
    assert duplicates == []
    assert sorted(every) == sorted(ids)
    with rawdb.connect(db_path) as conn:
        rows = conn.rows("SELECT status, attempts, count(*) FROM tasks GROUP BY 1, 2")
    assert rows == [("running", 1, len(ids))]


def test_8_threads_racing_dequeue_claim_4000_tasks_once_each(db_path: str) -> None:
    with TaskQueue(db_path) as q:
        ids = q.enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(4000)])
        start = threading.Barrier(8)
        claimed = race([q.dequeue] * 8, start)
        assert_each_claimed_once(db_path, ids, claimed)
        assert q.get_queue_stats()["running"] == 4000
        # Several threads got work: it really was a race.
        assert sum(1 for c in claimed if c) > 1


def test_threads_on_separate_queue_objects_claim_once_each(db_path: str) -> None:
    # Four TaskQueue objects: four connections contending for the write
    # lock on one file, as separate processes would.
    queues = [TaskQueue(db_path) for _ in range(4)]
    try:
        ids = queues[0].enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(1000)])
        claimers = [q.dequeue for q in queues for _ in range(2)]
        claimed = race(claimers, threading.Barrier(len(claimers)))
        assert_each_claimed_once(db_path, ids, claimed)
    finally:
        for q in queues:
            q.close()


def test_concurrent_enqueue_and_complete(db_path: str) -> None:
    # Producers and consumers at once: every task enqueued is completed once.
    total_per_producer = 250
    with TaskQueue(db_path) as q:
        produced: list[list[int]] = [[], []]
        completed: list[int] = []
        lock = threading.Lock()
        producers_done = threading.Event()
        start = threading.Barrier(6)

        def produce(index: int) -> None:
            start.wait(30)
            for i in range(total_per_producer):
                produced[index].append(q.enqueue(f"p{index}-{i}", "t", {"i": i}))

        def consume() -> None:
            start.wait(30)
            while True:
                task = q.dequeue()
                if task is None:
                    if producers_done.is_set() and q.get_queue_stats()["pending"] == 0:
                        return
                    producers_done.wait(0.001)  # poll interval while producers catch up
                    continue
                assert q.complete_task(task["id"], task["payload"]["i"])
                with lock:
                    completed.append(task.id)

        producers = [threading.Thread(target=produce, args=(i,)) for i in range(2)]
        consumers = [threading.Thread(target=consume) for _ in range(4)]
        for thread in producers + consumers:
            thread.start()
        for thread in producers:
            thread.join(60)
        producers_done.set()
        for thread in consumers:
            thread.join(60)
        assert not any(t.is_alive() for t in producers + consumers)
        every = produced[0] + produced[1]
        assert len(every) == 2 * total_per_producer
        assert sorted(completed) == sorted(every)
        assert q.get_queue_stats()["completed"] == 2 * total_per_producer
