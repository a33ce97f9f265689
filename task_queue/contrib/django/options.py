"""The backend's ``OPTIONS``, checked once: the same checks raise at first
use (ImproperlyConfigured) and report as system checks (``manage.py
check``), so a bad setting is found at deploy time, not at the first task.

Where the queue lives is one of two keys:

* ``"path"``: a SQLite file (a str or a ``pathlib.Path``), created if
  missing; the same file as ``DATABASES["default"]`` lets enqueues join
  Django's transactions.
* ``"url"``: a PostgreSQL URI, ``postgresql://user@host/db`` (or
  ``postgres://``), with libpq's query parameters (``?options=-csearch_path%3Djobs``
  puts the queue in the schema ``jobs``, which must exist). Needs
  ``task_queue[postgres]``.

Why a second key rather than a URI in ``"path"`` (which ``TaskQueue()``
and the CLI's ``--db`` accept): a Django setting names a server it
connects to ``url`` (``DATABASE_URL`` for dj-database-url, django-rq's
``URL``, Huey's ``url`` beside its SQLite ``filename``), and a server is
not a path. Kept apart, each is checked for what it is: a mistyped scheme
in ``"path"`` (``"postgress://..."``) is reported instead of silently
becoming a SQLite file in a directory named ``postgress:``, and a ``"url"``
that is not a PostgreSQL URI (a ``host=... dbname=...`` string, a
``sqlite://`` URL) is refused instead of being opened as a file. Giving
both, or neither, is reported too. ``"path"`` is what it always was.

A URI is shown with its password hidden in these messages and in the
worker's banner; keep the password out of settings anyway (``PGPASSWORD``,
``~/.pgpass``, a service file): Django's debug page shows settings and
hides only keys named like a secret (``PASSWORD``, ``KEY``...), not ``url``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections.abc import Mapping
from typing import Any

from ...checks import check_queue_name, is_positive
from ...queue import is_postgres_dsn

#: Every key OPTIONS may hold (anything else is reported, as a typo would be).
KNOWN = ("path", "url", "max_retries", "timeout", "lease_seconds", "modules")

#: ``scheme://``: a URL, not a file path.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """What a ``TASKS`` entry's OPTIONS say, with defaults filled in."""

    #: What the queue opens, as ``TaskQueue(path)`` takes it: the SQLite
    #: file of OPTIONS["path"] (created if missing; the same file as
    #: DATABASES["default"] makes enqueues inside ``transaction.atomic()``
    #: join the transaction), or the PostgreSQL URI of OPTIONS["url"].
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

    @property
    def postgres(self) -> bool:
        """Is the queue on PostgreSQL (OPTIONS["url"])?"""
        return is_postgres_dsn(self.path)


def shown(location: str) -> str:
    """A queue's file or URI as printed: a URI without its password."""
    if _URL.match(location):
        from ...storage.postgres.storage import redact_dsn

        return redact_dsn(location)
    return location


def _where(options: Mapping[str, Any]) -> list[str]:
    """What is wrong with OPTIONS["path"] / OPTIONS["url"]."""
    path, url = options.get("path"), options.get("url")
    if path is not None and url is not None:
        return [
            'OPTIONS has both "path" (a SQLite file) and "url" (a PostgreSQL URI): '
            "give the one the queue lives in"
        ]
    if url is not None:
        if not isinstance(url, str) or not is_postgres_dsn(url):
            got = shown(url) if isinstance(url, str) else url
            return [
                'OPTIONS["url"] must be a PostgreSQL URI (postgresql://user@host/dbname or '
                f"postgres://...), got {got!r}"
            ]
        missing = [m for m in ("psycopg", "psycopg_pool") if importlib.util.find_spec(m) is None]
        if missing:
            return [
                f'OPTIONS["url"] is a PostgreSQL queue, which needs {" and ".join(missing)}: '
                "pip install 'task_queue[postgres]'"
            ]
        return []
    if isinstance(path, os.PathLike):  # BASE_DIR / "tasks.db", as Django's settings write paths
        path = os.fspath(path)
    if path is None:
        return [
            'OPTIONS["path"] (the SQLite file of the queue) or OPTIONS["url"] '
            "(a PostgreSQL URI) is required"
        ]
    if not isinstance(path, str) or not path or path == ":memory:":
        return [f'OPTIONS["path"] must be a file path (a non-empty str or Path), got {path!r}']
    if _URL.match(path):
        return [
            f'OPTIONS["path"] is the SQLite file of the queue, got a URL ({shown(path)!r}): '
            'a PostgreSQL queue goes in OPTIONS["url"]'
        ]
    return []


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
    found.extend(_where(options))
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
    url = options.get("url")
    return BackendOptions(
        path=os.fspath(options["path"]) if url is None else url,
        max_retries=options.get("max_retries", 0),
        timeout=None if timeout is None else float(timeout),
        lease_seconds=float(options.get("lease_seconds", 30.0)),
        modules=tuple(options.get("modules", ())),
    )
