"""Storage contract, stateful: any sequence of operations keeps the storage
equal to a model of it.

Hypothesis drives enqueue / claim / complete / fail / release / renew /
cancel / retry / purge / rescue and moves the clock; the model predicts
every answer (which tasks a claim takes, which claims are recorded, which
leases are expired) and every task's status. The invariant is what
``counts()`` promises: it always equals the rows counted by
status, here counted both through ``list_by_status`` and in the model.

Outcomes are applied to claims drawn from *every* claim ever issued, so
stale tokens (a claim released, rescued, cancelled, finished) keep
exercising the fencing rule alongside the live ones.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from support.contract import LEASE, T0, Backend, claim_request, new_task

from task_queue.errors import DuplicateTaskError, TaskNotFoundError
from task_queue.storage.base import Completion, FailureRecord, Rescue, Storage
from task_queue.task import Claim, TaskStatus

LIVE = ("pending", "running")
FINISHED = ("completed", "failed", "cancelled")
UNKNOWN = 10**6  # an id no task has


@dataclasses.dataclass
class Model:
    """What the storage should hold for one task."""

    priority: int
    run_at: float
    max_retries: int
    unique_key: str | None
    status: str = "pending"
    token: int | None = None
    lease: float | None = None
    attempts: int = 0
    retry_count: int = 0
    completed_at: float | None = None


class StorageMachine(RuleBasedStateMachine):
    #: Set by the test: opens a storage object on a fresh empty database.
    new_storage: Callable[[], Storage]

    def __init__(self) -> None:
        super().__init__()
        self.storage = type(self).new_storage()
        self.now = T0
        self.tasks: dict[int, Model] = {}
        self.claims: list[Claim] = []  # every claim ever issued, held or not
        self.next_token = 1

    def teardown(self) -> None:
        self.storage.close()

    # -- helpers -------------------------------------------------------------
    def holder(self, key: str | None) -> int | None:
        if key is None:
            return None
        for task_id, m in self.tasks.items():
            if m.unique_key == key and m.status in LIVE:
                return task_id
        return None

    def held(self, claim: Claim) -> bool:
        m = self.tasks.get(claim.task_id)
        return m is not None and m.status == "running" and m.token == claim.token

    def finish(self, m: Model, status: str) -> None:
        m.status, m.completed_at, m.lease = status, self.now, None

    # -- rules -----------------------------------------------------------------
    @initialize()
    def seed(self) -> None:
        # Hypothesis switches random subsets of rules off per example (swarm
        # testing): start every example with claims in hand, so the outcome
        # rules have something to act on even when claim is switched off.
        self.enqueue(
            [(1, None, 1, None), (4, None, 0, "k1"), (2, None, 2, None), (3, 3.0, 1, None)]
        )
        self.claim(2)

    @rule(seconds=st.sampled_from([0.0, 0.5, 5.0, LEASE + 1]))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    @rule(
        rows=st.lists(
            st.tuples(
                st.integers(1, 4),  # priority
                st.sampled_from([None, 0.0, 3.0, 40.0]),  # delay
                st.integers(0, 2),  # max_retries
                st.sampled_from([None, None, "k1", "k2"]),  # unique_key
            ),
            min_size=1,
            max_size=4,
        )
    )
    def enqueue(self, rows: list[tuple[int, float | None, int, str | None]]) -> None:
        batch = [
            new_task(self.now, priority=p, delay=d, max_retries=r, unique_key=k)
            for p, d, r, k in rows
        ]
        stored = self.storage.enqueue(batch, self.now)
        assert len(stored) == len(batch)
        for row, (task_id, created) in zip(batch, stored, strict=True):
            holder = self.holder(row.unique_key)
            if holder is not None:
                assert (task_id, created) == (holder, False)
                continue
            assert created and task_id not in self.tasks
            self.tasks[task_id] = Model(row.priority, row.run_at, row.max_retries, row.unique_key)

    @rule(limit=st.integers(1, 3))
    def claim(self, limit: int) -> None:
        token = self.next_token
        self.next_token += 1
        _, tasks = self.storage.claim(claim_request(token, limit=limit), self.now)
        due = [
            (i, m) for i, m in self.tasks.items() if m.status == "pending" and m.run_at <= self.now
        ]
        due.sort(key=lambda item: (-item[1].priority, item[1].run_at, item[0]))
        assert [t.id for t in tasks] == [i for i, _ in due[:limit]]
        for task in tasks:
            m = self.tasks[task.id]
            m.status, m.token, m.lease = "running", token, self.now + LEASE
            m.attempts += 1
            assert task.attempts == m.attempts
            self.claims.append(task.claim)

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        expected = self.held(claim)
        recorded = self.storage.complete([Completion(claim, '"ok"')], self.now)
        assert recorded == ({claim} if expected else set())
        if expected:
            self.finish(self.tasks[claim.task_id], "completed")

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), retry_in=st.sampled_from([None, 0.0, 2.0]))
    def fail(self, data: st.DataObject, retry_in: float | None) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        expected = self.held(claim)
        failure = FailureRecord(error="boom", traceback=None, retry_in=retry_in)
        assert self.storage.fail(claim, failure, self.now) is expected
        if expected:
            m = self.tasks[claim.task_id]
            if retry_in is None:
                self.finish(m, "failed")
            else:
                m.status, m.run_at, m.lease = "pending", self.now + retry_in, None
                m.retry_count += 1

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        expected = self.held(claim)
        assert self.storage.release([claim]) == ([claim] if expected else [])
        if expected:
            m = self.tasks[claim.task_id]
            m.status, m.lease = "pending", None
            m.attempts = max(0, m.attempts - 1)

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        expected = self.held(claim)
        assert self.storage.renew([claim], self.now, LEASE) == ({claim} if expected else set())
        if expected:
            self.tasks[claim.task_id].lease = self.now + LEASE

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from([*self.tasks, UNKNOWN]))
        m = self.tasks.get(task_id)
        if m is None:
            with pytest.raises(TaskNotFoundError):
                self.storage.cancel(task_id, self.now)
            return
        expected = m.status in LIVE
        assert self.storage.cancel(task_id, self.now) is expected
        if expected:
            self.finish(m, "cancelled")

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from([*self.tasks, UNKNOWN]))
        m = self.tasks.get(task_id)
        if m is None:
            with pytest.raises(TaskNotFoundError):
                self.storage.retry(task_id, self.now)
            return
        if m.status in ("failed", "cancelled") and self.holder(m.unique_key) is not None:
            with pytest.raises(DuplicateTaskError):
                self.storage.retry(task_id, self.now)
            return
        expected = m.status in ("failed", "cancelled")
        assert self.storage.retry(task_id, self.now) is expected
        if expected:
            m.status, m.run_at, m.retry_count, m.completed_at = "pending", self.now, 0, None

    @rule(
        statuses=st.lists(st.sampled_from(FINISHED), min_size=1, unique=True),
        offset=st.sampled_from([-5.0, 0.0, 1.0]),  # before: a while ago, now, or later
        limit=st.integers(1, 4),
    )
    def purge(self, statuses: list[str], offset: float, limit: int) -> None:
        before = self.now + offset
        eligible = {
            i
            for i, m in self.tasks.items()
            if m.status in statuses and m.completed_at is not None and m.completed_at < before
        }
        deleted = self.storage.purge(statuses, before, limit)
        assert deleted == min(limit, len(eligible))
        # Which ones go when more are eligible than the limit is the
        # backend's choice: read it back.
        gone = {i for i in self.tasks if self.storage.get(i) is None}
        assert gone <= eligible and len(gone) == deleted
        for task_id in gone:
            del self.tasks[task_id]

    @rule(after=st.sampled_from([0.0, LEASE + 1]))
    def rescue(self, after: float) -> None:
        # Time moves first: one step from a claim to a lease found expired.
        self.now += after
        found = self.storage.expired(self.now)
        lost = {i for i, m in self.tasks.items() if m.status == "running" and m.lease < self.now}
        assert {t.id for t in found} == lost
        rescues = [
            Rescue(
                claim=t.claim,
                lease_expires_at=t.lease_expires_at,
                retry_in=0.0 if t.retry_count < t.max_retries else None,
                error="lost",
            )
            for t in found
        ]
        applied = dict(self.storage.rescue(rescues, self.now))
        assert set(applied) == lost
        for task_id, new_status in applied.items():
            m = self.tasks[task_id]
            if m.retry_count < m.max_retries:
                assert new_status == "pending"
                m.status, m.run_at, m.lease = "pending", self.now, None
                m.retry_count += 1
            else:
                assert new_status == "failed"
                self.finish(m, "failed")

    # -- invariants ----------------------------------------------------------------
    @invariant()
    def counts_equal_the_rows_by_status(self) -> None:
        counts = {s: n for s, n in self.storage.counts().items() if n}
        listed = Counter(
            t.status.value for s in TaskStatus for t in self.storage.list_by_status(s.value, 10**6)
        )
        modelled = Counter(m.status for m in self.tasks.values())
        assert counts == dict(listed) == dict(modelled)

    @invariant()
    def every_task_is_as_modelled(self) -> None:
        for task_id, m in self.tasks.items():
            task = self.storage.get(task_id)
            assert task is not None
            seen = (task.status.value, task.attempts, task.retry_count, task.completed_at)
            assert seen == (m.status, m.attempts, m.retry_count, m.completed_at), task_id
            if m.status == "running":
                assert (task.claim_token, task.lease_expires_at) == (m.token, m.lease)
            if m.status == "pending":
                assert task.run_at == m.run_at


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,  # a commit's fsync time is the disk's business, not the contract's
    suppress_health_check=[HealthCheck.too_slow],
)


def test_any_sequence_of_operations_keeps_the_storage_equal_to_its_model(
    backend: Backend,
) -> None:
    class Machine(StorageMachine):
        @staticmethod
        def new_storage() -> Storage:
            return backend.fresh()()

    run_state_machine_as_test(Machine, settings=SETTINGS)
