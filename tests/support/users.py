"""Running a scenario as another, unprivileged user: root ignores file
mode bits, so read-only and shared-directory tests switch to one."""

from __future__ import annotations

import json
import os
import pwd
import time
import traceback
from collections.abc import Callable


def non_root_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("nobody", "nfsnobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def run_as(user: pwd.struct_passwd, scenario: Callable[[], None], timeout: float = 60) -> None:
    """Run ``scenario`` in a forked child as ``user``; re-raise its failure here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            assert os.geteuid() != 0
            scenario()
            message, status = "ok", 0
        except BaseException:
            message = traceback.format_exc()
        finally:
            try:
                os.write(write_end, json.dumps(message).encode())
                os.close(write_end)
            finally:
                os._exit(status)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"the read-only scenario did not finish within {timeout}s")
        time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    message = json.loads(raw) if raw else f"child exited with status {status} and no report"
    assert message == "ok", f"in the child process (uid {user.pw_uid}):\n{message}"
