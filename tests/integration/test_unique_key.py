"""Idempotent enqueue (issue 3, section 3): ``enqueue(..., unique_key=...)``.

While a task with the key is pending (due or scheduled) or running, enqueue
returns that task's id and adds nothing; once it is completed, failed or
cancelled the key is free again. The database enforces it (a partial unique
index), so it holds across TaskQueue objects and across processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import rawdb

from task_queue import DuplicateTaskError, ManualClock, TaskQueue, TaskStatus


def rows_with_key(db_path: str, key: str) -> list[tuple[int, str]]:
    with rawdb.connect(db_path) as conn:
        return conn.rows("SELECT id, status FROM tasks WHERE unique_key = ? ORDER BY id", (key,))


def total_rows(db_path: str) -> int:
    with rawdb.connect(db_path) as conn:
        return int(conn.rows("SELECT count(*) FROM tasks")[0][0])


# -- while live: the existing id -----------------------------------------------------------


def test_pending_due_task_holds_its_key(queue: TaskQueue, db_path: str) -> None:
    first = queue.enqueue("first", "t", {"n": 1}, unique_key="k")
    again = queue.enqueue("second", "t", {"n": 2}, unique_key="k")
    assert again == first
    assert rows_with_key(db_path, "k") == [(first, "pending")]
    # Nothing of the second call was stored: the first task is as it was.
    task = queue.get_task(first)
    assert task is not None and task.name == "first" and task.payload == {"n": 1}


def test_scheduled_pending_task_holds_its_key(
    clocked_queue: TaskQueue, clock: ManualClock, db_path: str
) -> None:
    first = clocked_queue.enqueue("later", "t", delay=3600, unique_key="k")
    assert clocked_queue.enqueue("now", "t", unique_key="k") == first
    clock.advance(7200)
    assert clocked_queue.enqueue("now", "t", unique_key="k") == first
    assert rows_with_key(db_path, "k") == [(first, "pending")]


def test_running_task_holds_its_key(queue: TaskQueue, db_path: str) -> None:
    first = queue.enqueue("a", "t", unique_key="k")
    task = queue.dequeue()
    assert task is not None and task.id == first
    assert queue.enqueue("b", "t", unique_key="k") == first
    assert rows_with_key(db_path, "k") == [(first, "running")]


# -- once finished: a new task --------------------------------------------------------------


def _finish(queue: TaskQueue, task_id: int, how: str) -> None:
    if how == "cancelled":
        assert queue.cancel_task(task_id)
        return
    task = queue.dequeue()
    assert task is not None and task.id == task_id
    if how == "completed":
        assert queue.complete_task(task, "done")
    else:
        assert queue.fail_task(task, "boom", max_retries=0)


@pytest.mark.parametrize("how", ["completed", "failed", "cancelled"])
def test_finished_task_frees_its_key(queue: TaskQueue, db_path: str, how: str) -> None:
    first = queue.enqueue("a", "t", unique_key="k")
    _finish(queue, first, how)
    second = queue.enqueue("b", "t", unique_key="k")
    assert second != first
    assert rows_with_key(db_path, "k") == [(first, how), (second, "pending")]
    # ...and the new one holds the key in turn.
    assert queue.enqueue("c", "t", unique_key="k") == second


def test_a_task_waiting_for_a_retry_still_holds_its_key(queue: TaskQueue, db_path: str) -> None:
    first = queue.enqueue("a", "t", max_retries=2, unique_key="k")
    task = queue.dequeue()
    assert task is not None
    assert queue.fail_task(task, "transient")  # back to pending, after a backoff
    assert queue.get_task(first).status == TaskStatus.PENDING  # type: ignore[union-attr]
    assert queue.enqueue("b", "t", unique_key="k") == first
    assert rows_with_key(db_path, "k") == [(first, "pending")]


def test_keys_are_independent_and_none_never_dedupes(queue: TaskQueue, db_path: str) -> None:
    a = queue.enqueue("a", "t", unique_key="a")
    b = queue.enqueue("b", "t", unique_key="b")
    assert a != b
    plain = {queue.enqueue("x", "t") for _ in range(3)}
    assert len(plain) == 3
    assert total_rows(db_path) == 5


@pytest.mark.parametrize("bad", ["", 0, 1.5, b"k", ["k"]])
def test_unique_key_must_be_a_non_empty_string(queue: TaskQueue, db_path: str, bad: object) -> None:
    with pytest.raises(ValueError, match="unique_key"):
        queue.enqueue("a", "t", unique_key=bad)  # type: ignore[arg-type]
    assert total_rows(db_path) == 0


# -- across TaskQueue objects and processes -------------------------------------------------


def test_two_taskqueue_objects_share_the_key(queue: TaskQueue, db_path: str) -> None:
    other = TaskQueue(db_path)
    try:
        first = queue.enqueue("a", "t", unique_key="k")
        assert other.enqueue("b", "t", unique_key="k") == first
        task = other.dequeue()
        assert task is not None and task.id == first
        assert queue.enqueue("c", "t", unique_key="k") == first
        assert other.complete_task(task)
        fresh = queue.enqueue("d", "t", unique_key="k")
        assert fresh != first
        assert other.enqueue("e", "t", unique_key="k") == fresh
    finally:
        other.close()


_RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from task_queue import TaskQueue

    db, go, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    q = TaskQueue(db)
    deadline = time.monotonic() + 30
    while not os.path.exists(go):  # start together
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.001)
    ids = {key: q.enqueue("race " + str(os.getpid()), "t", unique_key=key) for key in keys}
    batch = q.enqueue_many(
        [{"name": "batch", "task_type": "t", "unique_key": "batch-" + k} for k in keys]
    )
    q.close()
    print(json.dumps({"ids": ids, "batch": batch}))
    """
)


