"""Every exception the library raises on purpose.

The tree::

    TaskQueueError
    ├── StorageError                   the database could not do what was asked
    │   ├── DatabaseBusyError          another process held the lock past the retry budget
    │   ├── DiskFullError              the disk (or max_page_count) is full
    │   ├── ReadOnlyDatabaseError      the file or its directory is not writable
    │   ├── NotAQueueDatabaseError     not SQLite, corrupt, or SQLite with a foreign schema
    │   ├── DatabaseOpenError          the path cannot be opened at all
    │   ├── QueueClosedError           the TaskQueue was closed
    │   ├── StatementTooLargeError     a value or statement beyond SQLite's limits
    │   ├── UnsafeDatabaseFileError    hard-linked, or open to other users at creation
    │   └── DatabaseReplacedError      the file was deleted or replaced while open
    ├── PayloadError (also TypeError)  a payload or result that is not plain JSON
    ├── TaskNotFoundError (also KeyError)
    ├── TaskNotClaimedError (also ValueError)  no claim token for the task
    ├── DuplicateTaskError             retry_task() would clash with a live unique_key
    ├── TaskTimeout                    raised inside a handler whose time ran out
    ├── TaskCancelled                  raised by ctx.check() when the task was cancelled or lost
    │                                  (and by result() for a cancelled task)
    └── TaskFailedError                result() of a task that failed for good

Argument errors that are plainly the caller's (an unknown priority, a negative
``max_retries``) are ``ValueError``/``TypeError`` as Python users expect.
"""

from __future__ import annotations


class TaskQueueError(Exception):
    """Base class of every error raised by task_queue."""


class StorageError(TaskQueueError):
    """The database could not carry out the operation; nothing was written."""


class DatabaseBusyError(StorageError):
    """The database stayed locked by another connection beyond the retry budget."""


class DiskFullError(StorageError):
    """The database or disk is full; the operation was rolled back."""


class ReadOnlyDatabaseError(StorageError):
    """The database file (or its directory) cannot be written."""


class NotAQueueDatabaseError(StorageError):
    """The file is not a SQLite database, is corrupt, or holds a foreign schema.

    The file is left exactly as it was found.
    """


class DatabaseOpenError(StorageError):
    """The database path cannot be opened (missing directory, permissions...)."""


class QueueClosedError(StorageError):
    """The TaskQueue has been closed."""


class StatementTooLargeError(StorageError):
    """A value or statement exceeds SQLite's limits (SQLITE_TOOBIG); nothing was written.

    Unlike a busy or full database, retrying the same write cannot succeed.
    """


class UnsafeDatabaseFileError(StorageError):
    """The database file cannot be used safely; it was refused before anything was written.

    A file with more than one name (hard links): SQLite names the WAL after
    the path, so two names mean two WALs for one file, and writes through
    one name silently vanish from the other while the index corrupts.
    """


class DatabaseReplacedError(StorageError):
    """The file at the queue's path was deleted or replaced while the queue was open.

    The connection still holds the old file, so a write would go where no
    one will ever read it: nothing is written; reopen the queue.
    """


class PayloadError(TaskQueueError, TypeError):
    """A payload or result is not plain JSON (or is larger than allowed)."""


class TaskNotFoundError(TaskQueueError, KeyError):
    """No task has this id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "task not found"


class TaskNotClaimedError(TaskQueueError, ValueError):
    """The caller holds no claim on this task (pass the Task from dequeue())."""


class DuplicateTaskError(TaskQueueError):
    """Another live task already holds this unique_key."""


class TaskTimeout(TaskQueueError):
    """Raised inside a handler whose task ran past its timeout.

    It derives from Exception (not BaseException) on purpose: handler code
    that catches Exception to clean up will also see it, which is what a
    cooperative clean-up wants; the worker records the attempt as timed out
    either way.
    """


class TaskCancelled(TaskQueueError):
    """Raised by ``current_task().check()`` when the task was cancelled,
    lost its claim, or its worker is shutting down past the drain deadline."""


class TaskFailedError(TaskQueueError):
    """``TaskQueue.result()`` of a task that failed for good.

    ``message`` and ``traceback`` are the last failure's, as stored (the
    traceback as text: the exception lived in the worker's process);
    ``task`` is the task as read.
    """

    def __init__(self, message: str, traceback: str | None = None, task: object = None) -> None:
        super().__init__(message)
        #: The error message of the last failed attempt.
        self.message = message
        #: Its formatted traceback, or None.
        self.traceback = traceback
        #: The failed Task.
        self.task = task


# How a writer that retries (a Worker's recorder and dispatcher) tells a
# fault that may clear (busy, disk full, read-only, I/O) from one that
# cannot. Storage backends translate their errors into these classes.

#: Nothing more can be read or written through this TaskQueue: a Worker
#: stops instead of retrying every few seconds forever, looking alive.
UNUSABLE_STORAGE: tuple[type[StorageError], ...] = (
    QueueClosedError,
    DatabaseReplacedError,
    UnsafeDatabaseFileError,
    NotAQueueDatabaseError,
)

#: The data of one write is refused for good, not the database: retrying
#: the same write cannot succeed, other writes can.
UNSTORABLE: tuple[type[TaskQueueError], ...] = (StatementTooLargeError, PayloadError)
