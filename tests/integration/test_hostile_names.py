"""Hostile names and types: stored and returned exactly, schema unchanged, logs escaped.

Every string a caller passes (name, task_type, unique_key, payload keys and
values, worker_id, error text, results) goes to SQLite through placeholders
only, so SQL fragments are just text. A Worker that runs such tasks writes
log lines without raw control characters, so a task cannot forge log lines.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from support import check_invariants, wait_until

from task_queue import HandlerRegistry, TaskQueue, TaskStatus, Worker

HOSTILE = [
    "'); DROP TABLE tasks;--",
    '"; DELETE FROM tasks; --',
    "x' OR '1'='1",
    "Robert'); UPDATE tasks SET status='completed' WHERE ('1'='1",
    "pending' OR status IS NOT NULL --",
    "*/ ATTACH DATABASE '/tmp/evil.db' AS evil; /*",
    "line one\nline two\r\nFAKE LOG LINE: task 1 completed",
    "tab\tescape\x1b[31mred\x1b[0m bell\x07 backspace\x08",
    "nul\x00byte",
    "\x00",
    "%s %d %(name)s {0} {name} %n",
    "\u202eright-to-left override\u2028line separator\u0085next line",
    "😀 emoji and 𝕦𝕟𝕚𝕔𝕠𝕕𝕖",
    "x" * 10_240,
    ("'); DROP TABLE tasks;--\n" * 500)[:10_240],
    " ",
]
IDS = [f"h{i}" for i in range(len(HOSTILE))]

# Control characters (C0, DEL, C1) and Unicode line/paragraph separators.
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

pytestmark = pytest.mark.sqlite_only(
    "reads sqlite_master; on PostgreSQL a NUL in a name or key is refused (README)"
)


def schema(db_path: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()


def type_for(text: str) -> str:
    """NUL is refused in task types (see below); everywhere else it is kept."""
    return text.replace("\x00", "<NUL>")


def snapshot(db_path: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.fixture
def q(db_path: str) -> Iterator[TaskQueue]:
    queue = TaskQueue(db_path)
    yield queue
    queue.close()


@pytest.mark.parametrize("text", HOSTILE, ids=IDS)
def test_hostile_strings_are_stored_and_returned_exactly(
    q: TaskQueue, db_path: str, text: str
) -> None:
    before = schema(db_path)
    payload = {text: text, "list": [text, {"nested " + text: text}]}
    kind = type_for(text)
    task_id = q.enqueue(text, kind, payload, unique_key=text)
    assert q.enqueue("again", kind, unique_key=text) == task_id  # the key matches exactly
    other = q.enqueue("other", "t", unique_key=text + "!")
    assert other != task_id

    task = q.get_task(task_id)
    assert task is not None
    assert (task.name, task.task_type, task.unique_key) == (text, kind, text)
    assert task.payload == payload

    # Claiming by that exact type takes it and nothing else.
    claimed = q.dequeue(worker_id=text, task_types=[kind])
    assert claimed is not None and claimed.id == task_id and claimed.worker_id == text
    assert q.dequeue(task_types=[kind]) is None
    assert q.complete_task(claimed, {"echo": text})
    done = q.get_task(task_id)
    assert done is not None and done.result == {"echo": text}

    fresh = q.dequeue(task_types=["t"])
    assert fresh is not None and q.fail_task(fresh, text, max_retries=0)
    failed = q.get_task(other)
    assert failed is not None and failed.error_message == text

    assert schema(db_path) == before
    check_invariants(db_path, [task_id, other], statuses=("completed", "failed"))
    assert q.get_queue_stats() == {
        "pending": 0,
        "running": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
        "waiting": 0,  # the status of tasks waiting for others (issue 10)
    }


def test_hostile_strings_in_one_batch(q: TaskQueue, db_path: str) -> None:
    before = schema(db_path)
    ids = q.enqueue_many(
        [{"name": t, "task_type": type_for(t), "payload": [t], "unique_key": t} for t in HOSTILE]
    )
    assert len(set(ids)) == len(HOSTILE)
    for text, task_id in zip(HOSTILE, ids, strict=True):
        task = q.get_task(task_id)
        assert task is not None
        assert (task.name, task.task_type, task.payload) == (text, type_for(text), [text])
    assert schema(db_path) == before
    assert q.pending_by_type() == dict(Counter(type_for(t) for t in HOSTILE))


@pytest.mark.parametrize("kind", ["\x00", "\x00abc", "type\x00suffix"])
def test_nul_in_a_task_type_is_refused(q: TaskQueue, db_path: str, kind: str) -> None:
    """Regression: a task_type starting with NUL leaked sqlite3.IntegrityError
    (SQLite's length() stops at NUL), and one with NUL inside was stored but
    could never be claimed by type (SQLite's json_each cuts strings at NUL),
    or was claimed by a worker of the type before the NUL."""
    q.enqueue("a", "ok")
    before = snapshot(db_path)
    with pytest.raises(ValueError, match="NUL"):
        q.enqueue("a", kind)
    with pytest.raises(ValueError, match="NUL"):
        q.enqueue_many([{"name": "a", "task_type": "ok"}, {"name": "b", "task_type": kind}])
    with pytest.raises(ValueError, match="NUL"):
        HandlerRegistry()[kind] = print
    # A type filter with NUL must not claim the type before the NUL.
    q.enqueue("prefix", kind.split("\x00")[0] or "ok")
    before = snapshot(db_path)
    with pytest.raises(ValueError, match="NUL"):
        q.dequeue(task_types=[kind])
    assert snapshot(db_path) == before


@pytest.mark.parametrize("bad", ["pending' OR '1'='1", "pending; DROP TABLE tasks", "\x00"])
def test_hostile_status_names_are_refused_not_interpolated(
    q: TaskQueue, db_path: str, bad: str
) -> None:
    q.enqueue("a", "t")
    before = schema(db_path)
    with pytest.raises(ValueError, match="unknown status"):
        q.get_tasks_by_status(bad)
    with pytest.raises(ValueError, match="unknown priority"):
        q.enqueue("a", "t", priority=bad)  # type: ignore[arg-type]
    assert schema(db_path) == before


def test_worker_logs_hostile_tasks_escaped(db_path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="task_queue")
    q = TaskQueue(db_path)
    before = schema(db_path)
    ok_type, bad_type = HOSTILE[6], HOSTILE[7]  # newlines / escape sequences

    def echo(payload: Any) -> Any:
        return payload

    def explode(payload: Any) -> Any:
        raise ValueError(f"bad input {payload['text']}\nForged: task 0 completed")

    ids = [q.enqueue(t, ok_type, {"text": t}) for t in HOSTILE]
    ids += [q.enqueue(t, bad_type, {"text": t}, max_retries=0) for t in HOSTILE]
    # A type no worker handles: reported (with its name) while the worker idles.
    q.enqueue("orphan", HOSTILE[0], None)
    worker = Worker(q, {ok_type: echo, bad_type: explode}, concurrency=2, idle_report_interval=0.05)
    worker.start()
    try:
        wait_until(
            lambda: q.get_queue_stats()["completed"] + q.get_queue_stats()["failed"] == len(ids)
        )
        wait_until(lambda: any("handlers" in r.getMessage() for r in caplog.records))
    finally:
        worker.stop(10)
        q.close()

    rows = check_invariants(db_path, ids, statuses=("completed", "failed"))
    for task_id in ids[: len(HOSTILE)]:
        assert rows[task_id]["status"] == TaskStatus.COMPLETED
    for task_id, text in zip(ids[len(HOSTILE) :], HOSTILE, strict=True):
        assert rows[task_id]["status"] == TaskStatus.FAILED
        assert text in rows[task_id]["error_message"]  # stored whole, unescaped
    assert schema(db_path) == before

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("task_queue")]
    assert any("failed" in m for m in messages)
    raw = [m for m in messages if RAW_CONTROL.search(m)]
    assert not raw, f"log lines with raw control characters: {raw[:3]!r}"
    assert not any("Forged: task 0" in m and "\n" in m for m in messages)
