"""The tasks the tests enqueue (found by the worker through autodiscovery)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from task_queue.contrib.django.compat import FRAMEWORK

if FRAMEWORK == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task


class Boom(Exception):
    """What the failing tasks raise."""


@task
def add(a: int, b: int) -> int:
    return a + b


@task(priority=10, queue_name="emails")
def send_email(to: str) -> dict[str, Any]:
    return {"sent": to}


@task(max_retries=2)
def always_fails() -> None:
    raise Boom("always")


@task(takes_context=True, max_retries=1)
def fails_once(context: Any) -> int:
    if context.attempt == 1:
        raise Boom("first attempt")
    return int(context.attempt)


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


@task
def record(path: str, label: str) -> str:
    """Append ``label`` to the file at ``path`` (the order tasks ran in)."""
    with open(path, "a") as out:
        out.write(label + "\n")
    return label


@task
def wait_for_file(path: str, seconds: float = 30.0) -> str:
    """Create ``path + '.started'``, then wait for ``path`` to exist."""
    open(path + ".started", "w").close()
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return "released"
