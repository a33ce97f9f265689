"""Which function runs a stored Django task: a registry filled as Task
objects are created.

``@task`` creates a Task when its module is imported, and Django asks the
backend to validate it then: that is when it is registered here, under its
module path (the task type stored in the queue). A worker imports each
installed app's ``tasks`` module (and OPTIONS["modules"]) to fill the
registry before it claims anything; the path read from the database is only
ever looked up here, never imported: whoever can write to the queue file
must not be able to choose code to run.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from typing import Any

from django.utils.module_loading import autodiscover_modules

_lock = threading.Lock()
_tasks: dict[str, Any] = {}


def register(task: Any) -> None:
    """Remember ``task`` (a Django Task) as the one for its module path."""
    path = task.module_path
    with _lock:
        known = _tasks.get(path)
        # .using() makes copies of one Task (same function): keep the first,
        # the one @task made. A reloaded module brings a new function.
        if known is None or known.func is not task.func:
            _tasks[path] = task


def lookup(path: str) -> Any | None:
    """The Task registered for ``path``, or None."""
    return _tasks.get(path)


def discover(modules: Iterable[str] = ()) -> None:
    """Import every installed app's ``tasks`` module, then ``modules``: the
    Tasks they define register themselves."""
    autodiscover_modules("tasks")
    for name in modules:
        importlib.import_module(name)


def registered() -> dict[str, Any]:
    """Module path -> Task, of every Task registered so far."""
    with _lock:
        return dict(_tasks)
