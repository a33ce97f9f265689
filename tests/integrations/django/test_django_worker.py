"""``manage.py task_queue_worker`` in real subprocesses: results with every
field, retries and errors, context, async tasks, signals (task_finished
carries the committed status), --burst, --queue-name, priority order,
SIGTERM, a transaction joined by the enqueue (SQLite) and on_commit()
(every backend)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from support import wait_until
from tqproject.shop import tasks
from tqproject.shop.models import Order

from task_queue.contrib.django.compat import TaskResultStatus, task_backends


@pytest.fixture(autouse=True)
def empty_queues() -> None:
    """Tasks earlier tests left READY (or running, under a killed worker)
    would run under this test's workers: cancel them first."""
    for alias in ("default", "shared"):
        if alias == "shared" and not _django_db_ready():
            continue
        queue = task_backends[alias].queue
        for status in ("pending", "running", "waiting"):
            for task in queue.get_tasks_by_status(status, limit=10_000):
                queue.cancel_task(task.id)


def _django_db_ready() -> bool:
    # The shared alias's queue is Django's test database: opened only once
    # the test run created it (a queue opened before would be deleted).
    import os

    from django.conf import settings

    return os.path.exists(settings.APP_DB)


def signals(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finished(result: Any, timeout: float = 30.0) -> Any:
    """Refresh ``result`` until it is SUCCESSFUL or FAILED."""

    def done() -> bool:
        result.refresh()
        return bool(result.is_finished)

    wait_until(done, timeout=timeout, interval=0.02)
    return result


def burst(start_worker: Any, *args: str, timeout: float = 60.0) -> None:
    proc = start_worker("--burst", *args)
    assert proc.wait(timeout=timeout) == 0


def test_burst_runs_what_is_due_and_the_result_has_every_field(
    start_worker: Any, signals_log: Path
) -> None:
    result = tasks.add.enqueue(2, b=5)
    before = timezone.now()
    burst(start_worker)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 7
    assert result.enqueued_at <= result.started_at == result.last_attempted_at
    assert result.started_at <= result.finished_at <= timezone.now()
    assert result.finished_at >= before
    assert result.errors == [] and len(result.worker_ids) == 1 and result.attempts == 1
    assert result.worker_ids[0].endswith(":django-default")
    assert (result.args, result.kwargs) == ([2], {"b": 5})
    logged = [(s["signal"], s["status"]) for s in signals(signals_log) if s["id"] == result.id]
    assert logged == [("enqueued", "READY"), ("started", "RUNNING"), ("finished", "SUCCESSFUL")]
    worker_pids = {s["pid"] for s in signals(signals_log) if s["signal"] != "enqueued"}
    assert len(worker_pids) == 1  # started and finished were sent in the worker process


def test_burst_does_not_wait_for_later_tasks(start_worker: Any) -> None:
    later = tasks.add.using(run_after=timezone.now() + time_delta(3600)).enqueue(1, 1)
    now = tasks.add.enqueue(2, 2)
    started = time.monotonic()
    burst(start_worker)
    assert time.monotonic() - started < 30
    assert tasks.add.get_result(now.id).status == TaskResultStatus.SUCCESSFUL
    assert tasks.add.get_result(later.id).status == TaskResultStatus.READY


def time_delta(seconds: float) -> Any:
    import datetime as dt

    return dt.timedelta(seconds=seconds)


def test_retries_keep_one_error_and_one_worker_id_per_attempt(
    start_worker: Any, signals_log: Path
) -> None:
    failing = tasks.always_fails.enqueue()  # max_retries=2: three attempts
    once = tasks.fails_once.enqueue()  # takes_context, max_retries=1
    start_worker("--concurrency", "2")
    failing = finished(failing)
    once = finished(once)
    assert failing.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in failing.errors] == ["tqproject.shop.tasks.Boom"] * 3
    assert failing.errors[0].exception_class is tasks.Boom
    assert "Boom: always" in failing.errors[-1].traceback
    assert len(failing.worker_ids) == 3 and failing.attempts == 3
    assert failing.started_at < failing.last_attempted_at <= failing.finished_at
    with pytest.raises(ValueError, match="failed"):
        _ = failing.return_value
    # context.attempt: 1 failed, 2 succeeded and returned its attempt number.
    assert once.status == TaskResultStatus.SUCCESSFUL and once.return_value == 2
    assert len(once.errors) == 1 and once.attempts == 2
    # task_finished once per task, with the committed final status; a
    # retried attempt is not "finished".
    ends = [(s["id"], s["status"], s["attempts"]) for s in signals(signals_log)
            if s["signal"] == "finished"]  # fmt: skip
    assert sorted(ends) == sorted([(failing.id, "FAILED", 3), (once.id, "SUCCESSFUL", 2)])
    ours = {failing.id, once.id}
    starts = [s for s in signals(signals_log) if s["signal"] == "started" and s["id"] in ours]
    assert len(starts) == 5 and all(s["status"] == "RUNNING" for s in starts)
    assert sorted(s["attempts"] for s in starts if s["id"] == failing.id) == [1, 2, 3]


def test_async_tasks_run(start_worker: Any) -> None:
    result = tasks.async_add.enqueue(20, 22)
    burst(start_worker)
    assert tasks.async_add.get_result(result.id).return_value == 42


