"""Bounded scans of listings, the same for every backend (issue 11).

Why: a listing filtered by something no index leads with (one task type,
alone or with a finished status) walks the table, or the finished tasks'
index, until it has a page. At a million tasks that took 150-420 ms for a
type of 1 task in 10,000, and a type no task has read every row. An index
on ``(task_type, id)`` would make these a seek, but every enqueue writes it
(7-25% fewer enqueues/s measured), and nothing kept says which types
exist: ``task_counts`` is per queue and status; the failed tasks' index by
type (SQLite), the schedules and the rate limits know some types only; a
dashboard process has no handlers. So, as large-table admin UIs do, such a
listing examines at most ``scan`` rows of its walk per call and says where
it stopped; the caller shows what it found and offers to search on from
there (the keyset cursor of the stop point).

How: a statement reading only the walk's keys (``scan_edge_newest``: the
table's ids; ``scan_edge_finished``: the finished tasks' index) finds the
``n``-th row after the cursor, the window's last row, and whether any row
lies beyond it; the listing statement then runs as before with that row as
its floor, so it examines no row outside the window. The bound counts rows,
not ids, so a range emptied by ``purge()`` costs nothing. Most filtered
pages fill within their first rows (pending tasks are the newest, a common
type is everywhere): a first window of :data:`FIRST_WINDOW` rows is tried
first, and the rest of the bound only when it did not fill the page, so
those pages pay one cheap seek, not a key walk of the whole bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..task import SearchedTasks
from .base import TaskFilter

_NO_AT = float("-inf")
#: Below every task id and finish time: the floor of a listing that is not bounded.
NO_FLOOR: dict[str, Any] = {"floor_id": -(2**63), "floor_at": _NO_AT}
#: Rows of the first window of a bounded listing (see the module docstring).
FIRST_WINDOW = 1_000

#: Runs a named statement of the backend's queries.sql with these
#: parameters, in the listing's read (one snapshot), and returns its rows.
Run = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]


def is_bounded(where: TaskFilter, plan: str, scan: int | None) -> bool:
    """Does a scan bound apply to listing ``where`` read with ``plan``? Only
    to the two walks that read rows they may not show (``list_newest`` with
    any filter, ``list_finished`` with a type or a queue); the other plans
    read an index of their filter, so every row they read matches."""
    if scan is None:
        return False
    if plan == "list_newest":
        return where != TaskFilter()
    if plan == "list_finished":
        return where.task_type is not None or where.queue_name is not None
    return False


def bounded_listing(
    run: Run, plan: str, params: dict[str, Any], scan: int
) -> tuple[list[Sequence[Any]], SearchedTasks | None]:
    """The rows of listing ``plan`` (``list_newest`` or ``list_finished``)
    among the next ``scan`` rows of its walk after the cursor in ``params``,
    and what was searched when the page is not full and rows lie beyond
    (None otherwise)."""
    limit = int(params["limit"])
    first_rows = min(scan, FIRST_WINDOW)
    rows, first, last, beyond = _window(run, plan, params, first_rows)
    if len(rows) == limit or not beyond or first_rows == scan:
        return rows, _searched(plan, scan, first, last) if beyond and len(rows) < limit else None
    assert last is not None
    below = {**params, "before_id": last[2], "before_at": _at(last[1]), "limit": limit - len(rows)}
    more, _, last, beyond = _window(run, plan, below, scan - first_rows)
    rows = [*rows, *more]
    return rows, _searched(plan, scan, first, last) if beyond and len(rows) < limit else None


def _window(
    run: Run, plan: str, params: dict[str, Any], n: int
) -> tuple[list[Sequence[Any]], Sequence[Any] | None, Sequence[Any] | None, bool]:
    """The matches among the next ``n`` rows, the first and the last of
    those rows (``(tag, completed_at, id)``), and whether rows lie beyond."""
    edges = run("scan_edge_finished" if plan == "list_finished" else "scan_edge_newest",
                {**params, "skip": n - 1})  # fmt: skip
    first = next((r for r in edges if r[0] == "first"), None)
    last_rows = [r for r in edges if r[0] == "edge"]
    if len(last_rows) < 2:  # the window reaches the end of the walk
        return list(run(plan, {**params, **NO_FLOOR})), first, None, False
    last = last_rows[0]
    floor = {"floor_id": int(last[2]), "floor_at": _at(last[1])}
    return list(run(plan, {**params, **floor})), first, last, True


def _at(value: Any) -> float:
    return _NO_AT if value is None else float(value)


def _searched(
    plan: str, scan: int, first: Sequence[Any] | None, last: Sequence[Any] | None
) -> SearchedTasks:
    assert first is not None and last is not None
    finished = plan == "list_finished"
    return SearchedTasks(
        examined=scan, first_id=int(first[2]), last_id=int(last[2]),
        first_finished_at=float(first[1]) if finished else None,
        last_finished_at=float(last[1]) if finished else None,
    )  # fmt: skip
