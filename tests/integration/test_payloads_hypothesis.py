"""Bad payloads, generated: rejected cleanly or round-tripped exactly.

For any value, ``enqueue(..., payload=value)`` either raises PayloadError
and writes nothing, or stores it so that ``get_task(id).payload`` is the
same value, type for type (``1`` stays an int, ``1.0`` a float, ``True`` a
bool, ``-0.0`` keeps its sign). Values JSON cannot carry exactly (NaN,
infinities, non-string keys, tuples, sets, bytes, lone surrogates) must be
rejected, never silently changed. The same holds for handler results.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from task_queue import PayloadError, TaskQueue, TaskStatus, Worker
from task_queue.payload import DEFAULT_MAX_BYTES, MAX_DEPTH

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Store:
    """One queue for all examples, and a plain connection to look at its file."""

    def __init__(self, path: Path) -> None:
        self.queue = TaskQueue(str(path), synchronous="NORMAL")
        self.raw = sqlite3.connect(path)

    def footprint(self) -> tuple[int, int]:
        """(rows, last id ever given): both unchanged when nothing was written."""
        rows = self.raw.execute("SELECT count(*) FROM tasks").fetchone()[0]
        seq = self.raw.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tasks'").fetchone()
        return int(rows), int(seq[0]) if seq else 0

    def close(self) -> None:
        self.raw.close()
        self.queue.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("payloads") / "queue.db")
    yield s
    s.close()


# -- what can and cannot round-trip ------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def must_reject(value: Any) -> bool:
    """True when JSON cannot carry ``value`` exactly (so storing it would change it)."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return _has_surrogate(value)
    if isinstance(value, list):
        return any(must_reject(v) for v in value)
    if isinstance(value, dict):
        return any(
            not isinstance(k, str) or _has_surrogate(k) or must_reject(v) for k, v in value.items()
        )
    return True  # tuples, sets, bytes, objects


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


# -- strategies ----------------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, categories=None), max_size=30)
surrogate_text = st.builds(
    lambda head, s, tail: head + s + tail,
    st.text(max_size=5),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.text(max_size=5),
)
huge_ints = st.builds(
    lambda digits, sign: sign * (10**digits + 7), st.integers(1, 5000), st.sampled_from([1, -1])
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    surrogate_text,
)
odd_leaves = st.one_of(
    st.binary(max_size=10),
    st.frozensets(st.integers(), max_size=3),
    st.tuples(st.integers(), st.text(max_size=3)),
)
keys = st.one_of(
    any_text,
    surrogate_text,
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.tuples(st.integers()),
)


def _nest(levels: int, leaf: Any, as_dict: bool) -> Any:
    value = leaf
    for _ in range(levels):
        value = {"k": value} if as_dict else [value]
    return value


deep = st.builds(_nest, st.integers(MAX_DEPTH - 5, 3 * MAX_DEPTH), st.integers(), st.booleans())
payloads = (
    st.recursive(
        st.one_of(scalars, odd_leaves),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(keys, children, max_size=5),
            st.tuples(children, children),
        ),
        max_leaves=25,
    )
    | deep
)


# -- properties ----------------------------------------------------------------------------------


@SETTINGS
@given(value=payloads)
def test_payload_is_rejected_cleanly_or_round_trips_exactly(store: Store, value: Any) -> None:
    before = store.footprint()
    try:
        task_id = store.queue.enqueue("p", "t", value)
    except PayloadError:
        event("rejected")
        assert store.footprint() == before
        return
    event("stored")
    assert not must_reject(value), f"stored a value JSON cannot carry: {value!r}"
    assert depth(value) <= MAX_DEPTH + 1
    task = store.queue.get_task(task_id)
    assert task is not None
    assert same(task.payload, value), (task.payload, value)


@SETTINGS
@given(value=payloads)
def test_enqueue_many_with_one_bad_payload_writes_nothing(store: Store, value: Any) -> None:
    before = store.footprint()
    batch = [
        {"name": "fine", "task_type": "t", "payload": {"ok": 1}},
        {"name": "maybe", "task_type": "t", "payload": value},
    ]
    try:
        ids = store.queue.enqueue_many(batch)
    except PayloadError:
        assert store.footprint() == before
        return
    assert len(ids) == 2
    second = store.queue.get_task(ids[1])
    assert second is not None and same(second.payload, value)


