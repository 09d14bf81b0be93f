"""Votes and their times read in one pass (SQLite) are the votes and times of the two-pass read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update

from toolkit.store import Store, get_study, import_votes, read_snapshot, record_rating, vote_arrays
from toolkit.store import snapshot as snapshot_module
from toolkit.store.schema import Item, Rater

from fixtures_ui import fresh_pg_url, make_study, sqlite_url


@pytest.fixture
def store(tmp_path) -> Store:
    """Imported votes (one time for all, no display time) between votes given in the app (each its
    own times), a rater excluded."""
    store = Store(sqlite_url(tmp_path))
    make_study(store, tmp_path / "media", n_test=6, n_gold=2)
    shown = datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=timezone.utc)
    with store.session() as s:
        study = get_study(s, "pilot")
        items = s.scalars(select(Item).where(Item.study_id == study.id).order_by(Item.id)).all()
        rows = [(item.path, f"r{r}", 1 + (k + r) % 5) for r in range(4) for k, item in enumerate(items)]
        import_votes(s, study, pd.DataFrame(rows, columns=["item", "rater", "vote"]))
        for r, name in enumerate(["app1", "app2"]):
            rater = Rater(study_id=study.id, name=name, token_hash=f"hash-{name}")
            s.add(rater)
            s.flush()
            for k, item in enumerate(items[:5]):
                moment = shown + timedelta(seconds=7 * k + r)
                record_rating(s, rater, item, 1 + k % 5, shown_at=moment, answered_at=moment + timedelta(seconds=k))
        import_votes(s, study, pd.DataFrame([(i.path, "late", 3) for i in items], columns=["item", "rater", "vote"]))
        s.execute(update(Rater).where(Rater.name == "r1").values(excluded=True))
    return store


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.mark.parametrize("block", [3, 8, 65_536])
@pytest.mark.parametrize("where", ["", "rater_id NOT IN (SELECT id FROM raters WHERE excluded = 1)"])
def test_one_pass_reads_the_votes_and_times_of_two(store, monkeypatch, block, where) -> None:
    monkeypatch.setattr(vote_arrays, "TIME_BLOCK_IDS", block)  # uniform and mixed blocks both
    with store.session() as s:
        study_id = get_study(s, "pilot").id
        connection = s.connection()
        both = vote_arrays.read_votes_with_times(connection, study_id, where)
        assert both is not None
        votes, times = both
        two = vote_arrays.read_vote_arrays(connection, study_id, where)
        two_times = vote_arrays.read_vote_times(connection, study_id, where)
    assert len(votes) == len(two) == 4 * 8 - (8 if where else 0) + 2 * 5 + 8
    assert votes.item_id.dtype == votes.rater_id.dtype == np.int32  # ids below 2**30
    assert np.array_equal(votes.item_id, two.item_id) and np.array_equal(votes.rater_id, two.rater_id)
    for a, b in zip(
        (votes.level, times.shown_us, times.answered_us, times.response_ms),
        (two.level, two_times.shown_us, two_times.answered_us, two_times.response_ms),
    ):
        assert _equal(a, b)
    assert np.isfinite(times.shown_us).sum() == 10 and np.isfinite(times.response_ms).sum() == 10


def test_the_snapshot_is_the_same_read_either_way(store, monkeypatch) -> None:
    monkeypatch.setattr(vote_arrays, "TIME_BLOCK_IDS", 4)
    with store.session() as s:
        one = read_snapshot(s, get_study(s, "pilot")).votes
    monkeypatch.setattr(snapshot_module, "read_votes_with_times", lambda *args: None)
    with store.session() as s:
        two = read_snapshot(s, get_study(s, "pilot")).votes
    pd.testing.assert_frame_equal(one, two)
    assert one["response_ms"].notna().sum() == 10 and not (one["rater"] == "r1").any()


@pytest.mark.parametrize(
    "ids", [np.array([5, 6, 9, 7]), np.array([3, 10**9, 17]), np.array([2, 40, 10**8]), np.array([], dtype=np.int64)]
)
def test_a_vote_finds_its_item_by_id_whether_the_ids_are_dense_or_not(ids) -> None:
    wanted = np.repeat(ids, 3)[::-1]
    positions = snapshot_module.vote_positions(ids, wanted)
    assert (ids[positions] == wanted).all() and positions.dtype == np.int32


def test_compact_votes_are_the_same_votes_and_analyse_the_same(store) -> None:
    from toolkit.analysis.pipeline import ANALYSIS_VOTE_COLUMNS, AnalysisOptions, analyze_snapshot

    with store.session() as s:
        wide = read_snapshot(s, get_study(s, "pilot"), ANALYSIS_VOTE_COLUMNS)
        compact = read_snapshot(s, get_study(s, "pilot"), ANALYSIS_VOTE_COLUMNS, compact=True)
    a, b = wide.votes, compact.votes
    assert (b["vote"].dtype, b["tolerance"].dtype, str(b["expected_level"].dtype)) == (np.int8, np.int8, "Int8")
    assert a["expected_level"].notna().any() and a["expected_level"].isna().any()  # gold and study items
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    options = AnalysisOptions(model="p913", agreement_splits=0, reliability_boot=20)
    one, two = analyze_snapshot(wide, options), analyze_snapshot(compact, options)
    pd.testing.assert_frame_equal(one.result.items, two.result.items)
    pd.testing.assert_frame_equal(one.result.raters, two.result.raters)
    assert one.screening is not None and two.screening is not None
    pd.testing.assert_frame_equal(one.screening.table, two.screening.table)
    assert one.screening.table["gold_votes"].sum() > 0 and one.notes == two.notes


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_compact_votes_leave_out_the_times_no_vote_has_and_analyse_the_same(tmp_path, backend) -> None:
    from toolkit.analysis.pipeline import ANALYSIS_VOTE_COLUMNS, AnalysisOptions, analyze_snapshot

    store = Store(sqlite_url(tmp_path) if backend == "sqlite" else fresh_pg_url())
    make_study(store, tmp_path / "media", n_test=8, n_gold=2)
    rows = [(f"test_{k:02d}.png", f"r{r}", 1 + (k * r + r) % 5) for r in range(6) for k in range(8)]
    rows += [(f"gold_{k:02d}.png", f"r{r}", 5 - r % 2) for r in range(6) for k in range(2)]
    with store.session() as s:  # imported votes: an answer time, no display or response time
        import_votes(s, get_study(s, "pilot"), pd.DataFrame(rows, columns=["item", "rater", "vote"]))
    with store.session() as s:
        wide = read_snapshot(s, get_study(s, "pilot"), ANALYSIS_VOTE_COLUMNS)
        compact = read_snapshot(s, get_study(s, "pilot"), ANALYSIS_VOTE_COLUMNS, compact=True)
    assert wide.votes["shown_at"].isna().all() and wide.votes["response_ms"].isna().all()
    assert wide.votes["answered_at"].nunique() == 1  # one import: one answer time, which orders nothing
    times = ("shown_at", "answered_at", "response_ms")
    assert list(compact.votes.columns) == [c for c in wide.votes.columns if c not in times]
    options = AnalysisOptions(model="p913", agreement_splits=0, reliability_boot=20)
    one, two = analyze_snapshot(wide, options), analyze_snapshot(compact, options)
    pd.testing.assert_frame_equal(one.result.items, two.result.items)
    assert one.screening is not None and two.screening is not None
    pd.testing.assert_frame_equal(one.screening.table, two.screening.table)
    assert one.screening.table["gold_votes"].sum() == 12
