"""Errors of the Django backend (each a :class:`~task_queue.TaskQueueError`)."""

from __future__ import annotations

from ...errors import TaskQueueError


class AttemptLost(TaskQueueError):
    """In ``TaskResult.errors``: the attempt's worker died or stopped renewing
    its claim, and the task was rescued (run again, or failed for good when
    out of retries). Never raised: the class names the failure."""


class UnknownTaskError(TaskQueueError, LookupError):
    """A stored task whose function is not registered in this process: the
    module defining it was not imported (each installed app's ``tasks``
    module is, and OPTIONS["modules"]), or it was renamed since."""
