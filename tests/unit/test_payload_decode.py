"""payload.decode() reads JSON text exactly as json.loads does (it takes a
shortcut for text that is one value with nothing around it)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from task_queue.payload import decode

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _same(text: str) -> None:
    try:
        expected: Any = ("value", json.loads(text))
    except ValueError as exc:
        expected = ("error", type(exc), str(exc))
    try:
        got: Any = ("value", decode(text))
    except ValueError as exc:
        got = ("error", type(exc), str(exc))
    assert got == expected


@given(_values, st.sampled_from(["", " ", "\n", "\t "]), st.sampled_from(["", " ", "\n"]))
def test_what_json_wrote_reads_back_as_json_loads_reads_it(
    value: Any, before: str, after: str
) -> None:
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for text in (compact, json.dumps(value), before + compact + after):
        _same(text)


@given(st.text(max_size=30))
def test_any_text_reads_or_fails_as_json_loads_does(text: str) -> None:
    _same(text)


def test_null_is_none_and_trailing_garbage_is_refused() -> None:
    assert decode(None) is None
    for text in ['{"a":1} x', "[1] [2]", "", "nul", '"open']:
        _same(text)
