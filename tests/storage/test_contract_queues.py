"""Contract: named queues and pauses (issue 8)."""

from __future__ import annotations

from support.contract import T0, claim, enqueue, status

from task_queue.storage.base import Storage


def test_a_claim_takes_only_from_the_queues_asked_for(storage: Storage) -> None:
    a = enqueue(storage, queue_name="a")
    b = enqueue(storage, queue_name="b", priority="critical")
    c = enqueue(storage, queue_name="c")
    assert [t.id for t in claim(storage, queues=["a", "c"])] == [a, c]
    assert status(storage, b) == "pending"
    assert [t.id for t in claim(storage, token=2)] == [b]  # None: every queue


def test_claim_order_holds_across_the_queues_served(storage: Storage) -> None:
    low_a = enqueue(storage, queue_name="a", priority="low")
    high_b = enqueue(storage, queue_name="b", priority="high")
    normal_a_late = enqueue(storage, T0 + 1, queue_name="a")
    normal_b = enqueue(storage, queue_name="b")
    order = [t.id for t in claim(storage, T0 + 2, queues=["a", "b"], limit=10)]
    assert order == [high_b, normal_b, normal_a_late, low_a]


def test_a_limit_is_a_limit_over_all_the_queues_served(storage: Storage) -> None:
    for queue_name in ("a", "b", "c"):
        for _ in range(5):
            enqueue(storage, queue_name=queue_name)
    assert len(claim(storage, limit=4)) == 4
    assert len(claim(storage, token=2, limit=4, queues=["a", "b", "c"])) == 4


def test_a_paused_queue_gives_nothing_until_resumed(storage: Storage) -> None:
    held = enqueue(storage, queue_name="held")
    free = enqueue(storage, queue_name="free")
    storage.pause("held", T0)
    storage.pause("held", T0 + 1)  # twice: harmless
    storage.pause("unused", T0)  # a queue with no task at all
    assert storage.paused() == {"held", "unused"}
    assert [t.id for t in claim(storage)] == [free]
    assert claim(storage, token=2, queues=["held"]) == []
    assert storage.resume("held") is True
    assert storage.resume("held") is False
    assert storage.paused() == {"unused"}
    assert [t.id for t in claim(storage, token=3)] == [held]


def test_counts_per_queue_add_up_to_the_counts(storage: Storage) -> None:
    for queue_name in ("a", "a", "b"):
        enqueue(storage, queue_name=queue_name)
    claim(storage, queues=["a"], limit=1)
    per_queue = storage.queue_counts()
    assert per_queue["a"]["pending"] == 1 and per_queue["a"]["running"] == 1
    assert per_queue["b"]["pending"] == 1
    assert storage.counts("a") == per_queue["a"]
    assert storage.counts("nobody").get("pending", 0) == 0
    total = storage.counts()
    for s in ("pending", "running"):
        assert total[s] == sum(q.get(s, 0) for q in per_queue.values())


def test_due_by_type_can_be_asked_per_queue(storage: Storage) -> None:
    enqueue(storage, queue_name="a", task_type="x")
    enqueue(storage, queue_name="b", task_type="y")
    assert storage.due_by_type(T0) == {"x": 1, "y": 1}
    assert storage.due_by_type(T0, ["b"]) == {"y": 1}
