"""The command line's text: durations, relative and local times, escaping,
columns (task_queue.cli.format; pure functions, no queue)."""

from __future__ import annotations

import datetime as dt

import pytest

from task_queue.cli.format import (
    Column,
    clean,
    elapsed,
    fit,
    local_iso,
    parse_duration,
    relative,
    span,
    table,
    width,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0), ("1w", 604800.0),
        ("1h30m", 5400.0), ("1.5h", 5400.0), (".5s", 0.5), ("90", 90.0), ("0", 0.0),
        (" 2H ", 7200.0), ("0.25", 0.25),
    ],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "s", "5x", "-5m", "5 m", "m5", "5m-", "inf", "nan", "1e3", "5mm", "1h 30m"]
)
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad duration .*like 30s, 5m, 2h or 7d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["9" * 400 + "d", "9" * 400])
def test_a_duration_too_large_for_a_float_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (59.4, "59s"), (59.6, "1m"), (299, "5m"), (3599, "1h"),
     (7200, "2h"), (86399, "1d"), (3 * 86400, "3d"), (-300, "5m")],
)  # fmt: skip
def test_span_rounds_to_the_largest_unit(seconds: float, text: str) -> None:
    assert span(seconds) == text


def test_relative_times() -> None:
    now = 1_800_000_000.0
    assert relative(now + 300, now) == "in 5m"
    assert relative(now - 7200, now) == "2h ago"
    assert relative(now + 0.4, now) == "now"
    assert relative(None, now) == ""
    far = now - 30 * 86400
    assert relative(far, now) == dt.datetime.fromtimestamp(far).strftime("%Y-%m-%d")


def test_local_iso_is_local_time_with_its_offset() -> None:
    when = 1_800_000_000.0
    text = local_iso(when)
    assert dt.datetime.fromisoformat(text).timestamp() == when
    assert local_iso(when, when - 120) == f"{text} (in 2m)"
    assert local_iso(None) == ""


def test_elapsed() -> None:
    assert elapsed(0.0123) == "0.012s"
    assert elapsed(12.34) == "12.3s"
    assert elapsed(185) == "3m05s"
    assert elapsed(3 * 3600 + 120) == "3h02m"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain name", "plain name"),
        ("héllo wörld ✓ 日本", "héllo wörld ✓ 日本"),
        ("red\x1b[31m", "red\\x1b[31m"),
        ("two\nlines\r", "two\\nlines\\r"),
        ("bidi \u202eevil", "bidi \\u202eevil"),
        ("bell\x07 del\x7f c1\x9b", "bell\\x07 del\\x7f c1\\x9b"),
        ("sep\u2028x", "sep\\u2028x"),
        ("lone \ud800", "lone \\ud800"),
    ],
)
def test_clean_escapes_what_could_drive_a_terminal(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_clean_keeps_what_it_is_told_to() -> None:
    assert clean("a\tb\nc\x1b", keep="\n\t") == "a\tb\nc\\x1b"


def test_width_and_fit_count_wide_characters_twice() -> None:
    assert width("abc") == 3
    assert width("日本") == 4
    assert width("e\u0301") == 1  # a combining accent takes no column
    assert fit("abcdef", 4) == "abc…"
    assert fit("abc", 4) == "abc"
    assert width(fit("日本語のテキスト", 7)) <= 7


def test_table_aligns_and_right_aligns_numbers() -> None:
    lines = table(
        [Column("ID", right=True), Column("NAME")], [["1", "first"], ["100", "second task"]]
    )
    assert lines == [" ID  NAME", "  1  first", "100  second task"]


def test_table_squeezes_the_squeezable_columns_to_fit() -> None:
    columns = [Column("ID", right=True), Column("TYPE", minimum=4), Column("NAME", minimum=6)]
    rows = [["12345", "t" * 60, "n" * 80]]
    lines = table(columns, rows, limit=60)
    assert all(width(line) <= 60 for line in lines)
    assert "12345" in lines[1]  # numbers are never cut
    assert lines[1].endswith("…")


def test_table_stops_squeezing_at_the_minimums() -> None:
    lines = table([Column("A"), Column("B", minimum=3)], [["x" * 30, "y" * 30]], limit=10)
    assert lines[1] == "x" * 30 + "  yy…"
