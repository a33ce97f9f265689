"""payload's JSON shortcuts do what the json module does: decode() reads
text exactly as json.loads (it takes a shortcut for text that is one value
with nothing around it), and encode() writes exactly what a JSONEncoder
with our settings writes (its C encoder is built once)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from task_queue import PayloadError
from task_queue.payload import _ENCODER, decode, encode

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


@given(_values)
def test_encode_writes_what_the_json_encoder_writes(value: Any) -> None:
    try:
        ours = encode(value)
    except PayloadError:
        return  # refused before any encoding (an infinity), as before
    assert ours == (None if value is None else _ENCODER.encode(value))
