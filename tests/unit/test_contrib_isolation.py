"""contrib/ depends on the core, never the reverse: importing task_queue (and
running a Worker) needs neither prometheus-client nor OpenTelemetry. The
command (cli/), an application of the library, imports contrib only when
asked (``--metrics-port``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import task_queue

PACKAGE = Path(task_queue.__file__).parent


def test_importing_the_core_and_the_command_imports_no_integration() -> None:
    code = (
        "import sys, task_queue, task_queue.worker, task_queue.queue, task_queue.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('prometheus_client', 'opentelemetry')"
        " or m.startswith('task_queue.contrib')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_no_core_module_imports_contrib() -> None:
    imports = re.compile(r"^\s*(from|import)\s+\S*contrib", re.MULTILINE)
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0]
        if layer not in ("contrib", "cli"):
            assert not imports.search(path.read_text(encoding="utf-8")), path
