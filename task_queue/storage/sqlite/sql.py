"""Loads the SQL once, at import: the named blocks of queries.sql, and the
numbered migrations in migrations/ (``0002_named_queues.sql`` produces
schema version 2)."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$")


def _parse(text: str) -> dict[str, str]:
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


def split_statements(script: str) -> list[str]:
    """Split a block into statements; trigger bodies contain ';' too."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending!r}")
    return statements


QUERIES: dict[str, str] = _parse(
    resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
)


def _migrations() -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_[a-z0-9_]+\.sql", entry.name)
        if match:
            found[int(match.group(1))] = entry.read_text(encoding="utf-8")
    numbers = sorted(found)
    if numbers != list(range(1, len(numbers) + 1)):  # pragma: no cover - a packaging error
        raise RuntimeError(f"task_queue migrations are not numbered 1..n: {numbers}")
    return found


#: The schema migrations by the version they produce.
MIGRATIONS: dict[int, str] = _migrations()
