"""A study read with fewer vote columns: the same votes, the same labels, no time pass; and the
plain MOS from vote histograms equal to the per-vote computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis import clean_labels
from toolkit.analysis.study_labels import _mos_from_counts, _vote_counts, item_aggregates, study_label_table
from toolkit.errors import StoreError
from toolkit.store import Store, get_study, import_votes, load_snapshot, read_snapshot
from toolkit.store.raters import set_rater_excluded
from toolkit.store.ratings import VOTE_COLUMNS
from toolkit.store.snapshot import LABEL_VOTE_COLUMNS

from fixtures_ui import make_study, sqlite_url


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lean-read")
    url = sqlite_url(tmp)
    store = Store(url)
    make_study(store, tmp / "media", n_test=6, n_gold=1, target_votes=10)
    rng = np.random.default_rng(4)
    rows = [
        {"item": f"test_{i:02d}.png", "rater": f"r{k}", "vote": int(rng.integers(1, 6))}
        for i in range(5)
        for k in range(i + 1)  # 1 to 5 votes: a single-vote item too
    ]
    rows += [{"item": "gold_00.png", "rater": f"r{k}", "vote": 4} for k in range(3)]
    rows += [{"item": "test_00.png", "rater": "gone", "vote": 1}]
    with store.session() as s:
        study = get_study(s, "pilot")
        import_votes(s, study, pd.DataFrame(rows))
        set_rater_excluded(s, study, "gone", True)
    store.dispose()
    return url


def test_a_lean_read_holds_the_same_votes_in_fewer_columns(study):
    full = load_snapshot("pilot", study)
    lean = load_snapshot("pilot", study, LABEL_VOTE_COLUMNS)
    assert list(full.votes.columns) == VOTE_COLUMNS
    assert list(lean.votes.columns) == ["item", "rater", "vote", "content_group", "role"]  # VOTE_COLUMNS' order
    pd.testing.assert_frame_equal(lean.votes, full.votes[list(lean.votes.columns)])
    assert "gone" not in set(lean.votes["rater"]) and lean.excluded_votes == 1
    times = load_snapshot("pilot", study, ["item", "answered_at"]).votes
    pd.testing.assert_series_equal(times["answered_at"], full.votes["answered_at"])


def test_an_unknown_vote_column_is_refused(study):
    store = Store(study)
    with store.session() as s, pytest.raises(StoreError, match="unknown vote column.*'when'"):
        read_snapshot(s, get_study(s, "pilot"), ["item", "when"])
    store.dispose()


@pytest.mark.parametrize("model", ["mos", "p913"])
def test_labels_from_a_lean_read_equal_those_of_a_full_one(study, model):
    full = study_label_table(load_snapshot("pilot", study), model)
    lean = study_label_table(load_snapshot("pilot", study, LABEL_VOTE_COLUMNS), model)
    pd.testing.assert_frame_equal(lean.table, full.table)
    assert lean.unrated == full.unrated == ("test_05.png",)
    pd.testing.assert_frame_equal(
        item_aggregates(load_snapshot("pilot", study, LABEL_VOTE_COLUMNS)),
        item_aggregates(load_snapshot("pilot", study)),
    )


def test_the_histogram_mos_equals_the_per_vote_mos():
    rng = np.random.default_rng(8)
    n = rng.integers(1, 12, 300)
    votes = pd.DataFrame(
        {
            "item": np.repeat([f"i{k:03d}" for k in range(n.size)], n),
            "rater": [f"r{k}" for k in range(int(n.sum()))],
            "vote": rng.integers(1, 6, int(n.sum())),
        }
    )
    per_vote = clean_labels(votes, model="mos", screening=None).set_index("item")
    from_counts = _mos_from_counts(_vote_counts(votes))
    assert (per_vote["n"] == 1).any()
    for mine, theirs in (("mos", "score"), ("sd", "sd"), ("ci_low", "ci_low"), ("ci_high", "ci_high")):
        np.testing.assert_allclose(from_counts[mine], per_vote.loc[from_counts.index, theirs], rtol=1e-13, atol=1e-13)
