"""The bodies of the PostgreSQL backend's operations: one unit per
operation, ``fn(tx, ...)``, run by ``PostgresStorage._run`` inside the
operation's transaction (or as its one autocommit statement). Units run
only named statements from queries.sql (``Q``) and record on ``tx`` what
they changed (for the NOTIFY) and how the finished counts moved.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import DuplicateTaskError, TaskNotFoundError
from ...limits import Limits, within_concurrency
from ...task import Claim
from ..base import Completion, FailureRecord, NewTask, Owner, Rescue, ScheduleRow
from ..rows import dependency_state, insert_params
from ..sqlfiles import load_queries

Q = load_queries("task_queue.storage.postgres")

#: A claim of a limited type looks at most this many of its due tasks.
LIMITED_SCAN = 1000
#: Workers not seen for this long are forgotten.
FORGET_WORKERS_AFTER = 86_400.0


class _Again(Exception):
    """A unit found a race it cannot settle inside its transaction (a
    unique key taken between its check and its write): run it again."""


class _Tx:
    """What a unit works with: a cursor, and what it changed."""

    __slots__ = ("changed", "counts", "cur")

    def __init__(self, cur: Any) -> None:
        self.cur = cur
        #: Something other processes may wait for changed (NOTIFY them).
        self.changed = False
        #: (queue, finished status) -> delta, written before the commit.
        self.counts: dict[tuple[str, str], int] = {}

    def rows(self, name: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        self.cur.execute(Q[name], params or {})
        return list(self.cur.fetchall()) if self.cur.description is not None else []

    def one(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        self.cur.execute(Q[name], params or {})
        return self.cur.fetchone() if self.cur.description is not None else None

    def count(self, queue: str, status: str, delta: int = 1) -> None:
        key = (queue, status)
        self.counts[key] = self.counts.get(key, 0) + delta

    def flush_counts(self) -> None:
        items = sorted((k, v) for k, v in self.counts.items() if v)
        self.counts.clear()
        if items:
            self.cur.execute(
                Q["count_finished"],
                {
                    "queues": [q for (q, _), _ in items],
                    "statuses": [s for (_, s), _ in items],
                    "deltas": [n for _, n in items],
                },
            )


def _clean(text: str | None) -> str | None:
    """Free text (errors, tracebacks, worker ids) for a text column:
    PostgreSQL text cannot hold NUL, so it is written as the four
    characters ``\\x00`` instead of failing the outcome it belongs to."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\\x00")


def _check_new(t: NewTask, index: int) -> None:
    for what, value in (("name", t.name), ("unique_key", t.unique_key),
                        ("concurrency_key", t.concurrency_key)):  # fmt: skip
        if value is not None and "\x00" in value:
            raise ValueError(
                f"task #{index}: {what} contains NUL, which PostgreSQL text cannot hold"
            )


# -- units ---------------------------------------------------------------------------


def _plain(t: NewTask) -> bool:
    return t.unique_key is None and not t.depends_on and not t.depends_on_batch


def _enqueue(tx: _Tx, tasks: Sequence[NewTask], now: float) -> list[tuple[int, bool]]:
    tx.changed = True
    if len(tasks) > 1 and all(_plain(t) for t in tasks):
        return [(task_id, True) for task_id in _enqueue_bulk(tx, tasks, now)]
    ids: list[tuple[int, bool]] = []
    for index, t in enumerate(tasks):
        parents = list(dict.fromkeys([*t.depends_on, *(ids[i][0] for i in t.depends_on_batch)]))
        params = insert_params(t, now)
        if parents:
            # The parents locked (FOR SHARE) until the enqueue commits.
            found = {int(i): st for i, st in tx.rows("dependency_states", {"ids": parents})}
            params.update(dependency_state(found, parents, now, index))
        ids.append(_insert_one(tx, params, parents))
    return ids


def _insert_one(tx: _Tx, params: dict[str, Any], parents: list[int]) -> tuple[int, bool]:
    # ON CONFLICT DO NOTHING, then the holder looked up; a holder that
    # finished in between (no live holder found) means: insert again.
    for _ in range(10):
        row = tx.one("insert_task", params)
        if row is not None:
            task_id = int(row[0])
            if parents:
                deps = {"task_id": task_id, "ids": parents}
                tx.rows("insert_dependencies", deps)
                tx.rows("mark_depended_on", deps)
            if params["status"] == "cancelled":
                tx.count(params["queue_name"], "cancelled")
            return task_id, True
        held = tx.one("find_live_unique", {"unique_key": params["unique_key"]})
        if held is not None:
            return int(held[0]), False
    raise _Again("the holder of a unique_key kept changing")  # pragma: no cover


