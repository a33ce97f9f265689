"""Joining the application's transaction: when Django's default database is
the queue's own SQLite file, an enqueue inside ``transaction.atomic()``
goes in through Django's connection, in its transaction (the core's
``enqueue(connection=...)``): a rollback leaves no task, and workers see
it only once the outermost block commits.

Otherwise (another database, another file, a queue on PostgreSQL, even in
Django's own PostgreSQL database) an enqueue commits at once, whatever the
atomic block does later; defer it with ``transaction.on_commit(lambda:
my_task.enqueue(...))`` when the task must not run for a transaction that
rolls back. A PostgreSQL queue enqueues through its own pool of
connections: Django's is never looked at.
"""

from __future__ import annotations

import os
import sqlite3

from django.db import DEFAULT_DB_ALIAS, connections

from ...queue import is_postgres_dsn


def django_db_file() -> str | None:
    """The file of Django's default database if it is SQLite on a file."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return name


def same_file(a: str, b: str) -> bool:
    """Do two paths name one existing file (device and inode)?"""
    try:
        first, second = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def joinable(queue_path: str) -> sqlite3.Connection | None:
    """Django's raw sqlite3 connection, when this thread is inside an atomic
    block of the default database and that database is the queue's file;
    None at once for a PostgreSQL queue (its URI is no file to compare)."""
    if is_postgres_dsn(queue_path):
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "sqlite" or not connection.in_atomic_block:
        return None
    database = django_db_file()
    if database is None or not same_file(database, queue_path):
        return None
    connection.ensure_connection()
    raw = connection.connection
    return raw if isinstance(raw, sqlite3.Connection) else None
