"""The backend's ``OPTIONS``, checked once: the same checks raise at first
use (ImproperlyConfigured) and report as system checks (``manage.py
check``), so a bad setting is found at deploy time, not at the first task.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ...checks import check_queue_name, is_positive

#: Every key OPTIONS may hold (anything else is reported, as a typo would be).
KNOWN = ("path", "max_retries", "timeout", "lease_seconds", "modules")


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """What a ``TASKS`` entry's OPTIONS say, with defaults filled in."""

    #: The queue's SQLite file (created if missing). The same file as
    #: DATABASES["default"] makes enqueues inside ``transaction.atomic()``
    #: join the transaction.
    path: str
    #: Retries after the first attempt, for tasks whose ``@task`` does not
    #: say (default 0: Django's own backends do not retry).
    max_retries: int = 0
    #: Seconds an attempt may run (None: no limit), unless ``@task`` says.
    timeout: float | None = None
    #: How long a claim lasts without renewal (a dead worker's task is
    #: run again this long after its last heartbeat).
    lease_seconds: float = 30.0
    #: Modules the worker imports so the tasks they define register,
    #: besides each installed app's ``tasks`` module.
    modules: tuple[str, ...] = ()


def problems(params: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a TASKS entry (its OPTIONS and QUEUES); empty if
    nothing is."""
    found: list[str] = []
    options = params.get("OPTIONS", {})
    if not isinstance(options, Mapping):
        return [f"OPTIONS must be a dict, got {type(options).__name__}"]
    unknown = sorted(str(key) for key in options if key not in KNOWN)
    if unknown:
        found.append(f"unknown OPTIONS {unknown}; known: {list(KNOWN)}")
    path = options.get("path")
    if isinstance(path, os.PathLike):  # BASE_DIR / "tasks.db", as Django's settings write paths
        path = os.fspath(path)
    if path is None:
        found.append('OPTIONS["path"] is required: the SQLite file of the queue')
    elif not isinstance(path, str) or not path or path == ":memory:":
        found.append(f'OPTIONS["path"] must be a file path (a non-empty str or Path), got {path!r}')
    retries = options.get("max_retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        found.append(f'OPTIONS["max_retries"] must be an int >= 0, got {retries!r}')
    timeout = options.get("timeout")
    if timeout is not None and not is_positive(timeout):
        found.append(f'OPTIONS["timeout"] must be seconds > 0 or None, got {timeout!r}')
    lease = options.get("lease_seconds", 30.0)
    if not is_positive(lease):
        found.append(f'OPTIONS["lease_seconds"] must be seconds > 0, got {lease!r}')
    modules = options.get("modules", ())
    if (
        isinstance(modules, str)
        or not isinstance(modules, (list, tuple))
        or not all(isinstance(m, str) and m for m in modules)
    ):
        found.append(f'OPTIONS["modules"] must be a list of module names, got {modules!r}')
    for name in params.get("QUEUES", ()):
        try:
            check_queue_name(name)
        except (TypeError, ValueError) as exc:
            found.append(f"QUEUES: {exc}")
    return found


def parse(params: Mapping[str, Any]) -> BackendOptions:
    """The options of a TASKS entry that :func:`problems` found nothing wrong with."""
    options = params.get("OPTIONS", {})
    timeout = options.get("timeout")
    return BackendOptions(
        path=os.fspath(options["path"]),
        max_retries=options.get("max_retries", 0),
        timeout=None if timeout is None else float(timeout),
        lease_seconds=float(options.get("lease_seconds", 30.0)),
        modules=tuple(options.get("modules", ())),
    )
