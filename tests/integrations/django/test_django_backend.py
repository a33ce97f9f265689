"""TaskQueueBackend in the test process: enqueue, get_result, validation,
system checks, the shared queue, and joining Django's transaction."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from support.postgres import fresh_queue_uri, pg_dsn
from tqproject.shop import tasks
from tqproject.shop.models import Order

from task_queue.contrib.django import TaskQueueBackend, transactions
from task_queue.contrib.django.compat import (
    FRAMEWORK,
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)
from task_queue.contrib.django.options import problems, shown
from task_queue.contrib.django.queues import close_all

#: The backend of the ``default`` alias's queue (tqproject/settings.py).
BACKEND = os.environ.get("TASK_QUEUE_TEST_BACKEND", "sqlite")


def signals(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_framework_is_the_one_this_python_gets() -> None:
    import sys

    assert ("django.tasks" if sys.version_info >= (3, 12) else "django_tasks") == FRAMEWORK


def test_the_default_alias_is_on_the_backend_under_test() -> None:
    storage = type(task_backends["default"].queue.storage).__name__
    assert storage == ("PostgresStorage" if BACKEND == "postgres" else "SqliteStorage")


def test_enqueue_returns_a_ready_result_and_get_result_reads_it_back(signals_log: Path) -> None:
    before = timezone.now()
    result = tasks.add.using(priority=-37).enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY
    assert result.task.func is tasks.add.func and result.task.priority == -37
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")
    assert before <= result.enqueued_at <= timezone.now()
    assert result.enqueued_at.tzinfo is not None
    assert result.started_at is result.finished_at is result.last_attempted_at is None
    assert (result.errors, result.worker_ids, result.attempts) == ([], [], 0)
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    again = tasks.add.get_result(result.id)
    assert again.id == result.id and again.status == TaskResultStatus.READY
    assert again.enqueued_at == result.enqueued_at
    assert again.task.priority == -37 and again.task.queue_name == "default"
    stored = task_backends["default"].queue.get_task(int(result.id))
    assert (
        stored.priority == -37
        and stored.max_retries == 0
        and stored.task_type == ("tqproject.shop.tasks.add")
    )
    assert [(s["signal"], s["id"], s["status"]) for s in signals(signals_log)] == [
        ("enqueued", result.id, "READY")
    ]


def test_per_task_options_and_backend_defaults() -> None:
    queue = task_backends["default"].queue
    assert queue.get_task(int(tasks.always_fails.enqueue().id)).max_retries == 2
    assert queue.get_task(int(tasks.add.enqueue(1, 2).id)).max_retries == 0
    shared = task_backends["shared"].backend_options
    assert shared.max_retries == 1  # OPTIONS["max_retries"]


def test_get_result_of_an_unknown_id() -> None:
    backend = task_backends["default"]
    for bad in ["999999", "abc", "-1", "0", str(2**70)]:
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(bad)
    native = backend.queue.enqueue("not django", "some_type")  # a task_queue task, same file
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(str(native))


def test_run_after_as_datetime_and_as_timedelta() -> None:
    later = timezone.now() + dt.timedelta(hours=1)
    at = tasks.add.using(run_after=later).enqueue(1, 1)
    assert at.task.run_after == later
    stored = tasks.add.get_result(at.id)
    assert abs((stored.task.run_after - later).total_seconds()) < 1e-3
    # Regression: Django documents a timedelta for run_after, but its own
    # validate_task() crashes on one under USE_TZ (6.1.3); this backend takes it.
    delayed = tasks.add.using(run_after=dt.timedelta(minutes=5)).enqueue(1, 1)
    queue = task_backends["default"].queue
    task = queue.get_task(int(delayed.id))
    assert 299 < task.run_at - task.created_at < 301
    with pytest.raises(InvalidTask, match="negative"):
        tasks.add.using(run_after=dt.timedelta(seconds=-1))
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=dt.datetime(2030, 1, 1))  # naive, under USE_TZ


@pytest.mark.parametrize("priority", [101, -101])
def test_priorities_out_of_range_are_refused(priority: int) -> None:
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=priority)


def test_queue_names_are_checked_against_queues() -> None:
    with pytest.raises(InvalidTask, match="not valid"):
        tasks.add.using(queue_name="nope")
    with pytest.raises(InvalidTask, match="queue name"):
        tasks.add.using(queue_name="has space", backend="shared")  # QUEUES empty: any name


def test_bad_task_options_are_refused() -> None:
    from task_queue.contrib.django import TaskQueueTask

    with pytest.raises(InvalidTask, match="max_retries"):
        TaskQueueTask(func=tasks.add.func, max_retries=-1)
    with pytest.raises(InvalidTask, match="timeout"):
        TaskQueueTask(func=tasks.add.func, timeout=0)


def test_payloads_that_are_not_json_are_refused_before_anything_is_written() -> None:
    queue = task_backends["default"].queue
    before = queue.get_queue_stats()
    with pytest.raises(TypeError):
        tasks.add.enqueue(object(), 1)
    assert queue.get_queue_stats() == before


@pytest.fixture
def lazy_queue(tmp_path: Path) -> Iterator[tuple[dict[str, str], Callable[[], bool]]]:
    """OPTIONS of a queue no one opened yet, and "has it been opened?": a
    file that does not exist yet, or (on PostgreSQL) an empty schema."""
    if BACKEND != "postgres":
        path = tmp_path / "lazy.db"
        yield {"path": str(path)}, path.exists
        return
    import psycopg

    url, drop = fresh_queue_uri(pg_dsn(), "djlazy")

    def opened() -> bool:
        with psycopg.connect(url) as conn:  # its search_path is the schema
            row = conn.execute("SELECT to_regclass('tasks') IS NOT NULL").fetchone()
        return bool(row and row[0])

    yield {"url": url}, opened
    close_all()
    drop()


def test_the_queue_opens_lazily_and_is_shared_by_threads(
    lazy_queue: tuple[dict[str, str], Callable[[], bool]],
) -> None:
    where, opened = lazy_queue
    lazy = {"BACKEND": "task_queue.contrib.django.TaskQueueBackend", "OPTIONS": where}
    with override_settings(TASKS={**__import__("django.conf").conf.settings.TASKS, "lazy": lazy}):
        made = tasks.add.using(backend="lazy")  # validate_task ran: nothing opened
        assert not opened()
        seen: list[Any] = []

        def enqueue() -> None:
            backend = task_backends["lazy"]
            backend.enqueue(made, [1, 2], {})
            seen.append((backend, backend.queue))

        threads = [threading.Thread(target=enqueue) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert opened()
        assert len({id(b) for b, _ in seen}) == 4  # Django: one backend per thread
        assert len({id(q) for _, q in seen}) == 1  # one TaskQueue per process and queue
        assert seen[0][1].get_queue_stats()["pending"] == 4
    close_all()


# -- system checks -------------------------------------------------------------------


BAD = [
    ({"OPTIONS": {"path": "x.db", "pathh": 1}}, "unknown OPTIONS ['pathh']"),
    ({"OPTIONS": {}}, 'OPTIONS["path"] (the SQLite file of the queue) or OPTIONS["url"]'),
    ({"OPTIONS": {"path": ""}}, 'OPTIONS["path"] must be a file path'),
    ({"OPTIONS": {"path": "x.db", "url": "postgresql://h/db"}}, 'both "path"'),
    ({"OPTIONS": {"path": "postgresql://h/db"}}, 'a PostgreSQL queue goes in OPTIONS["url"]'),
    ({"OPTIONS": {"path": "postgress://h/db"}}, "got a URL ('postgress://h/db')"),
    ({"OPTIONS": {"url": "sqlite:///x.db"}}, 'OPTIONS["url"] must be a PostgreSQL URI'),
    ({"OPTIONS": {"url": "host=h dbname=db"}}, 'OPTIONS["url"] must be a PostgreSQL URI'),
    ({"OPTIONS": {"url": ""}}, 'OPTIONS["url"] must be a PostgreSQL URI'),
    ({"OPTIONS": {"url": 5}}, 'OPTIONS["url"] must be a PostgreSQL URI'),
    ({"OPTIONS": {"path": "x.db", "max_retries": -1}}, "max_retries"),
    ({"OPTIONS": {"path": "x.db", "max_retries": True}}, "max_retries"),
    ({"OPTIONS": {"path": "x.db", "timeout": "5"}}, "timeout"),
    ({"OPTIONS": {"path": "x.db", "lease_seconds": 0}}, "lease_seconds"),
    ({"OPTIONS": {"path": "x.db", "modules": "a.b"}}, "modules"),
    ({"OPTIONS": "x.db"}, "OPTIONS must be a dict"),
    ({"OPTIONS": {"path": "x.db"}, "QUEUES": ["ok", "not ok"]}, "QUEUES"),
]


@pytest.mark.parametrize(("params", "message"), BAD, ids=[m for _, m in BAD])
def test_system_checks_report_bad_options(params: dict[str, Any], message: str) -> None:
    entry = {"BACKEND": "task_queue.contrib.django.TaskQueueBackend", **params}
    with override_settings(TASKS={"default": entry}):
        errors = [e for e in checks.run_checks() if e.id == "task_queue_django.E001"]
        assert len(errors) == 1 and message in errors[0].msg, errors
        from django.core.exceptions import ImproperlyConfigured

        with pytest.raises(ImproperlyConfigured, match="TASKS"):
            _ = task_backends["default"].queue


def test_a_password_in_a_url_is_not_shown_by_the_checks() -> None:
    for where in ({"url": "mysql://app:s3cret@h/db"}, {"path": "postgres://app:s3cret@h/db"}):
        entry = {"BACKEND": "task_queue.contrib.django.TaskQueueBackend", "OPTIONS": where}
        with override_settings(TASKS={"default": entry}):
            [error] = [e for e in checks.run_checks() if e.id == "task_queue_django.E001"]
            assert "app:***@h/db" in error.msg and "s3cret" not in error.msg
    assert shown("postgresql://app:s3cret@h/db?sslmode=require") == (
        "postgresql://app:***@h/db?sslmode=require"
    )
    assert shown("/srv/tasks.db") == "/srv/tasks.db"


def test_a_url_needs_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    found = problems({"OPTIONS": {"url": "postgresql://h/db"}})
    assert found == [
        'OPTIONS["url"] is a PostgreSQL queue, which needs psycopg: '
        "pip install 'task_queue[postgres]'"
    ]


def test_good_settings_pass_the_checks() -> None:
    assert [e for e in checks.run_checks() if e.id.startswith("task_queue")] == []


@pytest.mark.sqlite_only("a file path")
def test_path_may_be_a_pathlib_path(tmp_path: Path) -> None:
    # Regression: the README's `"path": BASE_DIR / "tasks.db"` failed the checks (str only).
    entry = {
        "BACKEND": "task_queue.contrib.django.TaskQueueBackend",
        "OPTIONS": {"path": tmp_path / "tasks.db"},
    }
    with override_settings(TASKS={"default": entry}):
        assert [e for e in checks.run_checks() if e.id.startswith("task_queue")] == []
        assert task_backends["default"].queue.path == str(tmp_path / "tasks.db")
    close_all()


def test_the_app_label_does_not_clash_with_django() -> None:
    from django.apps import apps

    assert apps.get_app_config("task_queue_django").name == "task_queue.contrib.django"
    assert isinstance(task_backends["default"], TaskQueueBackend)


# -- transactions -----------------------------------------------------------------------------


@pytest.mark.sqlite_only("joins Django's transaction on the queue's SQLite file")
@pytest.mark.django_db(transaction=True)
def test_inside_atomic_on_the_same_file_the_task_joins_the_transaction(signals_log: Path) -> None:
    shared = tasks.add.using(backend="shared")
    # Opened outside the transaction: creating its tables needs the write
    # lock, which an IMMEDIATE transaction of Django's holds.
    queue = task_backends["shared"].queue
    with pytest.raises(RuntimeError, match="roll back"), transaction.atomic():
        Order.objects.create(item="gone")
        gone = shared.enqueue(1, 2)
        assert gone.enqueued_at is None  # not enqueued until the commit
        raise RuntimeError("roll back")
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["shared"].get_result(gone.id)
    assert signals(signals_log) == []
    with transaction.atomic():
        Order.objects.create(item="kept")
        kept = shared.enqueue(3, 4)
        assert queue.get_task(int(kept.id)) is None  # the queue's connection cannot see it yet
        assert signals(signals_log) == []  # task_enqueued waits for the commit
    stored = task_backends["shared"].get_result(kept.id)
    assert stored.status == TaskResultStatus.READY and stored.enqueued_at is not None
    assert [(s["signal"], s["id"]) for s in signals(signals_log)] == [("enqueued", kept.id)]
    assert list(Order.objects.values_list("item", flat=True)) == ["kept"]
    assert queue.get_queue_stats()["pending"] == 1


@pytest.mark.sqlite_only("joins Django's transaction on the queue's SQLite file")
@pytest.mark.django_db(transaction=True)
def test_a_nested_atomic_rolled_back_takes_its_task_along() -> None:
    shared = tasks.add.using(backend="shared")
    task_backends["shared"].queue  # noqa: B018 - opened (its tables made) outside the transaction
    with transaction.atomic():
        outer = shared.enqueue(1, 1)
        try:
            with transaction.atomic():
                inner = shared.enqueue(2, 2)
                raise RuntimeError("inner")
        except RuntimeError:
            pass
    backend = task_backends["shared"]
    assert backend.get_result(outer.id).status == TaskResultStatus.READY
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(inner.id)


@pytest.mark.django_db(transaction=True)
def test_on_another_queue_the_task_commits_at_once_so_use_on_commit() -> None:
    # The default alias's queue is queue.db, not Django's database (or, with
    # TASK_QUEUE_TEST_BACKEND=postgres, a PostgreSQL schema): an enqueue
    # inside atomic() commits at once and survives a rollback.
    with pytest.raises(RuntimeError), transaction.atomic():
        early = tasks.add.enqueue(1, 1)
        raise RuntimeError("roll back")
    assert tasks.add.get_result(early.id).status == TaskResultStatus.READY
    # The documented remedy: enqueue from transaction.on_commit().
    made: list[str] = []
    with pytest.raises(RuntimeError), transaction.atomic():
        transaction.on_commit(lambda: made.append(tasks.add.enqueue(2, 2).id))
        raise RuntimeError("roll back")
    assert made == []
    with transaction.atomic():
        transaction.on_commit(lambda: made.append(tasks.add.enqueue(3, 3).id))
        assert made == []
    assert len(made) == 1 and tasks.add.get_result(made[0]).args == [3, 3]


@pytest.mark.django_db(transaction=True)
def test_a_postgresql_queue_never_looks_at_djangos_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Untouchable:
        def __getitem__(self, alias: str) -> Any:
            raise AssertionError(f"Django's connection {alias!r} was looked at")

    with transaction.atomic():
        monkeypatch.setattr(transactions, "connections", Untouchable())
        assert transactions.joinable("postgresql://app@db.internal/app") is None
        assert (
            transactions.joinable("postgres://app@db.internal/app?options=-csearch_path%3Dq")
            is None
        )
        if BACKEND == "postgres":  # the default alias's queue is on PostgreSQL: a real enqueue
            made = tasks.add.enqueue(1, 2)
            assert made.enqueued_at is not None  # committed at once, not at the block's end
            monkeypatch.undo()
            assert task_backends["default"].queue.get_task(int(made.id)) is not None


@pytest.mark.sqlite_only("the shared alias is Django's SQLite file")
@pytest.mark.django_db(transaction=True)
def test_the_queue_of_the_shared_alias_is_djangos_database_file() -> None:
    from django.db import connection

    assert os.path.samefile(task_backends["shared"].queue.path, connection.settings_dict["NAME"])


def test_aenqueue_and_aget_result_call_enqueue_and_get_result_by_keyword() -> None:
    import asyncio

    async def main() -> tuple[Any, Any]:
        made = await tasks.add.aenqueue(5, 6)
        return made, await tasks.add.aget_result(made.id)

    made, read = asyncio.run(main())
    assert made.status == read.status == TaskResultStatus.READY
    assert read.args == [5, 6] and read.id == made.id
