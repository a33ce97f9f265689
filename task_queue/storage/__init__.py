"""Storage backends behind the narrow interface in :mod:`.base`."""

from .base import Claim, Failure, NewTask, Storage
from .sqlite import SqliteStorage

__all__ = ["Claim", "Failure", "NewTask", "SqliteStorage", "Storage"]
