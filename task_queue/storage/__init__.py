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
from .sqlite import SqliteStorage

__all__ = [
    "ChangeFeed",
    "ClaimRequest",
    "Completion",
    "FailureRecord",
    "NewTask",
    "Owner",
    "Rescue",
    "SqliteStorage",
    "Storage",
]
