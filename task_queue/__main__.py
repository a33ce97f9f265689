"""``python -m task_queue``: the ``task-queue`` command (see :mod:`task_queue.cli`)."""

import sys

from .cli import main

sys.exit(main())
