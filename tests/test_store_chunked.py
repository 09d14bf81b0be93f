"""Importing and exporting votes a chunk at a time gives what one pass over the whole table gives.

The chunk sizes are set to a few rows here so that every boundary case (a duplicate, a
contradiction or a new rater in a later chunk) is crossed with a handful of votes; the figures
at millions of votes are in ``bench/store_scale.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from sqlalchemy import func, select

from toolkit.errors import InputError
from toolkit.io import write_table
from toolkit.store import Store, export_study, get_study, import_votes, record_rating, votes_frame
from toolkit.store.schema import Item, Rater, Rating

from fixtures_ui import fresh_pg_url, make_study, sqlite_url

ITEMS = [f"test_{k:02d}.png" for k in range(6)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    return sqlite_url(tmp_path) if request.param == "sqlite" else fresh_pg_url()


def _table(raters: list[str], level=lambda i, r: 1 + (i + r) % 5) -> pd.DataFrame:
    rows = [(item, name, level(i, r)) for r, name in enumerate(raters) for i, item in enumerate(ITEMS)]
    return pd.DataFrame(rows, columns=["item", "rater", "vote"])


def _stored(store: Store) -> set[tuple[str, str, int]]:
    with store.session() as s:
        return set(map(tuple, votes_frame(s, get_study(s, "pilot"))[["item", "rater", "vote"]].itertuples(index=False)))


def _counts(store: Store) -> tuple[int, int]:
    with store.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Rating)) or 0,
            s.scalar(select(func.count()).select_from(Rater)) or 0,
        )


@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 100_000])
def test_chunked_import_matches_one_pass(url, tmp_path, chunk_rows):
    store = Store(url)
    make_study(store, tmp_path / "media")
    first = _table(["a", "007"])
    with store.session() as s:
        assert import_votes(s, get_study(s, "pilot"), first, chunk_rows=chunk_rows) == (12, 0)
    # The same votes again, interleaved with new ones of a new rater: only those are added.
    again = pd.concat([first, _table(["7"])]).sample(frac=1.0, random_state=3).reset_index(drop=True)
    with store.session() as s:
        assert import_votes(s, get_study(s, "pilot"), again, chunk_rows=chunk_rows) == (6, 12)
    assert _stored(store) == set(map(tuple, again.itertuples(index=False)))
    with store.session() as s:
        names = set(s.scalars(select(Rater.name)))
    assert names == {"a", "007", "7"}  # ids are text: 007 and 7 are two raters
    store.dispose()


@pytest.mark.parametrize("chunk_rows", [1, 5, 100_000])
def test_contradiction_in_a_late_chunk_writes_nothing(url, tmp_path, chunk_rows):
    store = Store(url)
    make_study(store, tmp_path / "media")
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), _table(["a"]))
    before = _counts(store)
    # Rows 0-5 are new (new rater b), rows 6-10 repeat a's votes, row 11 contradicts a's last one.
    table = pd.concat([_table(["b"]), _table(["a"])], ignore_index=True)
    table.loc[11, "vote"] = 1 + table.loc[11, "vote"] % 5
    with pytest.raises(InputError, match=r"row 11: rater 'a' already has vote \d on 'test_05.png', the table says"):
        with store.session() as s:
            import_votes(s, get_study(s, "pilot"), table, source="votes.csv", chunk_rows=chunk_rows)
    assert _counts(store) == before  # neither b's votes nor b went in
    store.dispose()


def test_unknown_item_and_repeated_vote_still_named(url, tmp_path):
    store = Store(url)
    make_study(store, tmp_path / "media")
    table = _table(["a"])
    table.loc[4, "item"] = "nope.png"
    with pytest.raises(InputError, match=r"row 4: item 'nope.png' is not in study"):
        with store.session() as s:
            import_votes(s, get_study(s, "pilot"), table, chunk_rows=2)
    twice = pd.concat([_table(["a"]), _table(["a"]).iloc[[3]]], ignore_index=True)
    with pytest.raises(InputError, match=r"votes more than once on 'test_03.png' \(rows \[3, 6\]\)"):
        with store.session() as s:
            import_votes(s, get_study(s, "pilot"), twice, chunk_rows=2)
    assert _counts(store) == (0, 0)
    store.dispose()


def _study_with_votes(url, tmp_path) -> Store:
    store = Store(url)
    make_study(store, tmp_path / "media", n_gold=2)
    # A formula-looking rater name and one with a carriage return: the CSV rules apply per chunk.
    table = _table(["a", "=HYPERLINK(1)", "b\rc", "-5"])
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), table)
        study = get_study(s, "pilot")
        gold = s.scalars(select(Item).where(Item.study_id == study.id, Item.role == "gold")).all()
        rater = s.scalars(select(Rater).where(Rater.name == "a")).one()
        shown = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        for k, item in enumerate(gold):  # timed votes with shown_at and response_ms, after untimed ones
            record_rating(s, rater, item, 5 - k, shown_at=shown, answered_at=shown + timedelta(seconds=2 + k))
    return store


def _read(path) -> pd.DataFrame:
    """An export read back, in types that do not depend on how its cells were spelled."""
    if path.suffix == ".csv":
        frame = pd.read_csv(
            path, dtype={"item": str, "rater": str}, keep_default_na=False, na_values={"shown_at": [""]}
        )
    elif path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_json(path, orient="records", lines=path.suffix == ".jsonl", dtype=False)
    for column in ("shown_at", "answered_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="mixed")
    for column in ("expected_level", "response_ms"):
        frame[column] = pd.to_numeric(frame[column].replace("", None)).astype("float64")
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_streamed_export_equals_whole_table(url, tmp_path, suffix):
    store = _study_with_votes(url, tmp_path)
    with store.session() as s:
        study = get_study(s, "pilot")
        whole = votes_frame(s, study)
        reference = write_table(whole, tmp_path / f"whole{suffix}")
        streamed = [export_study(s, study, tmp_path / f"by{n}{suffix}", chunk_rows=n) for n in (1, 7, 100_000)]
    store.dispose()
    assert len(whole) == 26
    if suffix != ".parquet":  # one chunk or many, the same bytes
        assert streamed[0].read_bytes() == streamed[1].read_bytes() == streamed[2].read_bytes()
    expected = _read(reference)
    for path in streamed:
        pd.testing.assert_frame_equal(_read(path), expected, check_dtype=False)
    if suffix == ".csv":
        text = streamed[0].read_bytes().decode()
        assert "'=HYPERLINK(1)" in text and "'-5" in text  # formula-safe cells
        assert text.count("\r\n") == 27  # CRLF on every line when a cell holds a CR


def test_a_column_of_blank_ids_is_named(url, tmp_path):
    store = Store(url)
    make_study(store, tmp_path / "media")
    table = pd.DataFrame({"item": ["test_00.png", "test_01.png"], "rater": [None, None], "vote": [1, 2]})
    with pytest.raises(InputError, match=r"row 0: rater \('rater'\) is empty"):
        with store.session() as s:
            import_votes(s, get_study(s, "pilot"), table, source="votes.csv")
    assert _counts(store) == (0, 0)
    store.dispose()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_vote_file_streamed_in_chunks_imports_once(url, tmp_path, suffix):
    from toolkit.store.vote_import import import_vote_file

    path = write_table(_table(["a", "007", "NA"]), tmp_path / f"votes{suffix}")
    store = Store(url)
    make_study(store, tmp_path / "media")
    with store.session() as s:
        assert import_vote_file(s, get_study(s, "pilot"), path, chunk_rows=4) == (18, 0)
    with store.session() as s:  # a re-import adds nothing and counts every vote as stored
        assert import_vote_file(s, get_study(s, "pilot"), path, chunk_rows=5) == (0, 18)
    assert _stored(store) == set(map(tuple, _table(["a", "007", "NA"]).itertuples(index=False)))
    with store.session() as s:  # votes stored in table order: the file's rows, oldest first
        stored = votes_frame(s, get_study(s, "pilot"))
    assert stored["rater"].tolist() == _table(["a", "007", "NA"])["rater"].tolist()
    store.dispose()


def test_a_vote_file_names_the_line_of_a_blank_id_in_a_late_chunk(url, tmp_path):
    from toolkit.store.vote_import import import_vote_file

    path = tmp_path / "votes.csv"
    lines = ["item,rater,vote"] + [f"{item},a,3" for item in ITEMS] + [f"{ITEMS[0]},,4"]
    path.write_text("\n".join(lines) + "\n")
    store = Store(url)
    make_study(store, tmp_path / "media")
    with pytest.raises(InputError, match=r"votes.csv line 8: column 'rater' is empty"):
        with store.session() as s:
            import_vote_file(s, get_study(s, "pilot"), path, chunk_rows=2)
    path.write_text("item,rater\n" + "\n".join(f"{item},a" for item in ITEMS) + "\n")
    with pytest.raises(InputError, match=r"missing column\(s\) vote"):
        with store.session() as s:
            import_vote_file(s, get_study(s, "pilot"), path, chunk_rows=2)
    assert _counts(store) == (0, 0)
    store.dispose()


def test_a_contradiction_with_a_stored_vote_names_the_file_row(url, tmp_path):
    from toolkit.store.vote_import import import_vote_file

    store = Store(url)
    make_study(store, tmp_path / "media")
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), _table(["a"]))
    changed = _table(["b", "a"], level=lambda i, r: 1 + (i + 1) % 5)  # b is new, a's votes differ from the stored
    path = write_table(changed, tmp_path / "votes.csv")
    with pytest.raises(InputError, match=r"row 6: rater 'a' already has vote 1 on 'test_00.png', the table says 2"):
        with store.session() as s:
            import_vote_file(s, get_study(s, "pilot"), path, chunk_rows=3)
    assert _counts(store) == (6, 1)  # b and b's votes were not kept
    store.dispose()


def test_the_snapshot_reads_the_stored_votes_as_the_joined_query_does(url, tmp_path):
    from toolkit.store import read_snapshot

    store = _study_with_votes(url, tmp_path)
    with store.session() as s:
        study = get_study(s, "pilot")
        rater = s.scalars(select(Rater).where(Rater.name == "-5")).one()
        rater.excluded = True  # screened out: not in the snapshot's valid votes
        s.flush()
        joined = votes_frame(s, study)
        votes = read_snapshot(s, study).votes
    store.dispose()
    expected = joined[joined["rater"] != "-5"].reset_index(drop=True)
    assert list(votes.columns) == list(expected.columns)
    for column in ("item", "rater", "kind", "content_group", "role", "sha256", "vote", "tolerance"):
        assert votes[column].astype(object).tolist() == expected[column].astype(object).tolist(), column
    got_level = pd.to_numeric(votes["expected_level"].astype(object)).fillna(0).tolist()
    assert got_level == pd.to_numeric(expected["expected_level"]).fillna(0).tolist()
    for column in ("shown_at", "answered_at"):
        got = pd.to_datetime(votes[column], utc=True)
        want = pd.to_datetime(expected[column], utc=True)
        assert got.isna().tolist() == want.isna().tolist()
        assert (got[got.notna()] == want[want.notna()]).all(), column
    assert votes["response_ms"].fillna(-1).tolist() == pd.to_numeric(expected["response_ms"]).fillna(-1).tolist()
    assert votes["response_ms"].notna().sum() == 2  # the two timed gold votes
