"""Reading rating tables into LabelTables: real KonIQ-10k and Netflix data, level rules, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from toolkit.convert import (
    PROB_COLUMNS,
    detect_kind,
    labels_from_mos,
    labels_from_votes,
    load_labels,
    read_rating_table,
)
from toolkit.errors import InputError

from conftest import KONIQ_CSV as KONIQ
from conftest import NFLX_VOTES_CSV as NFLX


@pytest.fixture(scope="module")
def koniq() -> pd.DataFrame:
    return pd.read_csv(KONIQ)


@pytest.fixture(scope="module")
def koniq_table():
    return load_labels(KONIQ)


# --------------------------------------------------------------------------- KonIQ-10k


def test_koniq_is_read_as_vote_histogram(koniq, koniq_table):
    assert koniq_table.kind == "counts"
    assert len(koniq_table) == len(koniq) == 10073
    # The published MOS is kept as the MOS, the histogram is the soft label.
    np.testing.assert_allclose(koniq_table.frame["mos"], koniq["MOS"])
    assert koniq_table.soft == "histogram"
    np.testing.assert_allclose(koniq_table.level_probs, koniq[["c5", "c4", "c3", "c2", "c1"]].to_numpy())
    np.testing.assert_allclose(koniq_table.level_probs.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(koniq_table.frame["n"], koniq["c_total"])
    assert koniq_table.frame["split"].value_counts().to_dict() == {"training": 7058, "test": 2015, "validation": 1000}


def test_koniq_mean_vote_agrees_with_published_mos(koniq, koniq_table):
    vote_mean = koniq_table.frame["vote_mean"].to_numpy()
    by_hand = koniq[["c1", "c2", "c3", "c4", "c5"]].to_numpy() @ np.arange(1, 6)
    np.testing.assert_allclose(vote_mean, by_hand, atol=1e-9)
    assert stats.spearmanr(vote_mean, koniq["MOS"]).statistic >= 0.99


def test_koniq_paper_rule_matches_hand_computed_intervals(koniq, koniq_table):
    mos = koniq["MOS"].to_numpy()
    m, M = mos.min(), mos.max()
    w = (M - m) / 5
    edges = [m + i * w for i in range(6)]  # e0 = m ... e5 = M
    expected = np.zeros(len(mos), dtype=int)
    expected[(mos >= edges[0]) & (mos <= edges[1])] = 1
    for i in range(2, 6):
        expected[(mos > edges[i - 1]) & (mos <= edges[i])] = i
    levels = koniq_table.frame["level"].to_numpy()
    np.testing.assert_array_equal(levels, expected)
    assert np.bincount(levels, minlength=6)[1:].tolist() == [int((expected == k).sum()) for k in range(1, 6)]
    # Edge items: the minimum is bad, the maximum excellent, and the items closest to each
    # interior edge on either side fall into the intervals below and above it.
    assert levels[mos.argmin()] == 1 and levels[mos.argmax()] == 5
    for i in range(1, 5):
        below = np.where(mos <= edges[i], mos, -np.inf).argmax()
        above = np.where(mos > edges[i], mos, np.inf).argmin()
        assert levels[below] == i and levels[above] == i + 1
    assert koniq_table.scale.low == m and koniq_table.scale.high == M


def test_koniq_levels_of_items_in_the_reference_training_file(koniq_table):
    # Labels of the Q-Align reference KonIQ training JSON for a few items across the range.
    reference = {
        "10004473376.jpg": "excellent",  # 77.38
        "10047832035.jpg": "excellent",  # 71.8, just above the good/excellent edge
        "10031913154.jpg": "good",  # 70.5, just below it
        "10012398043.jpg": "good",
        "10031298826.jpg": "fair",
        "10077880165.jpg": "poor",
        "10058760545.jpg": "bad",
    }
    frame = koniq_table.frame.set_index("path")
    words = dict(zip(koniq_table.frame["path"], koniq_table.level_words))
    assert {p: words[p] for p in reference} == reference
    assert frame.loc["10004473376.jpg", "mos"] == pytest.approx(77.3836206897)


def test_koniq_floor_rule(koniq):
    table = load_labels(KONIQ, rule="floor")
    mos = koniq["MOS"].to_numpy()
    u = (mos - mos.min()) / (mos.max() - mos.min()) * 5  # rescaled to [0, 5]
    k = np.floor(u).astype(int)  # 0..5
    expected = np.select([k >= 4, k == 3, k == 2, k == 1], [5, 4, 3, 2], default=1)
    np.testing.assert_array_equal(table.frame["level"], expected)
    assert table.frame["level"].iloc[mos.argmax()] == 5  # 5 -> excellent
    # floor shifts every item down by up to one level compared with the paper rule
    diff = load_labels(KONIQ).frame["level"].to_numpy() - expected
    assert set(np.unique(diff)) <= {0, 1}


def test_koniq_as_plain_mos_table_with_explicit_bounds(tmp_path, koniq):
    path = tmp_path / "koniq_mos.csv"
    koniq[["image_name", "MOS", "set"]].to_csv(path, index=False)
    table = load_labels(path, low=0, high=100)
    assert table.kind == "mos" and table.soft == "onehot"
    mos = koniq["MOS"].to_numpy()
    np.testing.assert_array_equal(table.frame["level"], np.clip(np.ceil(mos / 20), 1, 5).astype(int))
    assert table.level_probs[np.arange(len(table)), 5 - table.frame["level"].to_numpy()].min() == 1.0


# --------------------------------------------------------------------------- Netflix raw votes


def test_nflx_long_votes():
    votes = pd.read_csv(NFLX)
    table = load_labels(NFLX)
    assert table.kind == "votes"
    assert len(table) == 79
    assert table.frame["group"].nunique() == votes["content"].nunique()  # 'content' is taken as the group
    mean = votes.groupby("item")["vote"].mean()
    sd = votes.groupby("item")["vote"].std(ddof=1)
    frame = table.frame.set_index("path")
    np.testing.assert_allclose(frame.loc[mean.index, "mos"], mean.to_numpy())
    np.testing.assert_allclose(frame.loc[sd.index, "sd"], sd.to_numpy())
    assert (frame["n"] == 26).all()
    hist = votes.groupby("item")["vote"].value_counts(normalize=True).unstack(fill_value=0)
    np.testing.assert_allclose(
        frame.loc[hist.index, list(PROB_COLUMNS)].to_numpy(), hist[[5.0, 4.0, 3.0, 2.0, 1.0]].to_numpy()
    )
    # Items keep the order of their first vote, not alphabetical order.
    assert table.frame["path"].tolist() == list(pd.unique(votes["item"]))


def test_long_vote_dataframe_input_as_from_a_study_database():
    votes = pd.DataFrame(
        {
            "item": ["a.png", "a.png", "b.png", "b.png", "c.png", "c.png"],
            "rater": ["r1", "r2", "r1", "r2", "r1", "r2"],
            "vote": [5, 4, 1, 2, 3, 3],
            "content_group": ["x", "x", "x", "x", "y", "y"],
        }
    )
    table = load_labels(votes)
    assert table.kind == "votes" and table.source == "<DataFrame>"
    assert table.frame["mos"].tolist() == [4.5, 1.5, 3.0]
    assert table.frame["group"].tolist() == ["x", "x", "y"]
    assert table.level_words == ["excellent", "bad", "fair"]


def test_vote_errors_name_the_row():
    votes = pd.DataFrame({"item": ["a", "a", "b"], "rater": ["r1", "r2", "r1"], "vote": [5, 6, 1]})
    with pytest.raises(InputError, match=r"<DataFrame> row 2: vote 6 is not an integer level 1-5"):
        labels_from_votes(votes)
    votes = pd.DataFrame({"item": ["a", "a"], "rater": ["r1", "r1"], "vote": [5, 4]})
    with pytest.raises(InputError, match="rated 'a' twice"):
        labels_from_votes(votes)
    votes = pd.DataFrame({"item": ["a", "a"], "rater": ["r1", "r2"], "vote": [5, 4], "group": ["g1", "g2"]})
    with pytest.raises(InputError, match="more than one value in column 'group'"):
        labels_from_votes(votes, group="group")


# --------------------------------------------------------------------------- MOS tables


def test_column_aliases_and_detection(tmp_path):
    for header in ("img_path,gt_score", "image,MOS", "path,score", "image_name,mos"):
        path = tmp_path / "t.csv"
        path.write_text(f"{header}\na.jpg,1\nb.jpg,3\nc.jpg,5\n")
        table = load_labels(path)
        assert table.kind == "mos"
        assert table.frame["path"].tolist() == ["a.jpg", "b.jpg", "c.jpg"]
        assert table.level_words == ["bad", "fair", "excellent"]
    frame = read_rating_table(path)
    assert detect_kind(frame) == "mos"
    assert detect_kind(pd.DataFrame(columns=["image_name", "c1", "c2", "c3", "c4", "c5"])) == "counts"
    assert detect_kind(pd.DataFrame(columns=["item", "rater", "vote"])) == "votes"


def test_explicit_columns_parquet_and_dmos(tmp_path):
    frame = pd.DataFrame({"file": ["a", "b", "c", "d", "e", "f"], "dmos": [0.0, 10, 30, 50, 70, 100.0], "std": 5.0})
    path = tmp_path / "live.parquet"
    frame.to_parquet(path)
    table = load_labels(path, columns={"path": "file", "mos": "dmos", "sd": "std"}, dmos=True)
    # lowest DMOS is best
    assert table.level_words == ["excellent", "excellent", "good", "fair", "poor", "bad"]
    assert not table.scale.higher_is_better
    # Gaussian soft labels: expectation on the 1-5 scale is the flipped, rescaled score.
    assert table.soft == "gaussian"
    expected = 1 + 4 * (1 - frame["dmos"].to_numpy() / 100)
    np.testing.assert_allclose(table.level_probs @ np.array([5, 4, 3, 2, 1]), expected, atol=1e-6)


def test_count_table_with_counts_not_fractions(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("image,c1,c2,c3,c4,c5,c_total\na.jpg,0,0,1,2,1,4\nb.jpg,3,1,0,0,0,4\n")
    table = load_labels(path)
    assert table.kind == "counts"
    np.testing.assert_allclose(table.frame["mos"], [4.0, 1.25])
    np.testing.assert_allclose(table.frame["sd"], [np.std([3, 4, 4, 5], ddof=1), np.std([1, 1, 1, 2], ddof=1)])
    np.testing.assert_allclose(table.level_probs[0], [0.25, 0.5, 0.25, 0, 0])


# --------------------------------------------------------------------------- errors


def test_malformed_csv_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("image,mos\na.jpg,1\n\nb.jpg,2,7\nc.jpg,3\n")
    with pytest.raises(
        InputError, match=r"bad\.csv line 4: malformed row, expected 2 fields and found 3 \('b\.jpg,2,7'\)"
    ):
        load_labels(path)


def test_missing_column_lists_what_was_looked_for(tmp_path):
    path = tmp_path / "nomos.csv"
    path.write_text("image,quality_rank\na.jpg,1\n")
    with pytest.raises(InputError, match=r"nomos\.csv: missing column for mos; looked for mos, gt_score"):
        load_labels(path)
    with pytest.raises(InputError, match=r"no column named 'rating'"):
        load_labels(path, columns={"mos": "rating"})


def test_non_numeric_and_empty_mos_name_line_and_value(tmp_path):
    path = tmp_path / "text.csv"
    path.write_text("image,mos\na.jpg,1\nb.jpg,2\n\nc.jpg,good\n")
    with pytest.raises(InputError, match=r"text\.csv line 5: column 'mos' has non-numeric value 'good'"):
        load_labels(path)
    path.write_text("image,mos\na.jpg,1\nb.jpg,\n")
    with pytest.raises(InputError, match=r"text\.csv line 3: column 'mos' is empty"):
        load_labels(path)


def test_mos_outside_declared_bounds(tmp_path):
    path = tmp_path / "range.csv"
    path.write_text("image,mos\na.jpg,1\nb.jpg,5.5\nc.jpg,3\n")
    with pytest.raises(InputError, match=r"range\.csv line 3: MOS 5\.5 is outside the declared bounds \[1, 5\]"):
        load_labels(path, low=1, high=5)
    assert load_labels(path).scale.high == 5.5  # bounds from the data accept it


def test_duplicate_paths_and_dataframe_rows(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("image,mos\na.jpg,1\nb.jpg,2\na.jpg,3\n")
    with pytest.raises(InputError, match=r"dup\.csv: item 'a\.jpg' appears more than once \(line 2 and line 4\)"):
        load_labels(path)
    with pytest.raises(InputError, match=r"<DataFrame> row 2: column 'mos' has non-numeric value 'x'"):
        labels_from_mos(pd.DataFrame({"path": ["a", "b"], "mos": [1, "x"]}))
