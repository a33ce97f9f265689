"""The SQLite backend: one database file shared by threads and processes."""

from .storage import SqliteStorage

__all__ = ["SqliteStorage"]