@SETTINGS
@given(value=payloads)
def test_result_is_rejected_cleanly_or_round_trips_exactly(store: Store, value: Any) -> None:
    store.queue.enqueue("r", "result-test")
    task = store.queue.dequeue(task_types=["result-test"])
    assert task is not None
    try:
        store.queue.complete_task(task, value)
    except PayloadError:
        row = store.queue.get_task(task.id)
        assert row is not None and row.status == TaskStatus.RUNNING and row.result is None
        assert store.queue.complete_task(task, None)  # the claim was kept
        return
    assert not must_reject(value)
    row = store.queue.get_task(task.id)
    assert row is not None and row.status == TaskStatus.COMPLETED
    assert same(row.result, value) or (value is None and row.result is None)


@settings(max_examples=15, deadline=None)
@given(size=st.integers(0, 3 * 1024 * 1024), char=st.sampled_from(["x", "é", "😀", "\x00"]))
@example(size=3 * 1024 * 1024, char="😀")
@example(size=7 * 1024 * 1024, char="x")
def test_megabytes_round_trip(store: Store, size: int, char: str) -> None:
    per_char = len(json.dumps(char, ensure_ascii=False).encode()) - 2  # "\x00" is \u0000
    text = char * (size // per_char)
    task_id = store.queue.enqueue("big", "t", {"blob": text})
    task = store.queue.get_task(task_id)
    assert task is not None and task.payload == {"blob": text}


# -- fixed examples at the edges -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        [1, float("-inf")],
        {"a": {"b": float("inf")}},
        {1: "x"},
        {None: "x"},
        {("t",): 1},
        (1, 2),
        [{1, 2}],
        b"bytes",
        "lone \udc80 surrogate",
        {"\ud800": 1},
        _nest(MAX_DEPTH + 50, 1, False),
        _nest(5000, 1, True),  # deeper than the recursion limit
        10**5000,
        -(10**4400),
    ],
    ids=lambda v: type(v).__name__,
)
def test_known_bad_payloads_are_rejected(store: Store, value: Any) -> None:
    before = store.footprint()
    with pytest.raises(PayloadError):
        store.queue.enqueue("bad", "t", value)
    assert store.footprint() == before


@pytest.mark.parametrize(
    "value",
    [
        0,
        -0.0,
        1.0,
        True,
        "",
        [],
        {},
        "\x00\x01\x1f\x7f",
        "𝕦𝕟𝕚𝕔𝕠𝕕𝕖 and \u2028 line separators",
        10**3000,
        -(2**63),
        2**64,
        5e-324,
        1.7976931348623157e308,
        _nest(MAX_DEPTH - 1, "leaf", False),
        {"": None, "nested": {"list": [1, 2.5, "three", None, False]}},
    ],
    ids=repr,
)
def test_edge_payloads_round_trip(store: Store, value: Any) -> None:
    task_id = store.queue.enqueue("edge", "t", value)
    task = store.queue.get_task(task_id)
    assert task is not None and same(task.payload, value)


def test_size_limit_is_exact_and_nothing_is_written(store: Store) -> None:
    # The encoded JSON of a string is the string plus two quotes.
    limit = DEFAULT_MAX_BYTES
    before = store.footprint()
    with pytest.raises(PayloadError, match="limit"):
        store.queue.enqueue("too big", "t", "x" * (limit - 1))
    assert store.footprint() == before
    task_id = store.queue.enqueue("just fits", "t", "x" * (limit - 2))
    task = store.queue.get_task(task_id)
    assert task is not None and len(task.payload) == limit - 2


def test_a_handler_returning_a_bad_result_fails_its_task_cleanly(tmp_path: Path) -> None:
    from support import wait_until

    q = TaskQueue(str(tmp_path / "q.db"))
    results: dict[str, Any] = {"nan": float("nan"), "tuple": (1, 2), "bytes": b"x"}
    ids = {name: q.enqueue(name, "t", name, max_retries=0) for name in results}
    ok = q.enqueue("ok", "fine", None)
    worker = Worker(q, {"t": lambda key: results[key], "fine": lambda _: [1, 2]}, concurrency=2)
    worker.start()
    try:
        wait_until(lambda: q.get_queue_stats()["pending"] + q.get_queue_stats()["running"] == 0)
    finally:
        worker.stop(10)
    for task_id in ids.values():
        task = q.get_task(task_id)
        assert task is not None and task.status == TaskStatus.FAILED
        assert task.error_message is not None and "PayloadError" in task.error_message
    done = q.get_task(ok)
    assert done is not None and done.status == TaskStatus.COMPLETED and done.result == [1, 2]
    q.close()


def test_recursion_limit_is_untouched() -> None:
    """The deep-nesting checks must not have raised the interpreter's limit."""
    assert sys.getrecursionlimit() <= 10_000