def _enqueue_bulk(tx: _Tx, tasks: Sequence[NewTask], now: float) -> list[int]:
    params = {
        "now": now,
        "names": [t.name for t in tasks],
        "task_types": [t.task_type for t in tasks],
        "payloads": [t.payload for t in tasks],
        "priorities": [t.priority for t in tasks],
        "scheduled_ats": [t.scheduled_at for t in tasks],
        "max_retries": [t.max_retries for t in tasks],
        "run_ats": [t.run_at for t in tasks],
        "timeouts": [t.timeout for t in tasks],
        "queue_names": [t.queue_name for t in tasks],
        "metas": [t.meta for t in tasks],
        "concurrency_keys": [t.concurrency_key for t in tasks],
    }
    ids = sorted(int(r[0]) for r in tx.rows("insert_tasks", params))
    if len(ids) != len(tasks):  # pragma: no cover - every row inserts or the statement fails
        raise RuntimeError(f"bulk insert returned {len(ids)} ids for {len(tasks)} tasks")
    return ids


def _claim_pipelined(
    tx: _Tx, completions: Sequence[Completion], now: float, params: dict[str, Any]
) -> tuple[set[Claim], list[Any]]:
    """A plain claim (a Worker's steady state: with completions) in one
    transaction and one round trip: BEGIN, complete_many, claim_plan, the
    claim and COMMIT go out together (psycopg's pipeline mode) instead of
    each waiting for the server's answer to the one before. On a busy
    machine every round trip is two wake-ups (the server's backend, then
    this thread)."""
    conn = tx.cur.connection
    statement = "claim" if params["queues"] is None else "claim_queues"
    completed = conn.cursor()
    claimed = conn.cursor()
    try:
        with conn.pipeline() as pipeline:
            conn.execute("BEGIN")
            if completions:
                completed.execute(Q["complete_many"], _completion_params(completions, now))
            conn.execute(Q["claim_plan"])  # for the claim only (see queries.sql)
            claimed.execute(Q[statement], params)
            conn.execute("COMMIT")
            pipeline.sync()
            done = completed.fetchall() if completions else []
            rows = claimed.fetchall()
    except BaseException:
        # A statement failed: the rest was skipped, the transaction is aborted.
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    if done:
        tx.changed = True
    return {(int(task_id), int(token)) for task_id, token in done}, rows  # type: ignore[misc]


def _claim(
    tx: _Tx,
    completions: Sequence[Completion],
    now: float,
    params: dict[str, Any],
    limits: Mapping[str, Limits],
) -> tuple[set[Claim], list[Any]]:
    if not limits:
        return _claim_pipelined(tx, completions, now, params)
    recorded = _complete(tx, completions, now) if completions else set()
    tx.rows("claim_plan")
    statement = "claim" if params["queues"] is None else "claim_queues"
    if not limits:
        return recorded, tx.rows(statement, params)
    rows: list[Any] = []
    limit = params["limit"]
    for task_type, limit_of in limits.items():
        if len(rows) >= limit:
            break
        rows += _claim_limited(tx, task_type, limit_of, limit - len(rows), now, params)
    types = params["types"]
    free = None if types is None else [t for t in types if t not in limits]
    if (free is None or free) and len(rows) < limit:
        rest = {**params, "types": free, "limit": limit - len(rows)}
        rows += tx.rows(statement, rest)
    return recorded, rows


def _claim_limited(
    tx: _Tx,
    task_type: str,
    limits: Limits,
    room: int,
    now: float,
    params: dict[str, Any],
) -> list[Any]:
    tokens = math.inf
    if limits.rate is not None:
        stored, updated_at = tx.one(
            "rate_bucket", {"task_type": task_type, "capacity": limits.rate.capacity, "now": now}
        )
        tokens = limits.rate.tokens(stored, updated_at, now)
        room = min(room, int(tokens))
    if room < 1:
        return []
    if limits.concurrency is not None:
        tx.rows("lock_concurrency", {"task_type": task_type})
    scan = {"task_type": task_type, "now": now, "queues": params["queues"]}
    scan["scan"] = room if limits.concurrency is None else LIMITED_SCAN
    candidates = tx.rows("limited_candidates", scan)
    if limits.concurrency is None:
        ids = [task_id for task_id, _ in candidates]
    else:
        running = {k: int(n) for k, n in tx.rows("running_per_key", {"task_type": task_type})}
        ids = within_concurrency(candidates, running, limits.concurrency, room)
    if not ids:
        return []
    rows = tx.rows("claim_ids", {**params, "ids": ids})
    if limits.rate is not None:
        left = {"task_type": task_type, "tokens": tokens - len(rows), "now": now}
        tx.rows("set_rate_bucket", left)
    return rows


