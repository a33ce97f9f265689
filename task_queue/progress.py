"""Progress a running task reports: what is valid, and how often it is written.

``current_task().progress(3, 10, "resizing")`` may be called in a tight
loop: it only replaces the latest value in the Worker's recorder, which
writes the latest value of each task at most every ``WRITE_INTERVAL``
seconds (in one statement for all of them), and always the last one before
the task's outcome. Writes are fenced by the claim like every other write.
"""

from __future__ import annotations

import math
from typing import Any

#: At most this often is one task's progress written.
WRITE_INTERVAL = 0.25
#: Longest progress message.
MAX_MESSAGE = 1000


def make_progress(current: object, total: object, message: object, now: float) -> dict[str, Any]:
    """The stored form of a progress report, or ValueError/TypeError."""
    for name, value in (("current", current), ("total", total)):
        if value is None and name == "total":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"progress {name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"progress {name} must be a finite number >= 0, got {value!r}")
    if message is not None:
        if not isinstance(message, str):
            raise TypeError(f"progress message must be a string, got {type(message).__name__}")
        if len(message) > MAX_MESSAGE:
            raise ValueError(
                f"progress message is {len(message)} characters, more than {MAX_MESSAGE}"
            )
        try:
            message.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("progress message is not valid Unicode text") from None
    return {"current": current, "total": total, "message": message, "updated_at": now}
