"""Receivers of the three signals: one JSON line per signal in SIGNALS_LOG
(the test reads it, also from worker processes)."""

from __future__ import annotations

import json
import os

from django.conf import settings
from django.dispatch import receiver

from task_queue.contrib.django.compat import task_enqueued, task_finished, task_started


def _log(kind: str, result: object) -> None:
    line = {
        "signal": kind,
        "id": result.id,  # type: ignore[attr-defined]
        "status": str(result.status),  # type: ignore[attr-defined]
        "attempts": result.attempts,  # type: ignore[attr-defined]
        "errors": [e.exception_class_path for e in result.errors],  # type: ignore[attr-defined]
        "finished": result.finished_at is not None,  # type: ignore[attr-defined]
        "pid": os.getpid(),
    }
    with open(settings.SIGNALS_LOG, "a") as out:
        out.write(json.dumps(line) + "\n")


@receiver(task_enqueued)
def on_enqueued(sender: object, task_result: object, **kwargs: object) -> None:
    _log("enqueued", task_result)


@receiver(task_started)
def on_started(sender: object, task_result: object, **kwargs: object) -> None:
    _log("started", task_result)


@receiver(task_finished)
def on_finished(sender: object, task_result: object, **kwargs: object) -> None:
    _log("finished", task_result)