def test_queue_name_selects_queues(start_worker: Any) -> None:
    email = tasks.send_email.enqueue("a@example.com")  # queue "emails"
    report = tasks.add.using(queue_name="reports").enqueue(1, 2)
    default = tasks.add.enqueue(3, 4)
    burst(start_worker, "--queue-name", "emails")
    assert tasks.send_email.get_result(email.id).return_value == {"sent": "a@example.com"}
    assert tasks.add.get_result(default.id).status == TaskResultStatus.READY
    burst(start_worker)  # the default queue only
    assert tasks.add.get_result(default.id).status == TaskResultStatus.SUCCESSFUL
    assert tasks.add.get_result(report.id).status == TaskResultStatus.READY
    burst(start_worker, "--queue-name", "*")
    assert tasks.add.get_result(report.id).return_value == 3


def test_an_unknown_queue_name_is_refused(start_worker: Any) -> None:
    proc = start_worker("--queue-name", "default,nope", "--burst")
    assert proc.wait(timeout=60) != 0


def test_concurrency_1_runs_in_priority_order_across_the_whole_range(
    start_worker: Any, out_file: Path
) -> None:
    priorities = [0, -100, 100, 5, -3, 42, 4, 1, 2, 3, -99, 99]
    for index, priority in enumerate(priorities):
        tasks.record.using(priority=priority).enqueue(str(out_file), f"{priority}:{index}")
    burst(start_worker, "--concurrency", "1")
    ran = [int(line.split(":")[0]) for line in out_file.read_text().splitlines()]
    assert ran == sorted(priorities, reverse=True)


@pytest.mark.slow
def test_sigterm_lets_the_running_task_finish(start_worker: Any, tmp_path: Path) -> None:
    release = tmp_path / "release"
    result = tasks.wait_for_file.enqueue(str(release))
    proc = start_worker("--drain-timeout", "30")
    wait_until(lambda: Path(str(release) + ".started").exists(), timeout=60)
    proc.send_signal(signal.SIGTERM)
    output = tmp_path / "worker-0.out"
    wait_until(lambda: "received signal" in output.read_text(), timeout=30)
    assert proc.poll() is None  # draining: the task still runs
    release.touch()
    assert proc.wait(timeout=60) == 0
    done = tasks.wait_for_file.get_result(result.id)
    assert done.return_value == "released" and done.attempts == 1


@pytest.mark.sqlite_only("joins Django's transaction on the queue's SQLite file")
@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_in_a_rolled_back_transaction_never_runs(
    start_worker: Any, out_file: Path
) -> None:
    shared = tasks.record.using(backend="shared")
    task_backends["shared"].queue  # noqa: B018 - its tables are made outside the transaction
    proc = start_worker("--backend", "shared")
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(item="gone")
        shared.enqueue(str(out_file), "rolled back")
        raise RuntimeError("roll back")
    with transaction.atomic():
        Order.objects.create(item="kept")
        kept = shared.enqueue(str(out_file), "committed")
    result = finished(task_backends["shared"].get_result(kept.id))
    assert result.return_value == "committed"
    assert out_file.read_text().splitlines() == ["committed"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


@pytest.mark.django_db(transaction=True)
def test_on_another_queue_on_commit_is_what_keeps_a_rolled_back_task_from_running(
    start_worker: Any, out_file: Path
) -> None:
    # The default alias's queue is not Django's database (queue.db, or a
    # PostgreSQL schema): an enqueue inside atomic() commits at once, so the
    # worker runs it whatever the block does; one from on_commit() waits.
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(item="gone")
        tasks.record.enqueue(str(out_file), "at once")
        transaction.on_commit(lambda: tasks.record.enqueue(str(out_file), "never"))
        raise RuntimeError("roll back")
    kept: list[Any] = []
    with transaction.atomic():
        Order.objects.create(item="kept")
        transaction.on_commit(lambda: kept.append(tasks.record.enqueue(str(out_file), "on commit")))
    burst(start_worker)
    assert tasks.record.get_result(kept[0].id).return_value == "on commit"
    assert sorted(out_file.read_text().splitlines()) == ["at once", "on commit"]
    assert list(Order.objects.values_list("item", flat=True)) == ["kept"]


@pytest.mark.slow
def test_a_killed_workers_attempt_is_an_error_naming_attempt_lost(
    start_worker: Any, tmp_path: Path, signals_log: Path
) -> None:
    never = tmp_path / "never"
    result = tasks.wait_for_file.enqueue(str(never))  # max_retries 0 (the backend's default)
    first = start_worker()
    wait_until(lambda: Path(str(never) + ".started").exists(), timeout=60)
    assert tasks.wait_for_file.get_result(result.id).status == TaskResultStatus.RUNNING
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    # Another worker on this host sees the owner's pid gone and rescues the
    # task at once: its last attempt was lost, so it failed for good.
    burst(start_worker)
    lost = tasks.wait_for_file.get_result(result.id)
    assert lost.status == TaskResultStatus.FAILED and lost.attempts == 1
    assert [e.exception_class_path for e in lost.errors] == [
        "task_queue.contrib.django.errors.AttemptLost"
    ]
    from task_queue.contrib.django.errors import AttemptLost

    assert lost.errors[0].exception_class is AttemptLost
    ends = [s for s in signals(signals_log) if s["signal"] == "finished" and s["id"] == result.id]
    assert [(s["status"], s["errors"]) for s in ends] == [
        ("FAILED", ["task_queue.contrib.django.errors.AttemptLost"])
    ]
