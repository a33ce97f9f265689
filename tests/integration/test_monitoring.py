"""What monitoring reads: workers seen, throughput per minute, the oldest
due task (issue 11: the dashboard and the gauges)."""

from __future__ import annotations

from support import wait_until

from task_queue import ManualClock, TaskQueue, Worker


def test_workers_report_themselves_while_they_run_and_when_they_stop(db_path: str) -> None:
    with TaskQueue(db_path) as queue:
        with Worker(queue, {"t": lambda p: None}, concurrency=3, queues=["a", "b"], name="w1"):
            [info] = queue.workers()
            assert info.name == "w1" and info.concurrency == 3 and info.queues == "a,b"
            assert info.stopped_at is None and info.pid > 0
        [info] = queue.workers()
        assert info.stopped_at is not None


def test_throughput_counts_finished_tasks_per_bucket(db_path: str) -> None:
    clock = ManualClock(1_800_000_000.0)
    with TaskQueue(db_path, clock=clock) as queue:
        for minute in range(3):
            for _ in range(minute + 1):
                queue.enqueue("t", "t", max_retries=0)
                task = queue.dequeue()
                assert task is not None
                if minute == 2:
                    queue.fail_task(task, "boom")
                else:
                    queue.complete_task(task, None)
            clock.advance(60)
        buckets = queue.throughput(since=240, bucket=60)
    assert [(done, failed) for _, done, failed in buckets][-4:] == [(1, 0), (2, 0), (0, 3), (0, 0)]
    assert all(b[0] % 60 == 0 for b in buckets)


def test_oldest_due_says_how_far_behind_the_workers_are(db_path: str) -> None:
    clock = ManualClock(1_800_000_000.0)
    with TaskQueue(db_path, clock=clock) as queue:
        assert queue.oldest_due() is None
        queue.enqueue("a", "t")
        clock.advance(30)
        queue.enqueue("b", "t")
        queue.enqueue("later", "t", delay=3600)
        assert clock.time() - queue.oldest_due() == 30  # type: ignore[operator]
        with Worker(queue, {"t": lambda p: None}):
            wait_until(lambda: queue.oldest_due() is None)
