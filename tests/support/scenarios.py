"""Running a ``hazards.py`` scenario in its own process, so that a hang
fails the test instead of hanging it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HAZARDS = Path(__file__).resolve().with_name("hazards.py")


def run_scenario(name: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
    """Run a hazards.py scenario in its own process; a hang fails, not hangs, the test."""
    try:
        done = subprocess.run(
            [sys.executable, str(HAZARDS), name, json.dumps(kwargs)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = (
            exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        )
        pytest.fail(f"{name} did not finish within {timeout}s (a hang); stderr:\n{stderr}")
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report
