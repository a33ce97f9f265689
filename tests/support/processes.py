"""Starting the fault suite's role processes (support/procs_faults.py) and always reaping them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

PROCS = Path(__file__).resolve().with_name("procs_faults.py")


class Procs:
    """Starts ``procs_faults.py`` roles as real processes; output goes to files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(exist_ok=True)
        self.started: list[subprocess.Popen[bytes]] = []
        self._outputs: dict[int, Path] = {}

    def start(self, role: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        path = self.dir / f"{role}-{len(self.started)}.out"
        with open(path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(PROCS), role, json.dumps(kwargs)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.started.append(proc)
        self._outputs[proc.pid] = path
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return self._outputs[proc.pid].read_text(errors="replace")

    def signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        """Send ``sig`` to one of our processes (by its pid, never by name)."""
        os.kill(proc.pid, sig)

    def kill(self, proc: subprocess.Popen[bytes], *, reap: bool = True) -> None:
        """SIGKILL; reap at once, so the pid is gone and same-host fast rescue
        sees it dead. Unreaped, it stays a zombie, which counts as alive: its
        tasks wait for their leases to run out."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        if reap:
            proc.wait(timeout=30)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.started if p.poll() is None]

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=30)

    def dump(self, tail: int = 4000) -> str:
        parts = []
        for proc in self.started:
            text = self.output(proc)
            parts.append(f"--- pid {proc.pid} rc={proc.returncode} ---\n{text[-tail:]}")
        return "\n".join(parts)
