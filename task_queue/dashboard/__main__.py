"""``python -m task_queue.dashboard --db FILE [--host H] [--port P] [--read-only]
[--auth-token T] [--insecure]``: serve the dashboard of a queue file."""

from __future__ import annotations

import sys

from .command import main

sys.exit(main())
