"""Property-based checks of every reader of rating tables and of the CLI commands that read them.

Random tables with awkward ids (``007`` next to ``7``, ``NA``, ``null``, ``None``, ``nan``,
``1e3``, unicode, surrounding spaces, formula text ``=1+1``), NaN and empty cells, numbers
written as text, repeated rows, empty and header-only files and wrong column names are written
to a temporary folder as CSV (and Parquet where the reader takes it). Each reader may do one of
two things: give the right answer (ids as text exactly as written, less surrounding spaces; vote
counts and MOS equal to a plain-Python recomputation) or raise a :class:`ToolkitError` with a
one-line message. Any other exception fails the test.

The examples are derandomised and no example database is kept, so every run checks the same
tables.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from toolkit.analysis.pipeline import AnalysisOptions, analyze_votes, read_votes
from toolkit.cli import main
from toolkit.convert.readers import load_labels
from toolkit.errors import InputError, ToolkitError
from toolkit.evaluation.inputs import read_scores
from toolkit.io import ID_COLUMNS, csv_unescape_value, read_table
from toolkit.qalign import COUNT_COLUMNS
from toolkit.store import (
    Item,
    Rater,
    Rating,
    Store,
    create_study,
    get_study,
    head_revision,
    import_votes,
    upgrade,
    votes_frame,
)
from toolkit.store.studies import read_item_manifest

T = TypeVar("T")

FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --------------------------------------------------------------------------- cells

ODD_IDS = [
    *("007", "7", "7.0", "0", "-0", "1e3", "inf", "NA", "null", "None", "nan", "NaN", "#N/A", "TRUE"),
    *("é", "日本語", "Ωmega", " x", "x ", " 007 ", "=1+1", "+1", "-2", "@a", "'q", "a,b", 'say "hi"', "a;b"),
]
BLANK_IDS = ["", "  "]
ID_ALPHABET = "ab7 0.-=é'\",\t\u00a0"

id_cells = st.one_of(
    st.sampled_from(ODD_IDS),
    st.sampled_from(ODD_IDS + BLANK_IDS),
    st.text(alphabet=ID_ALPHABET, min_size=1, max_size=5),
)
good_ids = st.one_of(
    st.sampled_from(ODD_IDS), st.text(alphabet=ID_ALPHABET, min_size=1, max_size=5).filter(lambda s: s.strip() != "")
)

VALID_VOTES = ["1", "2", "3", "4", "5", " 3", "4 ", "3.0", "5.00", "1e0", "+2"]
BAD_VOTES = ["", "NA", "nan", "null", "None", "0", "6", "2.5", "x", "=1+1", "inf", "-1", "1e3", "True"]
vote_cells = st.one_of(st.sampled_from(VALID_VOTES), st.sampled_from(VALID_VOTES + BAD_VOTES))
good_votes = st.sampled_from(VALID_VOTES)
NUMBER_TEXT = ["0", "1", "2.5", " 3 ", "1e3", "-4", "+7", "10.25", "3.0"]
BAD_NUMBERS = ["", "NA", "nan", "null", "None", "x", "=1+1", "inf"]


def expected_id(cell: str) -> str | None:
    """An id as every reader documents it: the cell less surrounding spaces; blank is missing."""
    return cell.strip() or None


def number(cell: str) -> float | None:
    """The finite number a cell writes, or None."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def vote_level(cell: str) -> int | None:
    value = number(cell)
    return int(value) if value is not None and value in (1, 2, 3, 4, 5) else None


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_parquet(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    pd.DataFrame([list(r) for r in rows], columns=list(header), dtype=object).to_parquet(path, index=False)
    return path


def outcome(call: Callable[[], T]) -> tuple[T | None, ToolkitError | None]:
    """The result of ``call``, or the toolkit error it raised (with a one-line message)."""
    try:
        result = call()
    except ToolkitError as exc:
        message = str(exc)
        event(f"refused: {type(exc).__name__}: {message.split(': ', 1)[-1][:60]}")
        assert message.strip() and "\n" not in message.strip(), repr(message)
        assert "Traceback" not in message
        return None, exc
    event("read")
    return result, None


def first_per_key(rows: list[list[str]], key: Callable[[list[str]], object]) -> list[list[str]]:
    """The first of the rows sharing a key."""
    seen: set[object] = set()
    out = []
    for row in rows:
        if key(row) not in seen:
            seen.add(key(row))
            out.append(row)
    return out


def unique_per_name(rows: list[list[str]]) -> list[list[str]]:
    """Rows with their first cell (after stripping) unique: one row per item."""
    return first_per_key(rows, lambda row: expected_id(row[0]))


def with_repeats(draw: st.DrawFn, rows: list[list[str]]) -> list[list[str]]:
    """``rows`` with some of them repeated (duplicate rows)."""
    repeat: bool = draw(st.booleans())
    if rows and repeat:
        extra = draw(st.lists(st.sampled_from(rows), max_size=3))
        rows = rows + [list(r) for r in extra]
    return rows


@st.composite
def vote_rows(
    draw: st.DrawFn, clean: bool | None = None, unique_pairs: bool = False, max_rows: int = 12
) -> list[list[str]]:
    """item, rater, vote rows. A clean table (drawn half of the time unless ``clean`` is given)
    has no blank id and no invalid vote; with ``unique_pairs`` it has no rater voting twice on
    one item either."""
    if clean is None:
        clean = draw(st.booleans())
    items = draw(st.lists(good_ids if clean else id_cells, min_size=1, max_size=5))
    raters = draw(st.lists(good_ids if clean else id_cells, min_size=1, max_size=4))
    votes = good_votes if clean else vote_cells
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from(items), st.sampled_from(raters), votes).map(list),
            min_size=int(clean),
            max_size=max_rows,
        )
    )
    if clean and unique_pairs:
        return first_per_key(rows, lambda row: (expected_id(row[0]), expected_id(row[1])))
    return with_repeats(draw, rows)


