"""The ``sender`` of the backend's signals: the backend class of the TASKS
alias a task was enqueued through, as Django's own backends send
``type(self)``."""

from __future__ import annotations

from typing import Any

from .compat import task_backends


def sender_of(alias: str) -> Any:
    """The backend class configured for ``alias`` (TaskQueueBackend if the
    alias is gone from the settings)."""
    try:
        return type(task_backends[alias])
    except Exception:
        from .backend import TaskQueueBackend

        return TaskQueueBackend
