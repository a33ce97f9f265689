"""Which process holds a claim, and whether it is still alive.

A claim records its owner's host and PID. A rescuer on the same host can
then tell at once that the owner died (its PID is gone) instead of waiting
for the lease to run out. The host id includes the PID namespace, so two
containers sharing a volume never judge each other's PIDs. A PID reused by
an unrelated process only makes us wait for the lease, never rescue early,
and a stopped (SIGSTOP) process is alive: it too waits for its lease.
"""

from __future__ import annotations

import functools
import os
import socket


@functools.lru_cache(maxsize=1)
def host_id() -> str:
    host = socket.gethostname()
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux: the hostname alone
        return host
    return f"{host}/pidns:{namespace}"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a real owner PID: never rescue early on it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return True
    return True