def vote_problem(rows: Sequence[Sequence[str]]) -> bool:
    """Whether a long vote table has a blank id or a vote that is not a level 1-5."""
    return any(expected_id(i) is None or expected_id(r) is None or vote_level(v) is None for i, r, v in rows)


def per_item(rows: Sequence[Sequence[str]]) -> dict[str, list[int]]:
    """Votes per item (stripped id), items in order of first appearance."""
    out: dict[str, list[int]] = {}
    for item, _, vote in rows:
        level = vote_level(vote)
        key = expected_id(item)
        assert key is not None and level is not None
        out.setdefault(key, []).append(level)
    return out


# --------------------------------------------------------------------------- read_table


@st.composite
def id_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = [draw(st.sampled_from(["item", "Item", " item ", "ITEM"])), "rater", "vote", "note"]
    rows = draw(
        st.lists(
            st.tuples(id_cells, id_cells, vote_cells, st.sampled_from(["", "NA", "x", "1e3", "=1+1"])).map(list),
            max_size=10,
        )
    )
    return header, with_repeats(draw, rows)


@FAST
@given(table=id_tables(), fmt=st.sampled_from(["csv", "parquet"]), vote_as_text=st.booleans())
def test_read_table_keeps_ids_as_written(table: tuple[list[str], list[list[str]]], fmt: str, vote_as_text: bool):
    header, rows = table
    text_columns = {*ID_COLUMNS, "vote"} if vote_as_text else ID_COLUMNS
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"t.{fmt}", header, rows)
        frame, error = outcome(lambda: read_table(path, text_columns=text_columns))
    assert error is None, error
    assert frame is not None
    assert list(frame.columns) == header
    assert len(frame) == len(rows)
    for position, name in enumerate(["item", "rater"] + (["vote"] if vote_as_text else [])):
        column = header[position] if name == "item" else name
        got = [None if v is None else v for v in frame[column].tolist()]
        assert got == [expected_id(r[position]) for r in rows], column
        assert all(v is None or isinstance(v, str) for v in got)


json_ids = st.one_of(
    good_ids,
    st.integers(min_value=-5, max_value=10**6),
    st.sampled_from([7.0, 1e3, 2.5, -0.0]),
    st.none(),
    st.sampled_from(BLANK_IDS),
)


def expected_json_id(value: object) -> str | None:
    """An id as Parquet or JSON stores it: text stripped, numbers as decimal text (7.0 -> "7")."""
    if value is None:
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip() or None


@FAST
@given(
    values=st.lists(st.tuples(json_ids, st.sampled_from([1, 2, 3, None])), min_size=1, max_size=8),
    fmt=st.sampled_from(["json", "jsonl", "parquet"]),
    numbers_only=st.booleans(),
)
def test_read_table_ids_stored_as_numbers(values: list[tuple[Any, Any]], fmt: str, numbers_only: bool):
    """Parquet and JSON keep the types they were written with; ids still come back as text."""
    if numbers_only:  # a column of numbers only (Parquet: int64, or float64 with a gap)
        values = [(v if isinstance(v, int) else None, vote) for v, vote in values]
    frame = pd.DataFrame({"item": [v for v, _ in values], "vote": [vote for _, vote in values]})
    if not numbers_only:
        frame["item"] = frame["item"].astype(object)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t.{fmt}"
        if fmt == "parquet":
            if not numbers_only:  # Parquet needs one type per column: mixed ids go as text
                frame["item"] = frame["item"].map(lambda v: v if v is None else str(v))
            frame.to_parquet(path, index=False)
        else:
            frame.to_json(path, orient="records", lines=fmt == "jsonl")
        written = frame["item"].tolist()
        table, error = outcome(lambda: read_table(path))
    assert error is None, error
    assert table is not None
    got = table["item"].tolist()
    assert got == [expected_json_id(None if isinstance(v, float) and math.isnan(v) else v) for v in written]


