"""TaskQueueBackend: Django's Tasks framework on a task_queue file or
PostgreSQL database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, transaction

from ...checks import check_queue_name, is_positive
from ...queue import TaskQueue
from . import options as backend_options
from . import registry, results
from .compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from .errors import UnknownTaskError
from .options import BackendOptions
from .queues import queue_for
from .transactions import joinable


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskQueueTask(Task):
    """The backend's Task: Django's, plus two options of its own, set with
    ``@task(max_retries=3, timeout=60)`` (``task`` passes extra keywords to
    the backend's ``task_class``). None: the backend's OPTIONS decide."""

    #: Retries after the first attempt (default: OPTIONS["max_retries"], 0).
    max_retries: int | None = None
    #: Seconds an attempt may run (default: OPTIONS["timeout"], no limit).
    timeout: float | None = None


class TaskQueueBackend(BaseTaskBackend):
    """A Django Tasks backend storing tasks in a task_queue SQLite file or
    PostgreSQL database, run by ``manage.py task_queue_worker``. See
    :mod:`task_queue.contrib.django`."""

    task_class = TaskQueueTask
    #: ``run_after``: an aware datetime (a naive one without USE_TZ), or a
    #: timedelta from the enqueue.
    supports_defer = True
    #: ``async def`` tasks (run through async_to_sync in a worker thread).
    supports_async_task = True
    supports_get_result = True
    #: Any int from -100 to 100, stored exactly; higher runs first.
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        """Made by Django per thread and alias: cheap, opens nothing."""
        super().__init__(alias, params)
        self._params = params
        self._options: BackendOptions | None = None

    # -- settings --------------------------------------------------------------
    @property
    def backend_options(self) -> BackendOptions:
        """The OPTIONS, checked (ImproperlyConfigured if they are wrong)."""
        if self._options is None:
            found = backend_options.problems(self._params)
            if found:
                raise ImproperlyConfigured(f"TASKS[{self.alias!r}]: " + "; ".join(found))
            self._options = backend_options.parse(self._params)
        return self._options

    @property
    def queue(self) -> TaskQueue:
        """The TaskQueue of this backend's file or URI (one per process and queue)."""
        return queue_for(self.backend_options)

    def check(self, **kwargs: Any) -> list[Any]:
        """System checks (``manage.py check``): every problem of OPTIONS and QUEUES."""
        return [
            checks.Error(
                f"TASKS[{self.alias!r}]: {problem}",
                obj=f"TASKS[{self.alias!r}]",
                id="task_queue_django.E001",
            )
            for problem in backend_options.problems(self._params)
        ]

    # -- the contract --------------------------------------------------------------
    def validate_task(self, task: Any) -> None:
        """Django's checks, plus: a queue name the queue can store, the
        backend's task options, and ``run_after`` as a timedelta (which
        Django documents but its own check cannot handle under USE_TZ).
        A valid Task is registered here (see :mod:`.registry`)."""
        run_after = task.run_after
        if isinstance(run_after, dt.timedelta):
            if run_after < dt.timedelta(0):
                raise InvalidTask("run_after must not be a negative timedelta.")
            super().validate_task(results.restored(task, run_after=None))
        else:
            super().validate_task(task)
        try:
            check_queue_name(task.queue_name)
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None
        retries = getattr(task, "max_retries", None)
        if retries is not None and (
            isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
        ):
            raise InvalidTask(f"max_retries must be an int >= 0, got {retries!r}.")
        timeout = getattr(task, "timeout", None)
        if timeout is not None and not is_positive(timeout):
            raise InvalidTask(f"timeout must be seconds > 0, got {timeout!r}.")
        registry.register(task)

    def enqueue(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """Store the task; its TaskResult (READY) once it is committed.

        Inside ``transaction.atomic()`` on Django's default database, when
        that database is the queue's SQLite file, the task joins the
        transaction: it exists once the outermost block commits
        (``task_enqueued`` is sent then; the result's ``enqueued_at`` is
        None until refreshed), and not at all on rollback. Elsewhere (a
        PostgreSQL queue included) it commits at once.
        """
        self.validate_task(task)
        spec = self._spec(task, args, kwargs)
        queue = self.queue
        connection = joinable(queue.path)
        if connection is None:
            [task_id] = queue.enqueue_many([spec])
            stored = queue.get_task(task_id)
            assert stored is not None
            result = results.build(stored, [], task, self.alias)
            object.__setattr__(result, "task", task)  # the Task enqueued, as Django's backends do
            task_enqueued.send(sender=type(self), task_result=result)
            return result
        [task_id] = queue.enqueue_many([spec], connection=connection)

        def committed() -> None:
            task_enqueued.send(sender=type(self), task_result=self.get_result(str(task_id)))

        transaction.on_commit(committed, using=DEFAULT_DB_ALIAS)
        return self._uncommitted(task, task_id, spec)

    def get_result(self, result_id: str) -> Any:
        """The TaskResult of a task as stored now; TaskResultDoesNotExist for
        an unknown id (or a task that is not a Django task)."""
        try:
            task_id = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        queue = self.queue
        stored = queue.get_task(task_id) if 0 < task_id < 2**63 else None
        alias = None if stored is None else results.alias_of(stored)
        if stored is None or alias is None:
            raise TaskResultDoesNotExist(result_id)
        template = registry.lookup(stored.task_type)
        if template is None:
            registry.discover(self.backend_options.modules)
            template = registry.lookup(stored.task_type)
        if template is None:
            raise UnknownTaskError(
                f"task {task_id} runs {stored.task_type!r}, which no imported module defines "
                "in this process (installed apps' tasks modules and OPTIONS['modules'] are "
                "imported to find it)"
            )
        history = queue.attempts(task_id) if stored.attempts else []
        return results.build(stored, history, template, alias)

    # -- helpers -------------------------------------------------------------------
    def _spec(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        options = self.backend_options
        retries = getattr(task, "max_retries", None)
        timeout = getattr(task, "timeout", None)
        spec: dict[str, Any] = {
            "name": task.name,
            "task_type": task.module_path,
            "payload": {"args": normalize_json(list(args)), "kwargs": normalize_json(dict(kwargs))},
            "priority": int(task.priority),
            "queue_name": task.queue_name,
            "max_retries": options.max_retries if retries is None else retries,
            "timeout": options.timeout if timeout is None else timeout,
            "meta": {results.META_KEY: {"backend": self.alias}},
        }
        if isinstance(task.run_after, dt.timedelta):
            spec["delay"] = task.run_after
        elif task.run_after is not None:
            spec["scheduled_at"] = task.run_after
        return spec

    def _uncommitted(self, task: Any, task_id: int, spec: dict[str, Any]) -> Any:
        return TaskResult(
            task=task,
            id=str(task_id),
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=spec["payload"]["args"],
            kwargs=spec["payload"]["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
