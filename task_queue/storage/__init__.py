"""Storage backends behind the contract in :mod:`.base`."""

from .base import (
    ChangeFeed,
    ClaimRequest,
    Completion,
    FailureRecord,
    NewTask,
    Owner,
    Rescue,
    Storage,
)
from .postgres import PostgresStorage  # psycopg is imported only when one is made
from .sqlite import SqliteStorage

__all__ = [
    "ChangeFeed",
    "ClaimRequest",
    "Completion",
    "FailureRecord",
    "NewTask",
    "Owner",
    "PostgresStorage",
    "Rescue",
    "SqliteStorage",
    "Storage",
]