@FAST
@given(
    header=st.lists(st.sampled_from(["item", "rater", "vote", "Item", "x"]), min_size=1, max_size=3),
    required=st.booleans(),
)
def test_read_table_empty_and_header_only_files(header: list[str], required: bool):
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.csv"
        empty.write_text("")
        _, error = outcome(lambda: read_table(empty))
        assert error is not None
        only = write_csv(Path(folder) / "header.csv", header, [])
        frame, error = outcome(lambda: read_table(only, required=["item"] if required else ()))
        assert error is None and frame is not None and len(frame) == 0


@FAST
@given(rows=st.lists(st.tuples(id_cells, id_cells).map(list), min_size=1, max_size=6))
def test_read_table_required_blank_id_names_its_line(rows: list[list[str]]):
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder) / "t.csv", ["item", "rater"], rows)
        frame, error = outcome(lambda: read_table(path, required=["item", "rater"]))
    # the first blank of the first column (in the header's order) that has one
    blanks = [[i for i, row in enumerate(rows) if expected_id(row[c]) is None] for c in (0, 1)]
    first = next((column for column in blanks if column), None)
    if first is not None:
        assert error is not None
        assert f"line {first[0] + 2}:" in str(error)
    else:
        assert error is None and frame is not None
        assert frame.to_numpy().tolist() == [[c.strip() for c in row] for row in rows]


# --------------------------------------------------------------------------- analyze_votes(read_votes)


def check_item_stats(stats: pd.DataFrame, rows: Sequence[Sequence[str]]) -> None:
    expected = per_item(rows)
    assert list(stats.index) == list(expected)
    for item, levels in expected.items():
        assert int(stats.at[item, "n"]) == len(levels)
        assert stats.at[item, "mos"] == pytest.approx(sum(levels) / len(levels))
        counts = Counter(levels)
        assert [int(stats.at[item, c]) for c in COUNT_COLUMNS] == [counts[k] for k in (5, 4, 3, 2, 1)]


@FAST
@given(rows=vote_rows(), fmt=st.sampled_from(["csv", "parquet"]))
def test_analyze_votes_counts_and_means(rows: list[list[str]], fmt: str):
    options = AnalysisOptions(model="mos", agreement_splits=0)
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"votes.{fmt}", ["item", "rater", "vote"], rows)
        analysis, error = outcome(lambda: analyze_votes(read_votes(path), options, source=str(path)))
    if not rows or vote_problem(rows):
        assert error is not None
        return
    assert error is None, error
    assert analysis is not None
    check_item_stats(analysis.item_stats, rows)
    scores = analysis.result.items["score"]
    for item, levels in per_item(rows).items():
        assert scores[item] == pytest.approx(sum(levels) / len(levels))
    assert analysis.n_votes == len(rows)
    assert set(analysis.result.raters.index) == {expected_id(r) for _, r, _ in rows}


