"""The end-of-scenario checks every fault test makes, written once.

:func:`check_invariants` opens the database with plain ``sqlite3``, read-only,
after every process that used it is gone, and asserts:

* ``PRAGMA integrity_check`` is ``ok``;
* no acknowledged task is lost (every id a producer was given exists);
* none is stuck ``running``;
* acknowledged tasks ended in an allowed status (``completed`` by default);
* the trigger-maintained per-status counts agree with the rows.

On PostgreSQL (``db_path`` a URI, TASK_QUEUE_TEST_BACKEND=postgres) the same
checks run through psycopg; there the kept counts are those of finished
statuses (summed over their shard rows), and there is no integrity_check.

:func:`read_exec_logs` parses the execution side channel written by
``procs_faults.py`` workers.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote


def open_readonly(db_path: str | Path) -> sqlite3.Connection:
    """Plain sqlite3, read-only: the check itself must not change the file."""
    uri = f"file:{quote(str(Path(db_path).resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True)


def check_invariants(
    db_path: str | Path,
    acked: Iterable[int] = (),
    *,
    statuses: Collection[str] = ("completed",),
    per_task: Mapping[int, Collection[str]] | None = None,
    procs: Iterable[subprocess.Popen[Any]] = (),
) -> dict[int, dict[str, Any]]:
    """Assert the invariants; return every row as a dict, by id.

    ``statuses``: the statuses an acknowledged task may end in;
    ``per_task`` overrides them for single tasks. ``procs``: processes that
    used the file, all of which must have exited.
    """
    alive = [p.pid for p in procs if p.poll() is None]
    assert not alive, f"processes still running when checking the database: {alive}"
    if str(db_path).startswith(("postgresql://", "postgres://")):
        rows, counts, per_queue = _read_postgres(str(db_path))
    else:
        rows, counts, per_queue = _read_sqlite(db_path)
    return _check(rows, counts, per_queue, acked, statuses, per_task)


def _read_postgres(url: str) -> tuple[dict[int, dict[str, Any]], dict[str, int], dict[Any, int]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        rows = {int(r["id"]): dict(r) for r in conn.execute("SELECT * FROM tasks")}
        sums = conn.execute(
            "SELECT queue_name, status, sum(n)::bigint AS n FROM task_counts GROUP BY 1, 2"
        ).fetchall()
    per_queue = {(r["queue_name"], r["status"]): int(r["n"]) for r in sums}
    counts: Counter[str] = Counter()
    for (_, status), n in per_queue.items():
        counts[status] += n
    return rows, dict(counts), per_queue


def _read_sqlite(
    db_path: str | Path,
) -> tuple[dict[int, dict[str, Any]], dict[str, int], dict[Any, int]]:
    conn = open_readonly(db_path)
    try:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        assert integrity == ["ok"], f"integrity_check: {integrity}"
        conn.row_factory = sqlite3.Row
        rows = {int(r["id"]): dict(r) for r in conn.execute("SELECT * FROM tasks")}
        counts = {
            r["status"]: int(r["n"])
            for r in conn.execute("SELECT status, sum(n) AS n FROM task_counts GROUP BY status")
        }
        per_queue = {
            (r["queue_name"], r["status"]): int(r["n"])
            for r in conn.execute("SELECT queue_name, status, n FROM task_counts")
        }
    finally:
        conn.close()
    return rows, counts, per_queue


def _check(
    rows: dict[int, dict[str, Any]],
    counts: dict[str, int],
    per_queue: dict[Any, int],
    acked: Iterable[int],
    statuses: Collection[str],
    per_task: Mapping[int, Collection[str]] | None,
) -> dict[int, dict[str, Any]]:
    acked_ids = set(acked)
    lost = sorted(acked_ids - rows.keys())
    assert not lost, f"{len(lost)} acknowledged task(s) lost: {lost[:20]}"
    stuck = sorted(i for i, r in rows.items() if r["status"] == "running")
    assert not stuck, f"{len(stuck)} task(s) stuck running: {stuck[:20]}"
    wrong: dict[int, str] = {}
    for task_id in acked_ids:
        allowed = statuses if per_task is None else per_task.get(task_id, statuses)
        if rows[task_id]["status"] not in allowed:
            wrong[task_id] = rows[task_id]["status"]
    sample = dict(list(wrong.items())[:20])
    assert not wrong, f"{len(wrong)} acknowledged task(s) in an unexpected status: {sample}"
    actual = Counter(r["status"] for r in rows.values())
    for status, n in counts.items():
        assert n == actual.get(status, 0), f"task_counts[{status}] = {n}, rows say {actual}"
    actual_per_queue = Counter((r["queue_name"], r["status"]) for r in rows.values())
    for key, n in per_queue.items():
        assert n == actual_per_queue.get(key, 0), f"task_counts{key} = {n}, rows say otherwise"
    return rows


@dataclasses.dataclass
class Execution:
    task_id: int
    attempt: int
    pid: int
    start: float  # monotonic
    start_wall: float
    end: float | None = None  # None: the handler never returned (process died)


@dataclasses.dataclass
class ExecLogs:
    executions: list[Execution]
    #: pid -> [(wall start, wall end, task ids)] of claims that returned tasks
    claims: dict[int, list[tuple[float, float, list[int]]]]
    #: pid -> wall time Worker.stop() began
    stops: dict[int, float]

    def by_task(self) -> dict[int, list[Execution]]:
        result: dict[int, list[Execution]] = defaultdict(list)
        for e in self.executions:
            result[e.task_id].append(e)
        return result

    def open_in(self, pid: int) -> list[Execution]:
        """Executions of ``pid`` that started and have not ended."""
        return [e for e in self.executions if e.pid == pid and e.end is None]


def read_exec_logs(log_dir: str | Path, pids: Iterable[int] | None = None) -> ExecLogs:
    """Parse ``exec-<pid>.log`` files (all, or those of ``pids``); a line cut
    short by a kill is ignored."""
    executions: list[Execution] = []
    claims: dict[int, list[tuple[float, float, list[int]]]] = defaultdict(list)
    stops: dict[int, float] = {}
    if pids is None:
        paths = sorted(Path(log_dir).glob("exec-*.log"))
    else:
        paths = [p for p in (Path(log_dir, f"exec-{pid}.log") for pid in pids) if p.exists()]
    for path in paths:
        open_runs: dict[tuple[int, int], Execution] = {}
        text = path.read_text()
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            kind, *fields = line.split()
            if kind == "S":
                task_id, attempt, pid = (int(x) for x in fields[:3])
                run = Execution(task_id, attempt, pid, float(fields[3]), float(fields[4]))
                open_runs[(task_id, attempt)] = run
                executions.append(run)
            elif kind == "E":
                task_id, attempt = int(fields[0]), int(fields[1])
                run = open_runs.pop((task_id, attempt), None)
                if run is not None:
                    run.end = float(fields[3])
            elif kind == "C":
                ids = [int(x) for x in fields[3].split(",")]
                claims[int(fields[0])].append((float(fields[1]), float(fields[2]), ids))
            elif kind == "T":
                stops[int(fields[0])] = float(fields[1])
    return ExecLogs(executions, dict(claims), stops)
