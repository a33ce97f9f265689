"""Who else can read or plant the files of a queue: the checks made at open.

A queue's data lives in three files: the database and, beside it, the
``-wal`` (recent commits, payloads included) and ``-shm`` files. SQLite
adopts a ``-wal`` or ``-shm`` it finds there, whoever made it, and gives the
ones it creates the database file's mode. In a directory others can write
(``/tmp``, a shared upload directory), another user could plant them
beforehand (a ``-wal`` of mode 0666 they own: they read every payload
written; one crafted to be replayed: they inject tasks), or create the
empty database file for us to fill. The rules:

* creating a queue (no file yet, an empty file, or a SQLite file without
  tables): the database file must be owned by the current user. We create
  a new one 0600; an empty or table-less one of ours open to group or
  others is tightened to 0600 (it holds nothing yet);
* a ``-wal`` or ``-shm`` found beside the database must be a regular file
  owned by the current user or by the database file's owner (or, when the
  database file is group-writable, belong to its group; or the database
  file is writable by anyone anyway), and must grant group and others
  nothing the database file does not grant them. One of ours that does is
  tightened; anything else is refused.

Deliberate sharing stays possible: create the queue as one user, then give
the database file (and the directory) to a group: ``-wal``/``-shm`` files of
other members are accepted when they belong to that group and grant no
more than the database file does.
"""

from __future__ import annotations

import os
import stat

from ...errors import UnsafeDatabaseFileError

SIDECARS = ("-wal", "-shm")
PRIVATE_MODE = 0o600
# Owners and modes mean nothing to these checks without POSIX users.
_POSIX = hasattr(os, "geteuid")


class Owner:
    """The uid, gid and permission bits a database file has (or will have)."""

    __slots__ = ("gid", "mode", "uid")

    def __init__(self, uid: int, gid: int, mode: int) -> None:
        self.uid, self.gid, self.mode = uid, gid, stat.S_IMODE(mode)

    @classmethod
    def of(cls, info: os.stat_result) -> Owner:
        return cls(info.st_uid, info.st_gid, info.st_mode)

    @classmethod
    def new(cls) -> Owner:
        if not _POSIX:
            return cls(0, 0, PRIVATE_MODE)
        return cls(os.geteuid(), os.getegid(), PRIVATE_MODE)


def _grants_more(side: os.stat_result, db: Owner) -> bool:
    """Does ``side`` let someone at it whom the database file keeps out?"""
    mode = stat.S_IMODE(side.st_mode)
    if mode & 0o077 & ~db.mode:
        return True
    group_bits = (mode >> 3) & 0o7
    # Its group bits reach its own group: fine if that is the database's
    # group, or if the database grants the same to everyone.
    return bool(group_bits) and side.st_gid != db.gid and bool(group_bits & ~(db.mode & 0o7))


def check_sidecars(path: str, db: Owner) -> None:
    """Refuse a planted ``-wal``/``-shm``; tighten one of ours that is too open."""
    if not _POSIX:
        return
    me = os.geteuid()
    for suffix in SIDECARS:
        side_path = path + suffix
        try:
            side = os.lstat(side_path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UnsafeDatabaseFileError(f"cannot inspect {side_path!r}: {exc}") from exc
        if not stat.S_ISREG(side.st_mode):
            raise UnsafeDatabaseFileError(
                f"{side_path!r} is not a regular file (a symlink?); SQLite would write the "
                "queue's data through it. Refusing the queue; nothing was written"
            )
        trusted_owner = (
            side.st_uid in (me, db.uid)
            or (db.mode & stat.S_IWGRP and side.st_gid == db.gid)
            or db.mode & stat.S_IWOTH
        )
        if not trusted_owner:
            raise UnsafeDatabaseFileError(
                f"{side_path!r} belongs to uid {side.st_uid}, neither you (uid {me}) nor the "
                f"database file's owner (uid {db.uid}): someone else created it, and SQLite "
                "would adopt it (they could read every payload, or inject tasks). Refusing "
                "the queue; nothing was written. Remove it, and keep queues in a directory "
                "only their users can write"
            )
        if _grants_more(side, db):
            if side.st_uid != me:
                raise UnsafeDatabaseFileError(
                    f"{side_path!r} (mode {stat.S_IMODE(side.st_mode):o}) is open to users "
                    f"the database file (mode {db.mode:o}) keeps out. Refusing the queue; "
                    "nothing was written"
                )
            os.chmod(side_path, stat.S_IMODE(side.st_mode) & db.mode, follow_symlinks=False)


def claim_new_database(path: str, *, tighten: bool = True) -> None:
    """We are about to create a queue in the existing file ``path``: it must
    be ours. ``tighten``: an empty file open to others becomes 0600 (not so
    the application's own database, which a queue may share)."""
    if not _POSIX:
        return
    info = os.stat(path)
    me = os.geteuid()
    if info.st_uid != me:
        raise UnsafeDatabaseFileError(
            f"{path!r} belongs to uid {info.st_uid}, not to you (uid {me}): someone else "
            "created it for this queue, and would be able to read (or change) everything "
            "written to it. Refusing it; nothing was written. Remove it and let task_queue "
            "create the file, in a directory only its users can write"
        )
    if tighten and stat.S_IMODE(info.st_mode) & 0o077:
        # Ours and still empty of tasks: nothing to lose by closing it.
        os.chmod(path, PRIVATE_MODE)