@settings(FAST, max_examples=30)
@given(rows=vote_rows(clean=True))
def test_analyze_votes_subject_model_keeps_counts(rows: list[list[str]]):
    """The default subject model may refuse data too thin for it, but only with a toolkit error."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder) / "votes.csv", ["item", "rater", "vote"], rows)
        analysis, error = outcome(lambda: analyze_votes(read_votes(path), AnalysisOptions(agreement_splits=5)))
    if not rows:
        assert error is not None
        return
    if analysis is not None:
        check_item_stats(analysis.item_stats, rows)
        assert set(analysis.result.items.index) == set(per_item(rows))


@FAST
@given(
    header=st.lists(st.sampled_from(["item", "rater", "vote", "Vote", "rating", "user", " item"]), max_size=3),
    rows=st.lists(st.tuples(good_ids, good_ids, good_votes).map(list), max_size=3),
)
def test_read_votes_wrong_columns_or_empty(header: list[str], rows: list[list[str]]):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "votes.csv"
        if header:
            write_csv(path, header, [r[: len(header)] for r in rows])
        else:
            path.write_text("")
        analysis, error = outcome(lambda: analyze_votes(read_votes(path), AnalysisOptions(model="mos")))
    if header != ["item", "rater", "vote"] or not rows:
        assert error is not None
    elif error is not None:  # the right columns: only bad cells may fail
        pytest.fail(f"unexpected error {error}")


# --------------------------------------------------------------------------- load_labels


def blank_row(row: Sequence[str]) -> bool:
    """A record read_rating_table skips: every cell empty."""
    return all(c == "" for c in row)


@st.composite
def mos_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """path and MOS (and SD) per item; clean half of the time: ids and numbers all usable."""
    header = draw(st.sampled_from([["path", "mos"], ["image", "MOS"], ["path", "mos", "sd"], ["file", "quality"]]))
    clean = draw(st.booleans())
    numbers = st.sampled_from(NUMBER_TEXT if clean else NUMBER_TEXT + BAD_NUMBERS)
    sds = st.sampled_from(["0.5", ""] if clean else ["0.5", "", "NA"])
    cells = [good_ids if clean else id_cells, numbers] + [sds] * (len(header) - 2)
    rows = draw(st.lists(st.tuples(*cells).map(list), max_size=8))
    if clean:
        return header, unique_per_name(rows)
    return header, with_repeats(draw, rows)


@FAST
@given(table=mos_tables(), fmt=st.sampled_from(["csv", "parquet"]))
def test_load_labels_mos_table(table: tuple[list[str], list[list[str]]], fmt: str):
    header, rows = table
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"mos.{fmt}", header, rows)
        labels, error = outcome(lambda: load_labels(path, kind="mos"))
    kept = [r for r in rows if not blank_row(r)] if fmt == "csv" else rows
    names = [expected_id(r[0]) for r in kept]
    mos = [number(r[1]) for r in kept]
    sds = [r[2] for r in kept] if len(header) > 2 else []
    bad = (
        not kept
        or None in names
        or None in mos
        or len(set(mos)) < 2  # the scale comes from the data: one MOS value spans none
        or len(set(names)) < len(names)
        or any(s not in ("", "0.5") for s in sds)
    )
    if bad:
        assert error is not None
        return
    assert error is None, error
    assert labels is not None
    assert labels.frame["path"].tolist() == names
    assert labels.frame["mos"].tolist() == pytest.approx(mos)
    assert labels.kind == "mos"


@st.composite
def count_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """path, c1 .. c5 (KonIQ's histogram); clean half of the time: counts all usable."""
    header = ["path", "c1", "c2", "c3", "c4", "c5"]
    clean = draw(st.booleans())
    good = ["0", "1", "2", "3", " 4", "10", "2.0"]
    counts = st.sampled_from(good if clean else good + ["", "NA", "-1", "x", "1e3", "inf"])
    some = st.sampled_from(["1", " 3", "12"]) if clean else counts  # at least one vote per item
    rows = draw(
        st.lists(st.tuples(good_ids if clean else id_cells, counts, counts, some, counts, counts).map(list), max_size=6)
    )
    if clean:
        return header, unique_per_name(rows)
    return header, with_repeats(draw, rows)


@FAST
@given(table=count_tables(), fmt=st.sampled_from(["csv", "parquet"]))
def test_load_labels_counts_table(table: tuple[list[str], list[list[str]]], fmt: str):
    header, rows = table
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"counts.{fmt}", header, rows)
        labels, error = outcome(lambda: load_labels(path))
    kept = [r for r in rows if not blank_row(r)] if fmt == "csv" else rows
    names = [expected_id(r[0]) for r in kept]
    # a cell that is no number counts as -1: refused like a negative count
    hist = [[-1.0 if number(c) is None else float(c) for c in r[1:]] for r in kept]
    bad = (
        not kept
        or None in names
        or len(set(names)) < len(names)
        or any(c < 0 for h in hist for c in h)
        or any(sum(h) <= 0 for h in hist)
    )
    if bad:
        assert error is not None
        return
    totals = [sum(h) for h in hist]
    means = [sum(k * c for k, c in zip(range(1, 6), h)) / t for h, t in zip(hist, totals)]
    if len(set(means)) < 2:
        assert error is not None and str(path) in str(error)  # no range of MOS to put levels on
        return
    assert error is None, error
    assert labels is not None and labels.kind == "counts"
    assert labels.frame["path"].tolist() == names
    assert labels.frame["n"].tolist() == pytest.approx(totals)
    assert labels.frame["vote_mean"].tolist() == pytest.approx(means)
    assert labels.frame["mos"].tolist() == pytest.approx(means)


