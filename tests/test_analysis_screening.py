"""Rater screening, split-half agreement (noise ceiling), normalisation, the analysis pipeline."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis import (
    AnalysisOptions,
    ScreeningConfig,
    analyze_votes,
    clean_labels,
    fit_scale_mapping,
    prepare_votes,
    rescale_range,
    screen_raters,
    spearman_brown,
    split_half_agreement,
    zscore_votes,
)
from toolkit.analysis.simulate import simulate_study
from toolkit.errors import InputError

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def crowd_study(seed: int = 0) -> pd.DataFrame:
    """12 careful raters plus four bad ones, gold items and response times, as the store exports votes.

    ``gold_fail`` misses the gold items, ``flat`` always answers 3, ``rusher`` answers in 300 ms,
    ``random`` votes at random.
    """
    rng = np.random.default_rng(seed)
    quality = np.linspace(1.3, 4.7, 30)
    rows = []
    raters = [f"good{k:02d}" for k in range(12)] + ["gold_fail", "flat", "rusher", "random"]
    for r_idx, rater in enumerate(raters):
        moment = T0 + timedelta(hours=r_idx)
        items = [(f"img{e:02d}.png", "test", None, q) for e, q in enumerate(quality)]
        items += [(f"gold{g}.png", "gold", level, float(level)) for g, level in enumerate([5, 1, 5, 1])]
        for item, role, expected, q in items:
            vote = int(np.clip(np.rint(q + rng.normal(0, 0.5)), 1, 5))
            ms = rng.uniform(2500, 6000)
            if rater == "gold_fail" and role == "gold":
                vote = 6 - expected  # the opposite end of the scale
            elif rater == "flat":
                vote = 3
            elif rater == "rusher":
                ms = rng.uniform(200, 400)
            elif rater == "random":
                vote = int(rng.integers(1, 6))
            shown = moment
            moment = moment + timedelta(milliseconds=ms)
            rows.append(
                {
                    "item": item,
                    "rater": rater,
                    "vote": vote,
                    "role": role,
                    "expected_level": expected,
                    "tolerance": 1,
                    "shown_at": shown,
                    "answered_at": moment,
                    "response_ms": ms,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- screening


def test_screening_names_each_bad_rater_and_why():
    report = screen_raters(crowd_study())
    table = report.table
    assert set(report.flagged) == {"gold_fail", "flat", "rusher", "random"}
    assert "gold items: 0 of 4 correct" in table.loc["gold_fail", "reason"]
    assert "straightlining: 100% of 34 votes on one level" in table.loc["flat", "reason"]
    assert "identical answers in a row" in table.loc["flat", "reason"]
    assert "too fast: 100% of votes under 1000 ms" in table.loc["rusher", "reason"]
    assert "far below the other raters" in table.loc["rusher", "reason"]
    assert "low agreement" in table.loc["random", "reason"]
    good = table.loc[table.index.str.startswith("good")]
    assert not good["flagged"].any() and (good["gold_accuracy"] == 1).all() and (good["correlation"] > 0.7).all()


def test_screening_without_gold_or_timing_skips_those_checks():
    data = crowd_study()[["item", "rater", "vote"]]
    table = screen_raters(data, ScreeningConfig(min_correlation=-1)).table
    assert table["gold_accuracy"].isna().all() and table["median_response_ms"].isna().all()
    assert set(table.index[table["flagged"]]) == {"flat"}  # straightlining needs neither


def test_response_time_from_timestamps_when_no_duration_column():
    data = crowd_study().drop(columns=["response_ms"])
    table = screen_raters(data).table
    assert table.loc["rusher", "median_response_ms"] < 500
    assert "too fast" in table.loc["rusher", "reason"]


def test_gold_rows_need_an_expected_level():
    data = crowd_study()
    data.loc[data["role"] == "gold", "expected_level"] = None
    with pytest.raises(InputError, match="gold vote .* has no expected level"):
        screen_raters(data)


# --------------------------------------------------------------------------- pipeline


def test_pipeline_scores_study_items_only_and_can_exclude_flagged_raters():
    data = crowd_study()
    kept = analyze_votes(data, AnalysisOptions(model="mos", agreement_splits=20))
    assert len(kept.result.items) == 30 and not kept.result.items.index.str.startswith("gold").any()
    assert kept.result.raters.loc["flat", "reason"].startswith("flagged, kept: ")
    assert "straightlining" in kept.result.raters.loc["flat", "reason"]
    assert not kept.result.raters.loc["flat", "rejected"]

    strict = analyze_votes(data, AnalysisOptions(model="mos", exclude_flagged=True, agreement_splits=20))
    raters = strict.result.raters
    assert set(raters.index[raters["rejected"]]) == {"gold_fail", "flat", "rusher", "random"}
    assert raters.loc["rusher", "reason"].startswith("screening: too fast")
    assert (strict.result.items["n"] == 12).all()
    assert np.isfinite(raters[["bias", "inconsistency"]].to_numpy()).all()
    # Fewer bad votes, better agreement between halves.
    assert strict.agreement.srcc > kept.agreement.srcc


def test_excluding_flagged_raters_never_drops_an_item_silently():
    data = crowd_study()
    solo = data[(data["rater"] == "flat") & (data["item"] == "img00.png")].assign(item="only_flat.png")
    with pytest.raises(InputError, match="rated only by raters the screening flagged.*'only_flat.png'"):
        analyze_votes(pd.concat([data, solo]), AnalysisOptions(exclude_flagged=True, agreement_splits=0))


def test_clean_labels_is_the_converters_table():
    table = clean_labels(crowd_study(), "p913", exclude_flagged=True)
    assert list(table.columns) == ["item", "score", "sd", "std", "ci_low", "ci_high", "n"]
    assert len(table) == 30
    assert np.isfinite(table[["score", "sd", "std", "ci_low", "ci_high"]].to_numpy()).all()
    assert (table["ci_low"] < table["score"]).all() and (table["score"] < table["ci_high"]).all()
    # The 30 items were made with increasing quality: the cleaned scores follow.
    assert pd.Series(table["score"].to_numpy()).corr(pd.Series(np.arange(30)), method="spearman") > 0.95


def test_pipeline_column_names_and_errors():
    data = crowd_study()[["item", "rater", "vote"]].rename(columns={"item": "file", "rater": "who", "vote": "level"})
    with pytest.raises(InputError, match="missing column.*'item'.*--item-col"):
        analyze_votes(data)
    result = analyze_votes(
        data, AnalysisOptions(item_col="file", rater_col="who", vote_col="level", agreement_splits=0, model="mle_co")
    )
    assert len(result.result.items) == 34 and result.agreement is None


# --------------------------------------------------------------------------- agreement


def test_split_half_agreement_tracks_noise():
    clean = prepare_votes(simulate_study(200, 40, 30, seed=3, inconsistency=(0.1, 0.3), ambiguity=(0.1, 0.2)).votes)
    noisy = prepare_votes(simulate_study(200, 40, 30, seed=3, inconsistency=(1.5, 2.0), ambiguity=(0.8, 1.0)).votes)
    a = split_half_agreement(clean, n_splits=50, seed=1)
    b = split_half_agreement(noisy, n_splits=50, seed=1)
    assert a.srcc > 0.97 and b.srcc < a.srcc
    for res in (a, b):
        assert res.srcc_ci[0] <= res.srcc <= res.srcc_ci[1]
        assert res.plcc_ci[0] <= res.plcc <= res.plcc_ci[1]
        assert res.srcc > res.srcc_half  # Spearman-Brown raises the half-split correlation
        assert res.n_items == 200 and res.n_splits == 50
    assert split_half_agreement(clean, n_splits=50, seed=1) == a  # reproducible with a seed


def test_spearman_brown_and_agreement_errors():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(1.0) == 1.0
    few = prepare_votes(pd.DataFrame({"item": ["a", "a", "b"], "rater": ["x", "y", "x"], "vote": [1, 2, 3]}))
    with pytest.raises(InputError, match="at least 3 items with 2 or more votes"):
        split_half_agreement(few)


# --------------------------------------------------------------------------- normalisation


def test_zscore_per_rater():
    data = pd.DataFrame(
        {
            "item": list("abcdabcd") + ["a", "b"],
            "rater": ["x"] * 4 + ["y"] * 4 + ["flat"] * 2,
            "vote": [1, 2, 3, 4, 3, 3, 4, 5, 3, 3],
        }
    )
    z = zscore_votes(prepare_votes(data)).to_frame()
    per_rater = z.groupby("rater")["vote"]
    assert np.allclose(per_rater.mean(), 0)
    assert np.allclose(per_rater.std(ddof=1)[["x", "y"]], 1)
    assert (z.loc[z["rater"] == "flat", "vote"] == 0).all()  # no variation, no information
    assert np.isfinite(z["vote"]).all()


def test_scale_mapping_between_studies():
    rng = np.random.default_rng(0)
    items = [f"i{k}" for k in range(20)]
    source = pd.Series(rng.uniform(1, 5, 20), index=items)
    target = 20 * source + 7  # the same items on a 0-100 like scale
    mapping = fit_scale_mapping(source.iloc[:12], target.iloc[5:])
    assert mapping.n_common == 7
    assert mapping.slope == pytest.approx(20) and mapping.intercept == pytest.approx(7)
    assert np.allclose(mapping.apply(source), target)
    moments = fit_scale_mapping(source, target, method="moments")
    assert moments.slope == pytest.approx(20)
    with pytest.raises(InputError, match="at least 3 items rated in both"):
        fit_scale_mapping(source.iloc[:2], target)
    assert np.allclose(rescale_range([0, 50, 100], 0, 100), [1, 3, 5])
    assert np.allclose(rescale_range([0, 100], 0, 100, higher_is_better=False), [5, 1])


def test_leave_one_out_correlation_is_the_same_a_chunk_at_a_time(monkeypatch):
    """The per-vote quantities formed a chunk of votes at a time (bounded memory) give the
    correlations of one pass over all votes, with votes on single-vote items left out."""
    from toolkit.analysis import screening

    rng = np.random.default_rng(4)
    n = 5000
    item = rng.integers(0, 700, n)
    rater = rng.integers(0, 40, n).astype(np.int32)
    vote = np.clip(np.rint(item % 5 + 1 + rng.normal(0, 1, n)), 1, 5).astype(np.int8)
    whole = screening._loo_correlation(item, rater, vote, 41, 3)
    monkeypatch.setattr(screening, "LOO_CHUNK_VOTES", 97)
    chunked = screening._loo_correlation(item, rater, vote, 41, 3)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
    assert np.isnan(whole[40]) and np.isfinite(whole[:40]).all()
    # The definition, rater by rater: Pearson r with the mean of the other votes on each item.
    frame = pd.DataFrame({"item": item, "rater": rater, "vote": vote.astype(float)})
    sums = frame.groupby("item")["vote"].agg(["sum", "count"])
    frame = frame.join(sums, on="item")
    frame = frame[frame["count"] >= 2]
    frame["others"] = (frame["sum"] - frame["vote"]) / (frame["count"] - 1)
    for r in (0, 17, 39):
        own = frame[frame["rater"] == r]
        assert whole[r] == pytest.approx(np.corrcoef(own["vote"], own["others"])[0, 1], abs=1e-12)
