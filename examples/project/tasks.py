"""The handlers of a small project, for ``task-queue worker tasks``.

Importing this module registers them in ``TASK_HANDLERS`` (the default
registry the command uses). Run from this directory:

    python enqueue.py                  # adds a few tasks to taskqueue.db, prints their ids
    task-queue worker tasks --burst    # runs them, exits once nothing is left
    task-queue list                    # what happened

(``python -m task_queue`` works wherever ``task-queue`` does.)
"""

from __future__ import annotations

from typing import Any

from task_queue import RetryPolicy, current_task, handler


@handler("greet")
def greet(payload: dict[str, Any]) -> dict[str, Any]:
    """Build a greeting: the result is stored on the task."""
    return {"greeting": f"Hello, {payload['name']}!"}


# A short backoff so the example does not wait long for its retry.
@handler("flaky_sum", retry_policy=RetryPolicy(base=0.01, cap=0.05))
def flaky_sum(payload: dict[str, Any]) -> int:
    """Add the numbers, failing the first attempt (a transient fault) to show a retry."""
    ctx = current_task()
    if ctx is not None and ctx.task.attempts == 1:
        raise ConnectionError("the adding service is unavailable (simulated)")
    return sum(payload["numbers"])