@FAST
@given(rows=vote_rows(unique_pairs=True), fmt=st.sampled_from(["csv", "parquet"]))
def test_load_labels_votes_table(rows: list[list[str]], fmt: str):
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"votes.{fmt}", ["item", "rater", "vote"], rows)
        labels, error = outcome(lambda: load_labels(path))
    kept = [r for r in rows if not blank_row(r)] if fmt == "csv" else rows
    pairs = [(expected_id(i), expected_id(r)) for i, r, _ in kept]
    if not kept or vote_problem(kept) or len(set(pairs)) < len(pairs):
        assert error is not None
        return
    if len({sum(v) / len(v) for v in per_item(kept).values()}) < 2:
        assert error is not None and str(path) in str(error)  # no range of MOS to put levels on
        return
    assert error is None, error
    assert labels is not None and labels.kind == "votes"
    expected = per_item(kept)
    assert labels.frame["path"].tolist() == list(expected)
    assert labels.frame["n"].tolist() == [len(v) for v in expected.values()]
    assert labels.frame["mos"].tolist() == pytest.approx([sum(v) / len(v) for v in expected.values()])


@FAST
@given(
    header=st.lists(st.sampled_from(["path", "mos", "c1", "rater", "vote", "x", "y"]), min_size=1, max_size=3),
    kind=st.sampled_from([None, "mos", "counts", "votes"]),
    empty=st.booleans(),
)
def test_load_labels_wrong_columns_empty_and_header_only(header: list[str], kind: Any, empty: bool):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        if empty:
            path.write_text("")
        else:
            write_csv(path, header, [])
        _, error = outcome(lambda: load_labels(path, kind=kind))
    assert error is not None


# --------------------------------------------------------------------------- malformed rows and booleans


def all_readers(path: Path) -> dict[str, Callable[[], object]]:
    return {
        "read_table": lambda: read_table(path),
        "analyze_votes": lambda: analyze_votes(read_votes(path), AnalysisOptions(model="mos", agreement_splits=0)),
        "load_labels": lambda: load_labels(path),
    }


@FAST
@given(
    rows=vote_rows(clean=True, unique_pairs=True).filter(lambda rows: len(rows) > 0),
    where=st.integers(min_value=0, max_value=20),
    extra=st.sampled_from(["", "9", "x", "=1+1"]),
)
# first columns 7, 0 and 0, 1 became a RangeIndex, which looked like no index at all
@example(rows=[["007", "007", "1"], ["0", "007", "1"]], where=0, extra="")
@example(rows=[["0", "a", "1"], ["1", "b", "2"]], where=0, extra="")
def test_a_row_with_an_extra_field_is_refused(rows: list[list[str]], where: int, extra: str):
    """An id with an unquoted comma, or a trailing comma, gives a row one field too many; pandas
    would take the first column as the index and shift every column (item <- rater, rater <- vote)."""
    where %= len(rows)
    rows = [list(r) for r in rows]
    rows[where] = [*rows[where], extra]
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder) / "votes.csv", ["item", "rater", "vote"], rows)
        for name, read in all_readers(path).items():
            _, error = outcome(read)
            assert error is not None, name
            assert f"line {where + 2}" in str(error), (name, error)


@FAST
@given(
    rows=vote_rows(clean=True, unique_pairs=True).filter(lambda rows: len(rows) > 0),
    words=st.lists(st.sampled_from(["True", "False", "TRUE", "false"]), min_size=1),
    fmt=st.sampled_from(["csv", "parquet"]),
)
def test_true_and_false_are_not_votes(rows: list[list[str]], words: list[str], fmt: str):
    """A column of True/False cells reads as booleans; they must not count as votes 1 and 0."""
    rows = [[item, rater, words[i % len(words)]] for i, (item, rater, _) in enumerate(rows)]
    with tempfile.TemporaryDirectory() as folder:
        if fmt == "csv":
            path = write_csv(Path(folder) / "votes.csv", ["item", "rater", "vote"], rows)
        else:
            path = Path(folder) / "votes.parquet"
            frame = pd.DataFrame(rows, columns=["item", "rater", "vote"])
            frame["vote"] = frame["vote"].str.lower() == "true"
            frame.to_parquet(path, index=False)
        readers = {
            "analyze_votes": all_readers(path)["analyze_votes"],
            # explicit bounds: one MOS value everywhere would be refused for want of a range
            "load_labels": lambda: load_labels(path, low=1, high=5),
        }
        for name, read in readers.items():
            _, error = outcome(read)
            assert error is not None, name
            assert "true" in str(error).lower() or "false" in str(error).lower(), (name, error)


json_cells = st.one_of(
    json_ids,
    st.booleans(),
    st.sampled_from([1, 3, 5, 2.5, "4", " 2 ", "NA", ""]),
    st.lists(st.sampled_from(["a/1.png", "a/2.png", 1, None]), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=1),
)