def test_processes_racing_the_same_keys_get_the_same_ids(tmp_path: Path, db_path: str) -> None:
    TaskQueue(db_path).close()  # schema in place, so the race is about the keys
    go = tmp_path / "go"
    keys = [f"key-{i}" for i in range(25)]

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, db_path, str(go), json.dumps(keys)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        go.touch()  # the processes poll for it, then all enqueue at once
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    for key in keys:
        ids = {r["ids"][key] for r in results}
        assert len(ids) == 1, (key, ids)
        assert rows_with_key(db_path, key) == [(ids.pop(), "pending")]
    batches = {tuple(r["batch"]) for r in results}
    assert len(batches) == 1
    assert total_rows(db_path) == 2 * len(keys)


# -- retry_task and enqueue_many -------------------------------------------------------------


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_retry_task_whose_key_is_live_again_raises(
    queue: TaskQueue, db_path: str, how: str
) -> None:
    first = queue.enqueue("a", "t", unique_key="k")
    _finish(queue, first, how)
    second = queue.enqueue("b", "t", unique_key="k")
    with pytest.raises(DuplicateTaskError, match="unique_key"):
        queue.retry_task(first)
    # Nothing changed: the old task stays finished, the live one pending.
    assert rows_with_key(db_path, "k") == [(first, how), (second, "pending")]
    # Once the live one is done, the old one can be retried.
    assert queue.cancel_task(second)
    assert queue.retry_task(first)
    assert rows_with_key(db_path, "k") == [(first, "pending"), (second, "cancelled")]


def test_enqueue_many_with_duplicate_keys_in_one_batch(queue: TaskQueue, db_path: str) -> None:
    ids = queue.enqueue_many(
        [
            {"name": "a1", "task_type": "t", "unique_key": "a", "payload": 1},
            {"name": "plain", "task_type": "t"},
            {"name": "a2", "task_type": "t", "unique_key": "a", "payload": 2},
            {"name": "b", "task_type": "t", "unique_key": "b"},
            {"name": "a3", "task_type": "t", "unique_key": "a", "payload": 3},
        ]
    )
    assert len(ids) == 5
    assert ids[0] == ids[2] == ids[4]
    assert len({ids[0], ids[1], ids[3]}) == 3
    assert total_rows(db_path) == 3
    first = queue.get_task(ids[0])
    assert first is not None and first.name == "a1" and first.payload == 1


def test_enqueue_many_returns_the_live_task_for_an_existing_key(
    queue: TaskQueue, db_path: str
) -> None:
    live = queue.enqueue("live", "t", unique_key="k")
    ids = queue.enqueue_many(
        [{"name": "x", "task_type": "t", "unique_key": "k"}, {"name": "y", "task_type": "t"}]
    )
    assert ids[0] == live and ids[1] != live
    assert total_rows(db_path) == 2


def test_enqueue_many_with_a_bad_item_adds_nothing_and_keeps_keys_free(
    queue: TaskQueue, db_path: str
) -> None:
    with pytest.raises(ValueError):
        queue.enqueue_many(
            [
                {"name": "a", "task_type": "t", "unique_key": "k"},
                {"name": "b", "task_type": "t", "max_retries": -1},
            ]
        )
    assert total_rows(db_path) == 0
    first = queue.enqueue("a", "t", unique_key="k")
    assert rows_with_key(db_path, "k") == [(first, "pending")]


def test_the_database_enforces_the_key_not_just_the_library(queue: TaskQueue, db_path: str) -> None:
    first = queue.enqueue("a", "t", unique_key="k")
    conn = rawdb.connect(db_path)
    try:
        with pytest.raises(rawdb.integrity_errors()):
            conn.execute(
                "INSERT INTO tasks (name, task_type, priority, status, created_at, max_retries,"
                " run_at, unique_key) VALUES ('raw', 't', 2, 'pending', 0, 0, 0, 'k')"
            )
    finally:
        conn.close()
    assert rows_with_key(db_path, "k") == [(first, "pending")]
