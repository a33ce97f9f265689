"""The ``task-queue`` command, run for real: ``python -m task_queue`` in a
subprocess, in a temporary directory, against real queue files.

Every command's output (human and ``--json``), the worker (``--burst``,
SIGTERM mid-task, a second signal), and every error with its exit status,
checking that an error created or changed nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_until

from task_queue import TaskQueue, TaskStatus
from task_queue.cli.format import width

CHECKOUT = Path(__file__).resolve().parents[2]

TASKS_MODULE = '''
"""Handlers for the command's tests (imported by `task-queue worker cli_tasks`)."""
import os
from pathlib import Path

from task_queue import HandlerRegistry, RetryPolicy, current_task, handler

MARKERS = Path(os.environ.get("CLI_TEST_MARKERS", "."))


@handler("echo")
def echo(payload):
    return payload


@handler("boom", max_retries=0)
def boom(payload):
    raise ValueError(payload or "boom")


@handler("flaky", retry_policy=RetryPolicy(base=0.01, cap=0.02))
def flaky(payload):
    if current_task().task.attempts == 1:
        raise ConnectionError("the first attempt fails")
    return "ok"


@handler("slow")
def slow(payload):
    ctx = current_task()
    (MARKERS / f"started-{ctx.task.id}").write_text("")
    return {"cancelled": ctx.wait(payload["seconds"])}


other = HandlerRegistry()


@other.handler("other_echo")
def other_echo(payload):
    return payload


clashing = HandlerRegistry()
clashing["echo"] = lambda payload: "not the same echo"

not_a_registry = {"echo": echo}

aio = HandlerRegistry()
_running = [0, 0]  # now, most at once


@aio.handler("nap")
async def nap(payload):
    import asyncio

    _running[0] += 1
    _running[1] = max(_running)
    await asyncio.sleep(0.05)
    _running[0] -= 1
    (MARKERS / "most-at-once").write_text(str(_running[1]))