@FAST
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "item": json_cells,
                "image": json_cells,
                "rater": json_cells,
                "vote": json_cells,
                "mos": json_cells,
                "score": json_cells,
            },
        ),
        max_size=6,
    ),
    fmt=st.sampled_from(["json", "jsonl"]),
)
def test_json_records_of_any_shape(records: list[dict[str, Any]], fmt: str):
    """JSON cells of any type (booleans, lists, objects, nulls): every reader answers or refuses."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t.{fmt}"
        if fmt == "json":
            path.write_text(json.dumps(records), encoding="utf-8")
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        for read in (
            lambda: read_table(path),
            lambda: analyze_votes(read_votes(path), AnalysisOptions(model="mos", agreement_splits=0)),
            lambda: load_labels(path),
            lambda: load_labels(path, low=0, high=10),
            lambda: read_scores(path),
        ):
            outcome(read)


# --------------------------------------------------------------------------- import_votes


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """One migrated SQLite store for the module; each example gets a study of its own."""
    folder = tmp_path_factory.mktemp("store")
    url = f"sqlite:///{folder / 'study.db'}"
    assert upgrade(url) == head_revision()
    s = Store(url)
    yield s, folder
    s.dispose()


_study_numbers = itertools.count()


def _stored(store: Store, name: str) -> tuple[int, int]:
    """(votes, raters) of the study called ``name``."""
    with store.session() as s:
        study = get_study(s, name)
        ratings = s.scalar(select(func.count()).select_from(Rating).where(Rating.study_id == study.id))
        raters = s.scalar(select(func.count()).select_from(Rater).where(Rater.study_id == study.id))
        return int(ratings or 0), int(raters or 0)


@FAST
@given(
    rows=vote_rows(unique_pairs=True),
    drop_one=st.booleans(),
    fmt=st.sampled_from(["csv", "parquet"]),
    change=st.sampled_from(["1", "2", "3", "4", "5"]),
)
@example(rows=[["007", "", "1"]], drop_one=False, fmt="csv", change="1")  # no rater id at all
def test_import_votes_all_or_nothing(
    store: tuple[Store, Path], rows: list[list[str]], drop_one: bool, fmt: str, change: str
):
    db, media = store
    name = f"study{next(_study_numbers)}"
    known = list(dict.fromkeys(p for p in (expected_id(r[0]) for r in rows) if p is not None))
    if drop_one and known:
        known = known[1:]
    with db.session() as s:
        study = create_study(s, name, media_root=media)
        for path in known:
            s.add(Item(study_id=study.id, path=path, kind="image", sha256="0" * 64, content_group=path, role="test"))

    def run(table: list[list[str]]) -> tuple[int, int]:
        with tempfile.TemporaryDirectory() as folder:
            write = write_csv if fmt == "csv" else write_parquet
            path = write(Path(folder) / f"votes.{fmt}", ["item", "rater", "vote"], table)
            frame = read_table(path)
            with db.session() as s:
                return import_votes(s, get_study(s, name), frame, source=str(path))

    counts, error = outcome(lambda: run(rows))
    pairs = [(expected_id(i), expected_id(r)) for i, r, _ in rows]
    bad = vote_problem(rows) or len(set(pairs)) < len(pairs) or any(expected_id(i) not in known for i, _, _ in rows)
    if bad:
        assert error is not None
        assert _stored(db, name) == (0, 0)  # nothing stored, no rater created
        return
    assert error is None, error
    assert counts == (len(rows), 0)
    with db.session() as s:
        stored = votes_frame(s, get_study(s, name))
    got = sorted(zip(stored["item"], stored["rater"], stored["vote"].astype(int)))
    assert got == sorted((expected_id(i), expected_id(r), vote_level(v)) for i, r, v in rows)
    before = _stored(db, name)

    again, error = outcome(lambda: run(rows))
    assert error is None and again == (0, len(rows))  # a second import skips every vote
    assert _stored(db, name) == before
    if rows:
        # A new rater's votes next to one that contradicts a stored vote: the import fails whole.
        item, rater, vote = rows[0]
        newcomer = unique_per_name([[i, "newcomer rater", "3"] for i, _, _ in rows])
        contradiction = [[item, rater, change]]
        _, error = outcome(lambda: run(newcomer + contradiction))
        assert (error is None) == (vote_level(vote) == int(change)), error
        if error is not None:
            assert _stored(db, name) == before


def test_import_votes_refuses_true_and_false(store: tuple[Store, Path]) -> None:
    db, media = store
    name = f"study{next(_study_numbers)}"
    with db.session() as s:
        study = create_study(s, name, media_root=media)
        for item in ("a", "b"):
            s.add(Item(study_id=study.id, path=item, kind="image", sha256="0" * 64, content_group=item, role="test"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "votes.parquet"
        pd.DataFrame({"item": ["a", "b"], "rater": ["r", "r"], "vote": [True, True]}).to_parquet(path, index=False)
        frame = read_table(path)

        with pytest.raises(InputError, match="row 0: vote .* is true/false, not a level 1-5"), db.session() as s:
            import_votes(s, get_study(s, name), frame, source=str(path))
    assert _stored(db, name) == (0, 0)


# --------------------------------------------------------------------------- read_item_manifest


LEVEL_CELLS = ["", "1", " 3 ", "5", "+2", "3.0", "NA", "1e3", "x"]


@st.composite
def manifests(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """path, content_group, expected_level, tolerance, role; clean half of the time."""
    header = ["path", "content_group", "expected_level", "tolerance", "role"]
    clean = draw(st.booleans())
    rows = draw(
        st.lists(
            st.tuples(
                good_ids if clean else id_cells,
                st.one_of(id_cells, st.just("")),
                st.sampled_from(LEVEL_CELLS[:5] if clean else LEVEL_CELLS),
                st.sampled_from(["", " ", "0", "1", "2"] if clean else ["", "0", "1", "2", "x", "1.5"]),
                st.sampled_from(["", "test", " gold ", "training"]),
            ).map(list),
            max_size=8,
        )
    )
    return header, with_repeats(draw, rows)


def _int_or_error(cell: str, default: int | None) -> tuple[int | None, bool]:
    cell = cell.strip()
    if not cell:
        return default, True
    try:
        return int(cell), True
    except ValueError:
        return None, False


@FAST
@given(table=manifests(), bom=st.booleans())
def test_read_item_manifest(table: tuple[list[str], list[list[str]]], bom: bool):
    header, rows = table
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder) / "manifest.csv", header, rows, encoding="utf-8-sig" if bom else "utf-8")
        specs, error = outcome(lambda: read_item_manifest(path))
    expected = []
    ok = True
    for item, group, level, tolerance, role in rows:
        level_v, level_ok = _int_or_error(level, None)
        tolerance_v, tolerance_ok = _int_or_error(tolerance, 1)
        if expected_id(item) is None or not (level_ok and tolerance_ok):
            ok = False
            break
        expected.append((expected_id(item), expected_id(group), level_v, tolerance_v, (role or "test").strip()))
    if not ok:
        assert error is not None
        return
    assert error is None, error
    assert specs is not None
    got = [(s.path, s.content_group, s.expected_level, s.tolerance, s.role) for s in specs]
    assert got == expected


@FAST
@given(
    case=st.sampled_from(["empty", "header-only", "no-path", "ragged", "latin-1", "long-row"]),
    item=good_ids,
)
def test_read_item_manifest_broken_files(case: str, item: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "manifest.csv"
        if case == "empty":
            path.write_text("")
        elif case == "header-only":
            write_csv(path, ["path", "role"], [])
        elif case == "no-path":
            write_csv(path, ["file", "role"], [[item, "test"]])
        elif case == "ragged":
            path.write_text("path,role\nx\n", encoding="utf-8")
        elif case == "long-row":
            path.write_text("path,role\nx,test,extra\n", encoding="utf-8")
        else:
            path.write_bytes(f"path\n{item}é\n".encode("latin-1", errors="replace"))
        specs, error = outcome(lambda: read_item_manifest(path))
    if case == "header-only":
        assert error is None and specs == []
    else:
        assert error is not None


# --------------------------------------------------------------------------- read_scores


@st.composite
def score_tables(draw: st.DrawFn) -> list[list[str]]:
    """path, score, error rows as ``qalign score`` writes them; clean half of the time."""
    clean = draw(st.booleans())
    scores = ["0.5", "3", " 4.25 ", "1e3", "-1", ""] + ([] if clean else ["NA", "x", "inf", "=1+1"])
    rows = draw(
        st.lists(
            st.tuples(
                good_ids if clean else id_cells,
                st.sampled_from(scores),
                st.sampled_from(["", "", "cannot read image", " "]),
            ).map(list),
            max_size=8,
        )
    )
    return unique_per_name(rows) if clean else with_repeats(draw, rows)


@FAST
@given(rows=score_tables(), fmt=st.sampled_from(["csv", "parquet"]))
def test_read_scores(rows: list[list[str]], fmt: str):
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"scores.{fmt}", ["path", "score", "error"], rows)
        scores, error = outcome(lambda: read_scores(path))
    kept = [r for r in rows if not blank_row(r)] if fmt == "csv" else rows
    usable = [r for r in kept if r[2].strip() == ""]  # rows with an error message are skipped
    if any(r[1].strip() and number(r[1]) is None for r in usable) or any(expected_id(r[0]) is None for r in usable):
        assert error is not None
        return
    scored = [(expected_id(r[0]), number(r[1])) for r in usable if r[1].strip()]
    if len({p for p, _ in scored}) < len(scored):
        assert error is not None
        return
    assert error is None, error
    assert scores is not None
    assert list(zip(scores.frame["path"], scores.frame["score"])) == scored
    assert scores.skipped == len(kept) - len(scored)


# --------------------------------------------------------------------------- the CLI


def run_cli(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capfd.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["qalign", *argv])
        with pytest.raises(SystemExit) as exit_info:
            main()
    captured = capfd.readouterr()
    code = exit_info.value.code
    code = code if isinstance(code, int) else 1
    event(f"exit {code}")
    return code, captured.out + captured.err


def assert_short_error(code: int, output: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output and "unexpected" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output


def read_back_csv(path: Path) -> pd.DataFrame:
    """A CSV the toolkit wrote, text cells as they were before the formula escape."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.map(csv_unescape_value)


