"""Helpers for testing your own tasks: run what is due, here and now.

    from task_queue.testing import drain

    def test_signup_sends_the_welcome_email(tq_queue):
        signup(tq_queue, "ada@example.com")          # your code enqueues
        report = drain(tq_queue, handlers)            # runs it, in this thread
        assert report.completed_ids == [1]

:func:`drain` claims, runs and records each due task in the calling thread,
one at a time, through the same claim, complete and fail operations a Worker
uses (fenced, in the database: no "eager mode" that skips the file), until
nothing is due. Scheduled tasks and retries are due by the queue's clock: on
a :class:`~task_queue.ManualClock`, ``clock.advance(seconds)`` and drain
again, or ``drain(..., until_idle=True)`` to move the clock to each next due
time until nothing is left to run.

The pytest plugin (:mod:`task_queue.pytest_plugin`, loaded automatically
once task_queue is installed) gives fixtures: ``tq_queue``, a fresh
TaskQueue on a temporary file (on the ``tq_clock`` ManualClock when the test
asks for that fixture too).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .clock import ManualClock
from .context import TaskContext, _set_current
from .events import Event, EventKind
from .queue import TaskQueue
from .registry import HandlerRegistry, as_registry, is_coroutine_handler
from .task import Task

__all__ = ["DrainReport", "drain"]


@dataclasses.dataclass
class DrainReport:
    """What :func:`drain` ran, attempt by attempt, as each task was claimed."""

    #: Attempts that completed (the task as claimed; its result is stored).
    completed: list[Task] = dataclasses.field(default_factory=list)
    #: Attempts that failed and left a retry scheduled (pending again).
    retried: list[Task] = dataclasses.field(default_factory=list)
    #: Attempts that failed for good (the task is ``failed``).
    failed: list[Task] = dataclasses.field(default_factory=list)
    #: The errors of the failed attempts, by task id (the latest of each).
    errors: dict[int, BaseException] = dataclasses.field(default_factory=dict)
    #: When the next pending task falls due (epoch seconds), None if none waits.
    next_due: float | None = None

    @property
    def completed_ids(self) -> list[int]:
        """Ids of the tasks completed, in the order they ran."""
        return [t.id for t in self.completed]

    @property
    def retried_ids(self) -> list[int]:
        """Ids of the tasks whose attempt failed with a retry left."""
        return [t.id for t in self.retried]

    @property
    def failed_ids(self) -> list[int]:
        """Ids of the tasks that failed for good."""
        return [t.id for t in self.failed]

    @property
    def attempts(self) -> int:
        """How many attempts ran."""
        return len(self.completed) + len(self.retried) + len(self.failed)


def drain(
    queue: TaskQueue,
    handlers: HandlerRegistry | Mapping[str, Callable[[Any], Any]] | None = None,
    *,
    queues: Sequence[str] | None = None,
    until_idle: bool = False,
    max_attempts: int = 10_000,
    raise_errors: bool = False,
) -> DrainReport:
    """Run every due task the handlers handle, in this thread, until none
    is due; return what happened.

    handlers: a HandlerRegistry or a mapping of task type to function
        (default ``TASK_HANDLERS``); only their types are claimed.
        ``async def`` handlers run on a new event loop per attempt (from a
        coroutine, drain in a thread: ``await asyncio.to_thread(drain, ...)``).
    queues: only these named queues (None: all).
    until_idle: on a ManualClock, move the clock forward to each next due
        time (scheduled tasks, retry backoffs) and keep going until no
        pending task is left. With another clock this raises ValueError:
        drain never sleeps.
    max_attempts: stop with RuntimeError past this many (a task that
        enqueues itself forever).
    raise_errors: re-raise the first handler error at the end (after
        recording it as the Worker would) instead of only reporting it.

    Each attempt is claimed, then completed or failed through the queue
    (retry policy, max_retries and middleware of its handler apply, and
    ``current_task()`` works); the timeout is the context's deadline only
    (``ctx.check()``), nothing interrupts the handler.
    """
    registry = as_registry(handlers)
    if until_idle and not isinstance(queue.clock, ManualClock):
        raise ValueError("until_idle=True needs the queue on a ManualClock (drain never sleeps)")
    report = DrainReport()
    while True:
        while _run_one(queue, registry, queues, report):
            if report.attempts >= max_attempts:
                raise RuntimeError(f"drain() stopped after {max_attempts} attempts")
        report.next_due = queue.next_due()
        if not until_idle or report.next_due is None:
            break
        clock = queue.clock
        assert isinstance(clock, ManualClock)
        clock.advance(max(0.0, report.next_due - clock.time()))
    if raise_errors and report.errors:
        raise next(iter(report.errors.values()))
    return report


def _run_one(
    queue: TaskQueue,
    registry: HandlerRegistry,
    queues: Sequence[str] | None,
    report: DrainReport,
) -> bool:
    types = list(registry)
    if not types:
        return False
    claimed = queue.claim(1, worker_id="task_queue.testing.drain", task_types=types,
                          queues=queues, remember=False)  # fmt: skip
    if not claimed:
        return False
    task = claimed[0]
    fn = registry[task.task_type]
    options = registry.options(task.task_type)
    timeout = task.timeout if task.timeout is not None else options.timeout
    mono = queue.clock.monotonic
    deadline = None if timeout is None else mono() + timeout

    def progress(t: Task, value: dict[str, Any]) -> None:
        queue.record_progress([(t, value)])  # at once: nothing batches them here

    ctx = TaskContext(task, deadline, mono, queue=queue, on_progress=progress)
    if queue.hooks:
        queue.hooks.emit(Event(EventKind.STARTED, task.id, task=task, worker="drain",
                               at=queue.clock.time()))  # fmt: skip
    started = time.monotonic()
    _set_current(ctx)
    try:
        result = _call(queue, task, fn)
    except BaseException as exc:  # as a Worker does: SystemExit fails the attempt too
        failure = queue.failure(
            task, exc, retry_policy=options.retry_policy, max_retries=options.max_retries
        )
        if queue.hooks:
            queue.hooks.emit(Event(EventKind.FAILED, task.id, task=task, worker="drain",
                                   at=queue.clock.time(), duration=time.monotonic() - started,
                                   error=failure.error, exception=exc))  # fmt: skip
        queue.record_failure(task, failure)
        report.errors[task.id] = exc
        (report.failed if failure.retry_in is None else report.retried).append(task)
        return True
    finally:
        _set_current(None)
    if queue.complete_task(task, result):
        report.completed.append(task)
    return True


def _call(queue: TaskQueue, task: Task, fn: Callable[[Any], Any]) -> Any:
    if is_coroutine_handler(fn):
        return asyncio.run(queue.hooks.arun_attempt(task, lambda: fn(task.payload)))
    return queue.hooks.run_attempt(task, functools.partial(fn, task.payload))
