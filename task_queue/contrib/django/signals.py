"""``task_finished``, sent from the queue's hook once a final outcome is
committed: the TaskResult it carries is read back from the database, so its
status (SUCCESSFUL or FAILED), ``finished_at``, errors and return value are
what is stored, never what a crash could still undo.

Final outcomes are the events ``completed``, ``dead_lettered`` (failed for
good), ``rescued`` to failed (its worker died on its last attempt) and
``cancelled``; a failed attempt that will be retried is not finished (its
task is READY again). The hook runs in the thread that committed the
outcome (a Worker's recorder or dispatcher, or the caller of
``cancel_task()``): receivers should be quick. Django database connections
they open there are closed afterwards when unusable or too old.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections

from ...events import Event, EventKind
from ...queue import TaskQueue
from . import results
from .compat import task_finished
from .senders import sender_of

LOGGER = logging.getLogger(__name__)

_FINAL = frozenset({EventKind.COMPLETED, EventKind.DEAD_LETTERED, EventKind.CANCELLED})


class FinishedSignal:
    """A hook on one TaskQueue: sends ``task_finished`` for its Django tasks."""

    def __init__(self, queue: TaskQueue, template_for: Callable[[str], Any]) -> None:
        """``template_for(task_type)`` finds the registered Django Task (or None)."""
        self._queue = queue
        self._template_for = template_for

    def __call__(self, event: Event) -> None:
        """Called with every event of the queue; acts on final outcomes."""
        final = event.kind in _FINAL or (
            event.kind is EventKind.RESCUED and event.status == "failed"
        )
        if not final:
            return
        task = self._queue.get_task(event.task_id)
        if task is None or not task.status.finished:
            return  # purged, or already put back by retry_task()
        alias = results.alias_of(task)
        if alias is None:
            return  # not a Django task
        template = self._template_for(task.task_type)
        if template is None:
            LOGGER.warning(
                "task %d (%s) finished, but no Django task is registered for it in this "
                "process: task_finished not sent",
                task.id,
                task.task_type,
            )
            return
        result = results.build(task, self._queue.attempts(task.id), template, alias)
        try:
            task_finished.send(sender=sender_of(alias), task_result=result)
        finally:
            close_old_connections()
