"""Loads the named SQL blocks of queries.sql once, at import."""

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