@FAST
@given(rows=vote_rows(), fmt=st.sampled_from(["csv", "parquet"]))
def test_cli_analyze(rows: list[list[str]], fmt: str, capfd: pytest.CaptureFixture[str]):
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"votes.{fmt}", ["item", "rater", "vote"], rows)
        out = Path(folder) / "items.csv"
        code, output = run_cli(["analyze", str(path), "--out", str(out), "--model", "mos", "--splits", "0"], capfd)
        if not rows or vote_problem(rows):
            assert_short_error(code, output)
            assert not out.exists()
            return
        assert code == 0, output
        table = read_back_csv(out)
    expected = per_item(rows)
    assert table["item"].tolist() == list(expected)
    assert table["n"].astype(int).tolist() == [len(v) for v in expected.values()]
    assert table["score"].astype(float).tolist() == pytest.approx([sum(v) / len(v) for v in expected.values()])


@FAST
@given(table=mos_tables(), fmt=st.sampled_from(["csv", "parquet"]))
def test_cli_convert(table: tuple[list[str], list[list[str]]], fmt: str, capfd: pytest.CaptureFixture[str]):
    header, rows = table
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"mos.{fmt}", header, rows)
        out = Path(folder) / "out"
        code, output = run_cli(["convert", str(path), "--out", str(out), "--kind", "mos"], capfd)
        kept = [r for r in rows if not blank_row(r)] if fmt == "csv" else rows
        names = [expected_id(r[0]) for r in kept]
        mos = [number(r[1]) for r in kept]
        sds = [r[2] for r in kept] if len(header) > 2 else []
        if (
            not kept
            or None in names
            or None in mos
            or len(set(mos)) < 2  # the scale comes from the data: one MOS value spans none
            or len(set(names)) < len(names)
            or any(s not in ("", "0.5") for s in sds)
        ):
            assert_short_error(code, output)
            assert not out.exists()
            return
        assert code == 0, output
        records = json.loads((out / "all.json").read_text(encoding="utf-8"))
    assert [r["image"] for r in records] == names
    assert [r["gt_score"] for r in records] == pytest.approx(mos)


@FAST
@given(rows=vote_rows(unique_pairs=True), fmt=st.sampled_from(["csv", "parquet"]))
def test_cli_convert_votes(rows: list[list[str]], fmt: str, capfd: pytest.CaptureFixture[str]):
    with tempfile.TemporaryDirectory() as folder:
        write = write_csv if fmt == "csv" else write_parquet
        path = write(Path(folder) / f"votes.{fmt}", ["item", "rater", "vote"], rows)
        out = Path(folder) / "out"
        code, output = run_cli(["convert", str(path), "--out", str(out), "--low", "1", "--high", "5"], capfd)
        kept = [r for r in rows if not blank_row(r)] if fmt == "csv" else rows
        pairs = [(expected_id(i), expected_id(r)) for i, r, _ in kept]
        if not kept or vote_problem(kept) or len(set(pairs)) < len(pairs):
            assert_short_error(code, output)
            assert not out.exists()
            return
        assert code == 0, output
        records = json.loads((out / "all.json").read_text(encoding="utf-8"))
    expected = per_item(kept)
    assert [r["image"] for r in records] == list(expected)
    assert [r["gt_score"] for r in records] == pytest.approx([sum(v) / len(v) for v in expected.values()])