def _completion_params(items: Sequence[Completion], now: float) -> dict[str, Any]:
    # Sorted by id: concurrent batches lock their rows in one order.
    ordered = sorted(items, key=lambda c: c.claim.task_id)
    return {
        "now": now,
        "ids": [c.claim.task_id for c in ordered],
        "tokens": [c.claim.token for c in ordered],
        "results": [c.result for c in ordered],
    }


def _complete(tx: _Tx, items: Sequence[Completion], now: float) -> set[Claim]:
    rows = tx.rows("complete_many", _completion_params(items, now))
    if rows:
        tx.changed = True
    # Plain (id, token) tuples: equal to, and hashed like, the Claims.
    return {(int(task_id), int(token)) for task_id, token in rows}  # type: ignore[misc]


def _cancel_dependents(tx: _Tx, parent: int, status: str, now: float) -> None:
    frontier = [(parent, status)]
    while frontier:
        task_id, why = frontier.pop()
        params = {"parent": task_id, "status": why, "now": now}
        for child, has_dependents, queue in tx.rows("cancel_dependents", params):
            tx.count(queue, "cancelled")
            if has_dependents:
                frontier.append((int(child), "cancelled"))


def _attempt(
    tx: _Tx, task_id: int, attempt: int, worker_id: str | None, started_at: float | None,
    now: float, outcome: str, error: str | None = None, error_class: str | None = None,
    traceback: str | None = None,
) -> None:  # fmt: skip
    tx.rows(
        "record_attempt",
        {
            "id": task_id, "attempt": attempt, "worker_id": worker_id, "started_at": started_at,
            "now": now, "outcome": outcome, "error": _clean(error), "error_class": error_class,
            "traceback": _clean(traceback),
        },
    )  # fmt: skip


def _fail(tx: _Tx, claim: Claim, failure: FailureRecord, now: float) -> bool:
    held = tx.one("lock_held", {"id": claim.task_id, "token": claim.token})
    if held is None:
        return False
    attempts, worker_id, started_at, _, queue = held
    outcome = "failed" if failure.retry_in is None else "retried"
    _attempt(tx, claim.task_id, attempts, worker_id, started_at, now, outcome, failure.error,
             failure.error_class, failure.traceback)  # fmt: skip
    params: dict[str, Any] = {
        "id": claim.task_id, "token": claim.token, "now": now,
        "error": _clean(failure.error), "traceback": _clean(failure.traceback),
    }  # fmt: skip
    tx.changed = True
    if failure.retry_in is None:
        row = tx.one("fail_final", params)
        if row is not None:
            tx.count(queue, "failed")
            if row[1]:
                _cancel_dependents(tx, claim.task_id, "failed", now)
        return row is not None
    params["run_at"] = now + max(0.0, failure.retry_in)
    return tx.one("fail_retry", params) is not None


def _release(tx: _Tx, claims: Sequence[Claim]) -> list[Claim]:
    ordered = sorted(claims)
    params = {"ids": [c.task_id for c in ordered], "tokens": [c.token for c in ordered]}
    done = {(int(i), int(t)) for i, t in tx.rows("release_tasks", params)}
    if done:
        tx.changed = True
    return [c for c in claims if (c.task_id, c.token) in done]


def _renew(tx: _Tx, claims: Sequence[Claim], expires: float) -> set[Claim]:
    ordered = sorted(claims)
    params = {
        "ids": [c.task_id for c in ordered],
        "tokens": [c.token for c in ordered],
        "lease_expires_at": expires,
    }
    return {Claim(int(i), int(t)) for i, t in tx.rows("renew_leases", params)}


def _rescue(tx: _Tx, rescues: Sequence[Rescue], now: float) -> list[tuple[int, str]]:
    applied = []
    for r in sorted(rescues, key=lambda r: r.claim.task_id):
        held = tx.one("lock_held", {"id": r.claim.task_id, "token": r.claim.token})
        if held is None or held[3] != r.lease_expires_at:
            continue  # no longer the claim the rescuer found
        attempts, worker_id, started_at, _, queue = held
        _attempt(tx, r.claim.task_id, attempts, worker_id, started_at, now, "lost", r.error)
        params: dict[str, Any] = {
            "id": r.claim.task_id, "token": r.claim.token, "now": now, "error": _clean(r.error),
            "lease_expires_at": r.lease_expires_at,
        }  # fmt: skip
        if r.retry_in is None:
            row = tx.one("rescue_final", params)
        else:
            params["run_at"] = now + max(0.0, r.retry_in)
            row = tx.one("rescue_retry", params)
        if row is not None:
            tx.changed = True
            applied.append((int(row[0]), str(row[1])))
            if row[1] == "failed":
                tx.count(queue, "failed")
                if row[2]:
                    _cancel_dependents(tx, int(row[0]), "failed", now)
    return applied


