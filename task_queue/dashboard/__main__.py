"""``python -m task_queue.dashboard [--db FILE] [--host H] [--port P] [--read-only]
[--auth-token T] [--insecure] [--scan-rows N]``: the same as ``task-queue dashboard``."""

from __future__ import annotations

import sys

from ..cli import main

sys.exit(main(["dashboard", *sys.argv[1:]]))