'''


class Cli:
    """Runs the command in ``cwd`` with ``TASK_QUEUE_DB`` unset unless given."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.db = cwd / "queue.db"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "TASK_QUEUE_DB"}
        path = os.pathsep.join(p for p in (str(CHECKOUT), env.get("PYTHONPATH")) if p)
        env.update(PYTHONPATH=path, PYTHONIOENCODING="utf-8", CLI_TEST_MARKERS=str(self.cwd))
        env.update(extra)
        return env

    def argv(self, args: tuple[str, ...], db: bool) -> list[str]:
        return [sys.executable, "-m", "task_queue", *(["--db", str(self.db)] if db else []), *args]

    def __call__(
        self, *args: str, db: bool = True, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``task-queue [--db queue.db] ARGS``; stdout and stderr captured."""
        return subprocess.run(
            self.argv(args, db), capture_output=True, text=True, encoding="utf-8",
            timeout=timeout, cwd=self.cwd, env=self.env(**env), stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def ok(self, *args: str, **kwargs: Any) -> str:
        """Run it, require exit status 0 and a silent stderr; its stdout."""
        proc = self(*args, **kwargs)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stderr == "", proc.stderr
        return proc.stdout

    def popen(self, *args: str, stderr_to: Path) -> subprocess.Popen[str]:
        with open(stderr_to, "w") as err:
            return subprocess.Popen(
                self.argv(args, True), stdout=subprocess.PIPE, stderr=err, text=True,
                cwd=self.cwd, env=self.env(), stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def queue(self) -> TaskQueue:
        return TaskQueue(self.db)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "cli_tasks.py").write_text(TASKS_MODULE)
    return Cli(tmp_path)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with ``code``, saying why in one line on stderr."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("task-queue"), lines
    assert "Traceback" not in proc.stderr
    return lines[0]


def snapshot(path: Path) -> tuple[bytes, list[tuple[Any, ...]]]:
    """The file's bytes and every row, to show a command changed nothing."""
    data = path.read_bytes()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()
    finally:
        conn.close()
    return data, rows


def make_failed(queue: TaskQueue, task_type: str = "boom", **kwargs: Any) -> int:
    """A task in the dead-letter set, with an error and a traceback."""
    task_id = queue.enqueue(f"{task_type} task", task_type, max_retries=0, **kwargs)
    task = queue.dequeue(task_types=[task_type])
    assert task is not None and task.id == task_id
    try:
        raise ValueError("the handler broke")
    except ValueError as exc:
        assert queue.fail_task(task, exc)
    return task_id


def make_completed(queue: TaskQueue, n: int, task_type: str = "done") -> list[int]:
    ids = queue.enqueue_many(
        [{"name": f"{task_type} {i}", "task_type": task_type} for i in range(n)]
    )
    tasks = queue.claim(n, task_types=[task_type], remember=False)
    assert {t.id for t in tasks} == set(ids)
    assert len(queue.complete_many([(t, "null") for t in tasks])) == n
    return ids


# -- enqueue -------------------------------------------------------------------


def test_integer_priorities_go_in_and_come_out_as_numbers(cli: Cli) -> None:
    # Django's Tasks use any int from -100 to 100; the CLI listed only named
    # levels and crashed (TaskPriority(50)) on a task with another priority.
    fifty = int(cli.ok("enqueue", "echo", "--priority", "50"))
    minus = int(cli.ok("enqueue", "echo", "--priority", "-7"))
    named = int(cli.ok("enqueue", "echo", "--priority", "3"))
    with cli.queue() as queue:
        assert [t.priority for t in queue.get_tasks([fifty, minus, named])] == [50, -7, 3]
    by_id = {t["id"]: t["priority"] for t in json.loads(cli.ok("list", "--json"))}
    assert by_id == {fifty: "50", minus: "-7", named: "high"}
    rows = {line.split()[0]: line.split() for line in cli.ok("list").splitlines()[1:]}
    assert "50" in rows[str(fifty)] and "-7" in rows[str(minus)]
    assert json.loads(cli.ok("show", str(fifty), "--json"))["priority"] == "50"
    assert cli("enqueue", "echo", "--priority", "101").returncode == 2


def test_enqueue_prints_the_id_and_stores_every_option(cli: Cli) -> None:
    before = time.time()
    first = cli.ok(
        "enqueue", "echo", "--payload", '{"to": "ada@example.com", "n": [1, 2]}',
        "--name", "Say hello", "--priority", "HIGH", "--queue-name", "mail",
        "--max-retries", "5", "--timeout", "2m", "--unique-key", "hello-ada",
    )  # fmt: skip
    assert first.strip().isdigit()
    again = cli.ok("enqueue", "echo", "--unique-key", "hello-ada")
    assert again == first, "a live task holds the key: its id, nothing added"
    delayed = int(cli.ok("enqueue", "echo", "--delay", "5m"))
    at = int(cli.ok("enqueue", "echo", "--at", "2030-01-02T03:04:05Z", "--priority", "low"))
    local = int(cli.ok("enqueue", "echo", "--at", "2030-01-02T03:04:05"))
    with cli.queue() as queue:
        task = queue.get_task(int(first))
        assert task is not None
        assert (task.name, task.task_type, task.queue_name) == ("Say hello", "echo", "mail")
        assert task.payload == {"to": "ada@example.com", "n": [1, 2]}
        assert task.priority.name == "HIGH" and task.max_retries == 5 and task.timeout == 120
        assert task.unique_key == "hello-ada" and task.status == "pending"
        plain = queue.get_task(delayed)
        assert plain is not None
        assert plain.name == "echo" and plain.payload is None and plain.queue_name == "default"
        assert plain.priority.name == "NORMAL" and plain.max_retries == 3
        assert before + 300 <= plain.run_at <= time.time() + 300
        utc = queue.get_task(at)
        assert utc is not None and utc.priority.name == "LOW"
        assert utc.run_at == 1893553445.0  # 2030-01-02T03:04:05+00:00
        naive = queue.get_task(local)
        assert naive is not None
        assert naive.run_at == dt.datetime(2030, 1, 2, 3, 4, 5).timestamp()  # local time
        assert queue.get_queue_stats()["pending"] == 4


def test_the_queue_file_comes_from_db_then_the_environment_then_the_default(cli: Cli) -> None:
    cli.ok("enqueue", "echo", db=False)
    assert (cli.cwd / "taskqueue.db").exists(), "the default, as TaskQueue()"
    env_db = cli.cwd / "env.db"
    cli.ok("enqueue", "echo", db=False, TASK_QUEUE_DB=str(env_db))
    assert env_db.exists()
    # --db given after the command wins over the environment too.
    late = cli.cwd / "late.db"
    assert cli.ok("enqueue", "echo", "--db", str(late), db=False, TASK_QUEUE_DB=str(env_db))
    assert json.loads(cli.ok("stats", "--json", "--db", str(late), db=False))["total"] == 1
    assert json.loads(cli.ok("stats", "--json", db=False, TASK_QUEUE_DB=str(env_db)))["total"] == 1


# -- stats, queues, list, show ---------------------------------------------------


@pytest.fixture
def filled(cli: Cli) -> dict[str, int]:
    """A queue with a task in every status, in two queues."""
    with cli.queue() as queue:
        ids = {
            "pending": queue.enqueue("Send the newsletter", "echo", {"issue": 7}),
            "later": queue.enqueue("Tomorrow", "echo", delay=3600, queue_name="mail"),
            "failed": make_failed(queue),
            "completed": make_completed(queue, 1)[0],
        }
        ids["cancelled"] = queue.enqueue("Never mind", "echo", queue_name="mail")
        assert queue.cancel_task(ids["cancelled"])
        ids["running"] = queue.enqueue("Running", "slow", {"seconds": 1})
        # Not remembered: it stays running after close(), as a live worker's would.
        assert queue.claim(1, task_types=["slow"], worker_id="elsewhere", remember=False)
    return ids


def test_stats_counts_per_status_and_per_queue(cli: Cli, filled: dict[str, int]) -> None:
    out = cli.ok("stats")
    lines = out.splitlines()
    assert lines[0].split() == ["STATUS", "TASKS"]
    counts = dict(line.split() for line in lines[1:8])
    assert counts == {
        "pending": "2", "running": "1", "completed": "1", "failed": "1", "cancelled": "1",
        "waiting": "0", "total": "6",
    }  # fmt: skip
    assert "QUEUE" in out and any(line.startswith("mail ") for line in lines)
    doc = json.loads(cli.ok("stats", "--json"))
    assert doc["counts"] == {
        "pending": 2, "running": 1, "completed": 1, "failed": 1, "cancelled": 1, "waiting": 0
    }  # fmt: skip
    assert doc["total"] == 6
    assert doc["queues"]["mail"] == {
        "pending": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 1, "waiting": 0
    }  # fmt: skip
    mail = json.loads(cli.ok("stats", "--queue-name", "mail", "--json"))
    assert mail["counts"]["cancelled"] == 1 and mail["total"] == 2
    assert list(mail["queues"]) == ["mail"]
    assert cli.ok("stats", "--queue-name", "mail").startswith("queue mail\n")


def test_pause_resume_and_queues(cli: Cli, filled: dict[str, int]) -> None:
    assert cli.ok("pause", "mail") == "paused mail\n"
    assert cli.ok("pause", "fresh") == "paused fresh\n"  # a queue nobody used yet
    lines = cli.ok("queues").splitlines()
    assert lines[0].split() == [
        "QUEUE", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "WAITING", "STATE"
    ]  # fmt: skip
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows == {
        "default": ["1", "1", "1", "1", "0", "0", "active"],
        "fresh": ["0", "0", "0", "0", "0", "0", "paused"],
        "mail": ["1", "0", "0", "0", "1", "0", "paused"],
    }
    doc = json.loads(cli.ok("queues", "--json"))
    assert [(q["queue"], q["paused"]) for q in doc] == [
        ("default", False), ("fresh", True), ("mail", True)
    ]  # fmt: skip
    assert doc[2]["counts"]["cancelled"] == 1
    assert cli.ok("resume", "mail") == "resumed mail\n"
    assert cli.ok("resume", "mail") == "mail was not paused\n"
    with cli.queue() as queue:
        assert queue.paused() == {"fresh"}


def test_queues_of_a_queue_without_tasks(cli: Cli) -> None:
    TaskQueue(cli.db).close()
    assert cli.ok("queues").splitlines()[1].split() == ["default", *["0"] * 6, "active"]
    [default] = json.loads(cli.ok("queues", "--json"))
    assert default == {
        "queue": "default", "paused": False,
        "counts": {
            "pending": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0, "waiting": 0
        },
    }  # fmt: skip
    assert cli.ok("list") == "no tasks\n"
    assert json.loads(cli.ok("list", "--json")) == []


def test_schedules_lists_what_the_file_knows(cli: Cli) -> None:
    from task_queue.periodic import Schedule

    TaskQueue(cli.db).close()
    assert cli.ok("schedules").startswith("no schedules")
    assert json.loads(cli.ok("schedules", "--json")) == []
    nightly = Schedule("echo", cron="0 3 * * *", name="nightly", tz="Europe/Berlin")
    every = Schedule("echo", every=2.0, name="frequent", queue_name="mail", misfire="latest")
    with cli.queue() as queue:
        queue.declare_schedules([nightly, every])
        [(slot, task_id)] = queue.fire_schedule(every)
    lines = cli.ok("schedules").splitlines()
    assert lines[0].split() == [
        "NAME", "TYPE", "EXPRESSION", "QUEUE", "MISFIRE", "NEXT", "LAST", "SLOT", "TASK"
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"frequent", "nightly"}
    assert rows["frequent"].split()[-1] == str(task_id) and " latest " in rows["frequent"]
    assert "0 3 * * *" in rows["nightly"] and " in " in rows["nightly"]
    doc = {s["name"]: s for s in json.loads(cli.ok("schedules", "--json"))}
    assert doc["frequent"]["last_task_id"] == task_id and doc["frequent"]["last_slot"] == slot
    assert doc["frequent"]["queue_name"] == "mail"
    assert doc["nightly"]["last_slot"] is None and doc["nightly"]["next_fire"] > time.time()


def test_schedules_on_a_path_without_a_queue_creates_nothing(cli: Cli) -> None:
    proc = cli("schedules")
    assert proc.returncode == 1 and "no task queue at" in proc.stderr
    assert not cli.db.exists()


def test_list_one_line_per_task_newest_first(cli: Cli, filled: dict[str, int]) -> None:
    lines = cli.ok("list").splitlines()
    assert lines[0].split() == [
        "ID", "STATUS", "QUEUE", "TYPE", "PRIORITY", "TRIES", "CREATED", "FINISHED", "NAME"
    ]  # fmt: skip
    ids = [int(line.split()[0]) for line in lines[1:]]
    assert ids == sorted(filled.values(), reverse=True)
    assert all(width(line) <= 100 for line in lines)
    by_id = {int(line.split()[0]): line for line in lines[1:]}
    assert by_id[filled["later"]].split()[1:3] == ["pending", "mail"]
    assert "due in 1h" in by_id[filled["later"]]
    assert by_id[filled["pending"]].rstrip().endswith("Send the newsletter")
    assert "ago" in by_id[filled["pending"]] or " now " in by_id[filled["pending"]]

    failed = cli.ok("list", "--status", "failed").splitlines()
    assert [int(line.split()[0]) for line in failed[1:]] == [filled["failed"]]
    mail = cli.ok("list", "--queue-name", "mail", "--json")
    assert {t["id"] for t in json.loads(mail)} == {filled["later"], filled["cancelled"]}
    slow = json.loads(cli.ok("list", "--type", "slow", "--json"))
    assert [t["id"] for t in slow] == [filled["running"]]
    assert slow[0]["status"] == "running" and slow[0]["priority"] == "normal"

    limited = cli.ok("list", "--limit", "2").splitlines()
    assert len(limited) == 4 and "--limit shows more" in limited[-1]
    assert len(json.loads(cli.ok("list", "--limit", "2", "--json"))) == 2


def test_list_json_holds_every_field(cli: Cli, filled: dict[str, int]) -> None:
    doc = json.loads(cli.ok("list", "--json"))
    assert [t["id"] for t in doc] == sorted(filled.values(), reverse=True)
    with cli.queue() as queue:
        for item in doc:
            task = queue.get_task(item["id"])
            assert task is not None
            expected = task.to_dict()
            expected["priority"] = task.priority.name.lower()
            assert item == json.loads(json.dumps(expected))


def test_show_prints_every_field_error_and_traceback(cli: Cli, filled: dict[str, int]) -> None:
    out = cli.ok("show", str(filled["failed"]), TZ="Asia/Kolkata")
    fields = {}
    for line in out.split("\nerror_traceback:\n")[0].splitlines():
        name, _, value = line.partition(" ")
        fields[name] = value.strip()
    assert fields["id"] == str(filled["failed"])
    assert fields["status"] == "failed" and fields["task_type"] == "boom"
    assert fields["error_message"] == "ValueError: the handler broke"
    assert fields["created_at"].split(" (")[0].endswith("+05:30"), "local time (TZ)"
    assert fields["completed_at"].endswith("ago)") or fields["completed_at"].endswith("(now)")
    with cli.queue() as queue:
        task = queue.get_task(filled["failed"])
        assert task is not None
        assert set(task.to_dict()) - {"error_traceback", "payload", "result"} <= set(fields)
        trace = out.split("\nerror_traceback:\n")[1]
        assert trace == textwrap.indent(task.error_traceback or "", "  ")
    assert 'raise ValueError("the handler broke")' in trace

    pending = cli.ok("show", str(filled["pending"]))
    assert 'payload:\n  {\n    "issue": 7\n  }\n' in pending
    doc = json.loads(cli.ok("show", str(filled["failed"]), "--json"))
    assert doc["error_traceback"] == task.error_traceback
    assert doc["priority"] == "normal" and doc["status"] == "failed"
    assert doc["created_at"] == task.created_at


def test_hostile_names_never_reach_the_terminal_raw(cli: Cli) -> None:
    hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u202eevil\r\nsecond line\x9b"
    with cli.queue() as queue:
        task_id = queue.enqueue(hostile, "ty\x1bpe", {"text": hostile})
    for args in (("list",), ("show", str(task_id)), ("list", "--json"),
                 ("show", str(task_id), "--json")):  # fmt: skip
        out = cli.ok(*args)
        for raw in ("\x1b", "\x07", "\r", "\u202e", "\x9b"):
            assert raw not in out, (args, raw)
    listing = cli.ok("list").splitlines()
    assert len(listing) == 2, "one line per task, whatever its name"
    assert "\\x1b]0;pwned" in listing[1]
    assert json.loads(cli.ok("show", str(task_id), "--json"))["name"] == hostile


# -- retry, cancel, purge ----------------------------------------------------------


def test_retry_and_cancel_by_id(cli: Cli) -> None:
    with cli.queue() as queue:
        failed = make_failed(queue)
        cancelled = queue.enqueue("c", "echo")
        queue.cancel_task(cancelled)
        pending = queue.enqueue("p", "echo")
        done = make_completed(queue, 1)[0]
    assert cli.ok("retry", str(failed), str(cancelled)) == f"{failed}\n{cancelled}\n"
    with cli.queue() as queue:
        for task_id in (failed, cancelled):
            task = queue.get_task(task_id)
            assert task is not None and task.status == "pending" and task.retry_count == 0
    proc = cli("retry", str(pending))
    assert "not retried: it is pending" in one_error_line(proc, 1)

    assert cli.ok("cancel", str(pending), str(failed)) == f"{pending}\n{failed}\n"
    proc = cli("cancel", str(done))
    assert "not cancelled: it is completed" in one_error_line(proc, 1)
    with cli.queue() as queue:
        assert queue.get_queue_stats()["cancelled"] == 2


def test_retry_all_failed_of_one_type(cli: Cli) -> None:
    with cli.queue() as queue:
        boom = [make_failed(queue, "boom") for _ in range(3)]
        other = make_failed(queue, "echo")
    assert cli.ok("retry", "--all-failed", "--type", "boom") == "3\n"
    with cli.queue() as queue:
        assert {queue.get_task(i).status for i in boom} == {TaskStatus.PENDING}
        assert queue.get_task(other).status == "failed"
    assert cli.ok("retry", "--all-failed") == "1\n"
    assert cli.ok("retry", "--all-failed") == "0\n"


def test_purge_prints_the_count(cli: Cli) -> None:
    with cli.queue() as queue:
        completed = make_completed(queue, 3)
        failed = make_failed(queue)
        kept = queue.enqueue("pending", "echo")
    assert cli.ok("purge", "--older-than", "1h") == "0\n", "they finished just now"
    assert cli.ok("purge", "--older-than", "0s") == "3\n"
    with cli.queue() as queue:
        assert all(queue.get_task(i) is None for i in completed)
        assert queue.get_task(failed) is not None, "the dead-letter set is kept unless named"
        assert queue.get_task(kept) is not None
    assert cli.ok("purge", "--older-than", "0", "--status", "failed,cancelled") == "1\n"


def run_on_a_terminal(cli: Cli, *args: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout piped): (status, stdout, terminal)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            cli.argv(args, True), stdout=subprocess.PIPE, stderr=slave, text=True,
            cwd=cli.cwd, env=cli.env(), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        out, _ = proc.communicate(timeout=60)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return proc.returncode, out, b"".join(chunks).decode()


@pytest.mark.slow
def test_a_long_purge_shows_progress_on_a_terminal_only(cli: Cli) -> None:
    with TaskQueue(cli.db, synchronous="NORMAL") as queue:
        make_completed(queue, 5000)
    code, out, terminal = run_on_a_terminal(cli, "purge", "--older-than", "0s")
    assert code == 0 and out == "5000\n"
    assert "purged 1000..." in terminal and "purged 4000..." in terminal
    assert terminal.endswith("\r"), "the progress line is erased at the end"
    with cli.queue() as queue:
        make_completed(queue, 1500)
    piped = cli("purge", "--older-than", "0s")
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "1500\n", "")


@pytest.mark.slow
def test_retry_all_failed_shows_progress_on_a_terminal_only(cli: Cli) -> None:
    with TaskQueue(cli.db, synchronous="NORMAL") as queue:
        ids = queue.enqueue_many(
            [{"name": "b", "task_type": "boom", "max_retries": 0} for _ in range(1200)]
        )
        for task in queue.claim(1200, remember=False):
            assert queue.record_failure(task, queue.failure(task, "broke"))
    code, out, terminal = run_on_a_terminal(cli, "retry", "--all-failed")
    assert code == 0 and out == "1200\n"
    assert "retried 1000..." in terminal
    with TaskQueue(cli.db) as queue:
        assert queue.get_queue_stats()["pending"] == len(ids)
    piped = cli("retry", "--all-failed")
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "0\n", "")


# -- the worker ----------------------------------------------------------------------


def outcome_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " task_queue.cli.worker: task " in line]


def test_worker_burst_runs_what_is_due_then_exits(cli: Cli) -> None:
    echo = [int(cli.ok("enqueue", "echo", "--payload", str(i))) for i in range(3)]
    flaky = int(cli.ok("enqueue", "flaky"))
    boom = int(cli.ok("enqueue", "boom"))
    later = int(cli.ok("enqueue", "echo", "--delay", "1h"))
    proc = cli("worker", "cli_tasks", "--burst", "-c", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    with cli.queue() as queue:
        assert [queue.get_task(i).result for i in echo] == [0, 1, 2]
        assert queue.get_task(flaky).status == "completed", "its quick retry was waited for"
        assert queue.get_task(flaky).attempts == 2
        assert queue.get_task(boom).status == "failed"
        assert queue.get_task(later).status == "pending", "scheduled later: not waited for"
        assert queue.get_queue_stats()["running"] == 0
    lines = proc.stderr.splitlines()
    start = lines[0]
    assert " INFO task_queue.cli.worker: worker " in start
    for part in (f"db {cli.db}", "queues all", "concurrency 2",
                 "handlers boom,echo,flaky,slow (from TASK_HANDLERS)", "burst"):  # fmt: skip
        assert part in start, (part, start)
    assert "stopped: 4 completed, 2 failed attempts" in lines[-1]
    outcomes = outcome_lines(proc.stderr)
    for task_id in echo:
        assert sum(f"task {task_id} (echo) completed in " in line for line in outcomes) == 1
    assert any(
        f"task {flaky} (flaky) failed after " in line and ", retry at " in line for line in outcomes
    )
    assert any(f"task {flaky} (flaky) completed in " in line for line in outcomes)
    assert any(
        f"task {boom} (boom) failed for good after " in line and "ValueError: boom" in line
        for line in outcomes
    )
    assert len(outcomes) == 6, outcomes


def test_worker_json_logs(cli: Cli) -> None:
    task_id = int(cli.ok("enqueue", "echo"))
    proc = cli("worker", "cli_tasks", "--burst", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    started = [r for r in records if r.get("event") == "worker_started"]
    assert len(started) == 1
    assert started[0]["db"] == str(cli.db) and started[0]["concurrency"] == 4
    assert started[0]["handlers"] == ["boom", "echo", "flaky", "slow"]
    assert started[0]["queues"] is None and started[0]["burst"] is True
    done = [r for r in records if r.get("event") == "task_completed"]
    assert len(done) == 1
    assert done[0]["task_id"] == task_id and done[0]["task_type"] == "echo"
    assert done[0]["outcome"] == "completed" and isinstance(done[0]["duration"], float)
    assert records[-1]["event"] == "worker_stopped" and records[-1]["completed"] == 1


def test_worker_log_level_warning_hides_the_info_lines(cli: Cli) -> None:
    cli.ok("enqueue", "echo")
    proc = cli("worker", "cli_tasks", "--burst", "--log-level", "warning")
    assert (proc.returncode, proc.stderr) == (0, "")


def test_worker_serves_a_named_registry_and_the_queues_asked_for(cli: Cli) -> None:
    mine = int(cli.ok("enqueue", "other_echo", "--queue-name", "a"))
    elsewhere = int(cli.ok("enqueue", "other_echo", "--queue-name", "b"))
    echo = int(cli.ok("enqueue", "echo", "--queue-name", "a"))
    proc = cli("worker", "cli_tasks:other", "--queues", "a", "--burst")
    assert proc.returncode == 0, proc.stderr
    assert "handlers other_echo (from cli_tasks:other)" in proc.stderr
    assert "queues a," in proc.stderr
    with cli.queue() as queue:
        assert queue.get_task(mine).status == "completed"
        assert queue.get_task(elsewhere).status == "pending", "queue b is not served"
        assert queue.get_task(echo).status == "pending", "not in that registry"
    both = cli("worker", "cli_tasks", "cli_tasks:other", "--burst", "--queues", "a,b")
    assert both.returncode == 0, both.stderr
    assert "handlers boom,echo,flaky,other_echo,slow" in both.stderr
    with cli.queue() as queue:
        assert queue.get_queue_stats()["completed"] == 3


def test_worker_async_concurrency_caps_async_handlers(cli: Cli) -> None:
    ids = [int(cli.ok("enqueue", "nap")) for _ in range(12)]
    proc = cli("worker", "cli_tasks:aio", "--burst", "--async-concurrency", "1")
    assert proc.returncode == 0, proc.stderr
    with cli.queue() as queue:
        assert all(t.status == "completed" for t in queue.get_tasks(ids))
    assert (cli.cwd / "most-at-once").read_text() == "1"  # the default (200) ran them together
    assert cli("worker", "cli_tasks:aio", "--async-concurrency", "0").returncode == 2


def test_worker_burst_does_not_wait_for_a_paused_queue(cli: Cli) -> None:
    task_id = int(cli.ok("enqueue", "echo", "--queue-name", "held"))
    cli.ok("pause", "held")
    assert cli("worker", "cli_tasks", "--burst").returncode == 0
    with cli.queue() as queue:
        assert queue.get_task(task_id).status == "pending"


@pytest.mark.slow
def test_worker_drains_on_sigterm_mid_task_and_exits_0(cli: Cli) -> None:
    task_id = int(cli.ok("enqueue", "slow", "--payload", '{"seconds": 1.0}'))
    log = cli.cwd / "worker.log"
    proc = cli.popen("worker", "cli_tasks", stderr_to=log)
    try:
        wait_until(lambda: (cli.cwd / f"started-{task_id}").exists(), timeout=30)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with cli.queue() as queue:
        task = queue.get_task(task_id)
        assert task is not None
        assert task.status == "completed" and task.result == {"cancelled": False}, "drained"
        assert queue.get_queue_stats()["running"] == 0
    text = log.read_text()
    assert "received signal 15" in text
    assert f"task {task_id} (slow) completed in " in text
    assert "stopped: 1 completed, 0 failed attempts" in text.splitlines()[-1]


@pytest.mark.slow
def test_a_second_sigterm_gives_the_running_task_back_at_once(cli: Cli) -> None:
    task_id = int(cli.ok("enqueue", "slow", "--payload", '{"seconds": 120}'))
    log = cli.cwd / "worker.log"
    proc = cli.popen("worker", "cli_tasks", "--drain-timeout", "120", stderr_to=log)
    try:
        wait_until(lambda: (cli.cwd / f"started-{task_id}").exists(), timeout=30)
        os.kill(proc.pid, signal.SIGTERM)
        wait_until(lambda: "received signal 15, stopping" in log.read_text(), timeout=30)
        began = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert time.monotonic() - began < 15, "it did not wait for the drain"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with cli.queue() as queue:
        task = queue.get_task(task_id)
        assert task is not None
        assert task.status == "pending" and task.retry_count == 0, "given back, no retry used"
        assert queue.get_queue_stats()["running"] == 0
    text = log.read_text()
    assert "again: giving the running tasks back now" in text
    assert f"task {task_id} (slow) given back" in text


@pytest.mark.slow
def test_the_drain_timeout_gives_back_what_still_runs(cli: Cli) -> None:
    task_id = int(cli.ok("enqueue", "slow", "--payload", '{"seconds": 120}'))
    log = cli.cwd / "worker.log"
    proc = cli.popen("worker", "cli_tasks", "--drain-timeout", "0.2s", stderr_to=log)
    try:
        wait_until(lambda: (cli.cwd / f"started-{task_id}").exists(), timeout=30)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with cli.queue() as queue:
        assert queue.get_task(task_id).status == "pending"
        assert queue.get_queue_stats()["running"] == 0


def test_worker_burst_on_a_new_path_creates_the_queue(cli: Cli) -> None:
    proc = cli("worker", "cli_tasks", "--burst")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(cli.ok("stats", "--json"))["total"] == 0


def test_the_console_script_finds_modules_in_the_current_directory(cli: Cli) -> None:
    script = Path(sys.executable).with_name("task-queue")
    if not script.exists():
        pytest.skip("the task-queue script is not installed (pip install -e .)")
    task_id = int(cli.ok("enqueue", "echo", "--payload", '"hi"'))
    proc = subprocess.run(
        [str(script), "--db", str(cli.db), "worker", "cli_tasks", "--burst"],
        capture_output=True, text=True, timeout=60, cwd=cli.cwd, env=cli.env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with cli.queue() as queue:
        assert queue.get_task(task_id).result == "hi"


# -- errors: one line, the right status, nothing created or changed ----------------

EXISTING_ONLY = [
    ("stats",), ("stats", "--json"), ("list",), ("list", "--json"), ("show", "1"),
    ("show", "1", "--json"), ("retry", "1"), ("retry", "--all-failed"), ("cancel", "1"),
    ("purge", "--older-than", "7d"), ("pause", "q"), ("resume", "q"), ("queues",),
    ("queues", "--json"),
]  # fmt: skip


@pytest.mark.parametrize("args", EXISTING_ONLY, ids=" ".join)
def test_commands_on_a_path_without_a_queue_create_nothing(cli: Cli, args: tuple[str]) -> None:
    line = one_error_line(cli(*args), 1)
    assert line == f"task-queue: error: no task queue at {cli.db}"
    assert sorted(p.name for p in cli.cwd.iterdir()) == ["cli_tasks.py"]
    # Through the environment, and on an empty file (opening would make it a queue).
    cli.db.touch()
    proc = cli(*args, db=False, TASK_QUEUE_DB=str(cli.db))
    assert one_error_line(proc, 1) == f"task-queue: error: no task queue at {cli.db}"
    assert cli.db.read_bytes() == b""
    assert sorted(p.name for p in cli.cwd.iterdir()) == ["cli_tasks.py", "queue.db"]


@pytest.mark.parametrize("args", [("stats",), ("list", "--json"), ("cancel", "1")], ids=" ".join)
def test_a_file_that_is_not_a_queue_is_refused_untouched(cli: Cli, args: tuple[str]) -> None:
    cli.db.write_text("just some notes\n")
    assert "is not a SQLite database" in one_error_line(cli(*args), 1)
    assert cli.db.read_text() == "just some notes\n"
    foreign = cli.cwd / "app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    data = foreign.read_bytes()
    proc = cli(*args, db=False, TASK_QUEUE_DB=str(foreign))
    assert "another application" in one_error_line(proc, 1)
    assert foreign.read_bytes() == data
    assert sorted(p.name for p in cli.cwd.iterdir()) == ["app.db", "cli_tasks.py", "queue.db"]
    assert one_error_line(cli(*args, db=False, TASK_QUEUE_DB=str(cli.cwd)), 1).endswith(
        f"no task queue at {cli.cwd}"
    )


USAGE_ERRORS = [
    (("enqueue", "t", "--payload", "{bad"), "bad JSON payload"),
    (("enqueue", "t", "--payload", "NaN"), "bad JSON payload: NaN is not JSON"),
    (("enqueue", "t", "--priority", "urgent"), "unknown priority 'urgent'"),
    (("enqueue", "t", "--delay", "5 minutes"), "bad duration '5 minutes'"),
    (("enqueue", "t", "--at", "tomorrow"), "bad time 'tomorrow'"),
    (("enqueue", "t", "--delay", "5m", "--at", "2030-01-01"), "not allowed with"),
    (("enqueue", "t", "--queue-name", "no spaces"), "a queue name is"),
    (("enqueue", "t", "--max-retries", "-1"), "must be from 0"),
    (("enqueue", "t", "--unique-key", ""), "unique_key must be a non-empty string"),
    (("enqueue",), "required: TASK_TYPE"),
    (("purge", "--older-than", "soon"), "bad duration 'soon'"),
    (("purge",), "required: --older-than"),
    (("purge", "--older-than", "1d", "--status", "pending"), "not pending"),
    (("show", "abc"), "not a whole number"),
    (("show", "0"), "must be from 1"),
    (("retry",), "give task ids or --all-failed"),
    (("retry", "1", "--all-failed"), "give task ids or --all-failed"),
    (("retry", "1", "--type", "boom"), "go with --all-failed"),
    (("cancel",), "required: ID"),
    (("list", "--status", "done"), "invalid choice"),
    (("list", "--limit", "0"), "must be from 1 to 10000"),
    (("stats", "--busy-timeout", "forever"), "bad duration"),
    (("pause", "bad/name"), "a queue name is"),
    (("worker", "cli_tasks", "-c", "0"), "must be from 1"),
    (("worker", "cli_tasks", "--queues", "a,,b"), "a queue name is"),
    (("worker", "cli_tasks", "--drain-timeout", "long"), "bad duration"),
    (("worker", "cli_tasks", "--poll-interval", "0"), "more than 0 seconds"),
    (("worker",), "required: MODULE"),
    (("frobnicate",), "invalid choice"),
    ((), "a command is required"),
]


@pytest.mark.parametrize(
    ("args", "says"), USAGE_ERRORS, ids=[" ".join(a) or "(nothing)" for a, _ in USAGE_ERRORS]
)
def test_usage_errors_exit_2_in_one_line_and_create_nothing(
    cli: Cli, args: tuple[str], says: str
) -> None:
    line = one_error_line(cli(*args), 2)
    assert says in line, line
    assert not cli.db.exists()
    assert sorted(p.name for p in cli.cwd.iterdir()) == ["cli_tasks.py"]


def test_help_and_version(cli: Cli) -> None:
    out = cli.ok("--help")
    for command in ("worker", "enqueue", "stats", "list", "show", "retry", "cancel", "purge",
                    "pause", "resume", "queues"):  # fmt: skip
        assert f"\n    {command} " in out, command
    assert "--burst" in cli.ok("worker", "--help")
    import task_queue

    assert cli.ok("--version") == f"task-queue {task_queue.__version__}\n"
    assert not cli.db.exists()


@pytest.fixture
def one_of_each(cli: Cli) -> dict[str, int]:
    with cli.queue() as queue:
        return {"failed": make_failed(queue), "pending": queue.enqueue("p", "echo")}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("show", "999"), "no task with id 999"),
        (("show", "999", "--json"), "no task with id 999"),
        (("cancel", "999"), "no task with id 999; nothing cancelled"),
        (("retry", "999"), "no task with id 999; nothing retried"),
        (("cancel", "2", "999", "998"), "no task with id 999, 998; nothing cancelled"),
        (("retry", "1", "999"), "no task with id 999; nothing retried"),
    ],
    ids=["show", "show --json", "cancel", "retry", "cancel several", "retry known and unknown"],
)
def test_unknown_ids_exit_1_and_change_nothing(
    cli: Cli, one_of_each: dict[str, int], args: tuple[str], says: str
) -> None:
    assert one_of_each == {"failed": 1, "pending": 2}
    before = snapshot(cli.db)
    assert one_error_line(cli(*args), 1) == f"task-queue: error: {says}"
    assert snapshot(cli.db) == before


def test_enqueue_into_a_missing_directory_creates_nothing(cli: Cli) -> None:
    missing_dir = cli.cwd / "no" / "such" / "dir" / "q.db"
    proc = cli("enqueue", "t", db=False, TASK_QUEUE_DB=str(missing_dir))
    assert "does not exist" in one_error_line(proc, 1)
    assert not (cli.cwd / "no").exists()


def write_module(cli: Cli, name: str, code: str) -> None:
    (cli.cwd / f"{name}.py").write_text(textwrap.dedent(code))


@pytest.mark.parametrize(
    ("module", "code", "says"),
    [
        ("no_such_module", None, "cannot import no_such_module: No module named 'no_such_module'"),
        ("broken", "raise RuntimeError('the config is missing')\n",
         "cannot import broken: RuntimeError: the config is missing"),
        ("typo", "def f(:\n", "cannot import typo: SyntaxError: "),
        ("imports_missing", "import not_installed_anywhere\n",
         "cannot import imports_missing: No module named 'not_installed_anywhere'"),
        ("empty", "x = 1\n", "no handlers: empty registered none in TASK_HANDLERS"),
        ("cli_tasks:missing", None, "cannot use cli_tasks:missing: cli_tasks has no attribute"),
        ("cli_tasks:not_a_registry", None, "it is a dict, not a HandlerRegistry"),
        ("cli_tasks:clashing", None, "task type echo has handlers in both"),
        (":registry", None, "no module name"),
    ],
    ids=["missing", "raises", "syntax error", "imports a missing module", "no handlers",
         "no such registry", "not a registry", "two handlers for a type", "no module name"],
)  # fmt: skip
def test_modules_that_cannot_be_used_exit_1_and_create_nothing(
    cli: Cli, module: str, code: str | None, says: str
) -> None:
    if code is not None:
        write_module(cli, module, code)
    args = ("worker", module) if module != "cli_tasks:clashing" else ("worker", "cli_tasks", module)
    proc = cli(*args)
    line = one_error_line(proc, 2 if module.startswith(":") else 1)
    assert says in line, line
    assert not cli.db.exists()


def test_merged_registries_keep_limits_and_schedules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merging `mod:a mod:b` kept only retries and timeouts: a rate limit,
    a concurrency limit and the schedules were silently dropped."""
    from task_queue.cli.worker import load_handlers

    (tmp_path / "merge_me.py").write_text(
        textwrap.dedent(
            """
            from task_queue import HandlerRegistry

            a, b = HandlerRegistry(), HandlerRegistry()

            @a.periodic(every=60)
            @a.handler("api", rate_limit="5/s", concurrency_limit=2)
            def api(payload): ...

            @b.handler("other")
            def other(payload): ...
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry, sources = load_handlers(["merge_me:a", "merge_me:b"])
    assert sources == ["merge_me:a", "merge_me:b"]
    limits = registry.options("api").limits
    assert limits is not None and limits.concurrency == 2 and limits.rate is not None
    assert [s.task_type for s in registry.schedules()] == ["api"]


@pytest.fixture
def locked(cli: Cli) -> Iterator[sqlite3.Connection]:
    """The queue, with another connection holding its write lock."""
    with cli.queue() as queue:
        queue.enqueue("p", "echo")
    conn = sqlite3.connect(cli.db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


@pytest.mark.parametrize(
    "args", [("cancel", "1"), ("pause", "q"), ("enqueue", "echo")], ids=" ".join
)
def test_a_locked_database_fails_in_one_line_past_the_busy_timeout(
    cli: Cli, locked: sqlite3.Connection, args: tuple[str]
) -> None:
    began = time.monotonic()
    proc = cli(*args, "--busy-timeout", "0.3")
    assert "locked" in one_error_line(proc, 1)
    assert time.monotonic() - began < 20, "fails past --busy-timeout, not 30 s later"
    locked.execute("ROLLBACK")
    with cli.queue() as queue:
        assert queue.get_task(1).status == "pending" and queue.paused() == frozenset()
        assert queue.get_queue_stats()["pending"] == 1


def test_a_database_locked_for_readers_fails_in_one_line(cli: Cli) -> None:
    with cli.queue() as queue:
        queue.enqueue("p", "echo")
    conn = sqlite3.connect(cli.db, isolation_level=None)
    try:
        # Exclusive locking mode: once it wrote, not even readers get in.
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("UPDATE task_queue_meta SET value = value")
        conn.execute("COMMIT")
        began = time.monotonic()
        proc = cli("stats", "--busy-timeout", "0.3")
        assert "locked" in one_error_line(proc, 1)
        assert time.monotonic() - began < 20, "fails past --busy-timeout, not 30 s later"
    finally:
        conn.close()
    assert json.loads(cli.ok("stats", "--json"))["counts"]["pending"] == 1


def test_worker_on_a_file_that_is_not_a_queue(cli: Cli) -> None:
    cli.db.write_text("notes")
    assert "is not a SQLite database" in one_error_line(cli("worker", "cli_tasks"), 1)
    assert cli.db.read_text() == "notes"


def test_output_into_a_closed_pipe_is_not_an_error_message(cli: Cli) -> None:
    with TaskQueue(cli.db, synchronous="NORMAL") as queue:
        queue.enqueue_many([{"name": "n" * 50, "task_type": "echo"} for _ in range(3000)])
    proc = subprocess.Popen(
        cli.argv(("list", "--limit", "3000"), True), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=cli.cwd, env=cli.env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert b"Traceback" not in err and err == b""
    assert proc.returncode == 1