def _cancel(tx: _Tx, task_id: int, now: float) -> bool:
    row = tx.one("lock_task", {"id": task_id})
    if row is None:
        raise TaskNotFoundError(f"no task with id {task_id}")
    status, attempts, worker_id, started_at, _ = row
    if status not in ("pending", "running", "waiting"):
        return False
    if status == "running":
        # The running attempt ends here (its late result will be fenced out).
        _attempt(tx, task_id, attempts, worker_id, started_at, now, "cancelled")
    done = tx.one("cancel_task", {"id": task_id, "now": now})
    if done is None:  # pragma: no cover - the row is locked
        return False
    tx.changed = True
    tx.count(done[2], "cancelled")
    if done[1]:
        _cancel_dependents(tx, task_id, "cancelled", now)
    return True


def _retry(tx: _Tx, task_id: int, now: float) -> bool:
    import psycopg.errors

    try:
        with tx.cur.connection.transaction():  # a savepoint: the error is ours to turn
            row = tx.one("retry_task", {"id": task_id, "now": now})
    except psycopg.errors.UniqueViolation as exc:
        raise DuplicateTaskError(
            f"task {task_id} cannot be retried: another live task holds its unique_key"
        ) from exc
    if row is not None:
        tx.changed = True
        tx.count(row[2], row[1], -1)
        return True
    if tx.one("task_status", {"id": task_id}) is None:
        raise TaskNotFoundError(f"no task with id {task_id}")
    return False


def _retry_many(tx: _Tx, task_ids: Sequence[int], now: float) -> list[int]:
    import psycopg.errors

    try:
        rows = tx.rows("retry_tasks", {"ids": list(task_ids), "now": now})
    except psycopg.errors.UniqueViolation as exc:
        raise _Again("a unique_key was taken meanwhile") from exc
    for _, old_status, queue in rows:
        tx.count(queue, old_status, -1)
    if rows:
        tx.changed = True
    return sorted(int(r[0]) for r in rows)


def _expired(tx: _Tx, now: float, dead: Sequence[Owner]) -> list[Any]:
    rows = tx.rows("expired_claims", {"now": now})
    if dead:
        seen = {row[0] for row in rows}
        params = {"hosts": [o.host for o in dead], "pids": [o.pid for o in dead]}
        rows += [row for row in tx.rows("dead_owner_claims", params) if row[0] not in seen]
    return rows


def _declare(tx: _Tx, rows: Sequence[ScheduleRow], now: float) -> None:
    for row in rows:
        tx.rows(
            "declare_schedule",
            {
                "name": row.name, "task_type": row.task_type, "expression": row.expression,
                "queue_name": row.queue_name, "misfire": row.misfire,
                "next_fire": row.next_fire, "now": now,
            },
        )  # fmt: skip


def _fire(
    tx: _Tx,
    name: str,
    slots: Sequence[tuple[float, NewTask]],
    next_fire: float,
    now: float,
) -> list[tuple[float, int]]:
    # Under the schedule's advisory lock: whoever fires a slot first, the
    # others see it (and the unique slot record backs it up).
    tx.rows("lock_schedule", {"name": name})
    row = tx.one("schedule_last_slot", {"name": name})
    last = None if row is None else row[0]
    fired: list[tuple[float, int]] = []
    for slot, task in slots:
        if last is not None and slot <= last:
            continue
        if tx.one("slot_taken", {"name": name, "slot": slot}) is not None:
            continue
        [(task_id, _)] = _enqueue(tx, [task], now)
        tx.rows("record_slot", {"name": name, "slot": slot, "task_id": task_id})
        fired.append((slot, task_id))
    if fired:
        slot, task_id = fired[-1]
        params = {"name": name, "slot": slot, "task_id": task_id, "next_fire": next_fire}
        tx.rows("advance_schedule", params)
        tx.rows("prune_slots", {"name": name})
    else:
        tx.changed = False
    return fired


def _worker_seen(tx: _Tx, params: dict[str, Any]) -> None:
    tx.rows("worker_seen", params)
    tx.rows("forget_workers", {"before": params["now"] - FORGET_WORKERS_AFTER})
