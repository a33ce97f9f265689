"""Loading a backend's SQL once, at import: the named blocks of its
``queries.sql`` and the numbered scripts in its ``migrations/``
(``0002_named_queues.sql`` produces schema version 2).

Shared by the backends (``sqlite/``, ``postgres/``) so that every backend
keeps its SQL the same way: one file of named, described statements, and
migrations numbered 1..n.
"""

from __future__ import annotations

import re
from importlib import resources

_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$")
_MIGRATION = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def parse_queries(text: str) -> dict[str, str]:
    """The blocks of a queries file by name: a line ``-- name --`` starts a
    block; comment lines are left out of the statements."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _HEADER.match(line.strip())
        if match:
            current = blocks.setdefault(match.group(1), [])
            continue
        if current is not None and not line.lstrip().startswith("--"):
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in blocks.items()}


def load_queries(package: str) -> dict[str, str]:
    """The named blocks of ``queries.sql`` in ``package``."""
    text = resources.files(package).joinpath("queries.sql").read_text(encoding="utf-8")
    return parse_queries(text)


def load_migrations(package: str) -> dict[int, str]:
    """The scripts of ``package``'s ``migrations/`` by the version they produce."""
    found: dict[int, str] = {}
    for entry in resources.files(package).joinpath("migrations").iterdir():
        match = _MIGRATION.fullmatch(entry.name)
        if match:
            found[int(match.group(1))] = entry.read_text(encoding="utf-8")
    numbers = sorted(found)
    if numbers != list(range(1, len(numbers) + 1)):  # pragma: no cover - a packaging error
        raise RuntimeError(f"task_queue migrations are not numbered 1..n: {numbers}")
    return found
