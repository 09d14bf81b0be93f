"""Subject models beyond parity: input checks, edge cases, recovery of known parameters."""

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis import (
    SUBJECT_MODELS,
    bt500_screen,
    fit_bt500,
    fit_mle,
    fit_mos,
    fit_p913,
    fit_subject_model,
    item_statistics,
    prepare_votes,
)
from toolkit.analysis.simulate import simulate_study
from toolkit.errors import InputError
from toolkit.qalign import COUNT_COLUMNS


def frame(rows):
    return pd.DataFrame(rows, columns=["item", "rater", "vote"])


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("bad, shown", [(6, "6"), (0, "0"), (2.5, "2.5"), (np.nan, "nan"), ("good", "'good'")])
def test_invalid_vote_names_row_item_and_rater(bad, shown):
    data = frame([("a", "r1", 3), ("b", "r1", 4), ("a", "r2", bad)])
    with pytest.raises(InputError) as err:
        prepare_votes(data)
    message = str(err.value)
    assert shown in message and "row 2" in message and "'a'" in message and "'r2'" in message


def test_missing_columns_and_empty_table():
    with pytest.raises(InputError, match="missing column.*'score'"):
        prepare_votes(frame([("a", "r1", 3)]), vote_col="score")
    with pytest.raises(InputError, match="no votes"):
        prepare_votes(frame([]))


def test_missing_ids_are_named():
    with pytest.raises(InputError, match="rater id missing in row"):
        prepare_votes(frame([("a", "r1", 3), ("a", None, 4)]))


def test_unknown_items_and_items_without_votes():
    data = frame([("a", "r1", 3), ("b", "r1", 4), ("zz", "r2", 2)])
    with pytest.raises(InputError, match="unknown item.*'zz'"):
        prepare_votes(data, items=["a", "b"])
    with pytest.raises(InputError, match="without votes.*'c'"):
        prepare_votes(data, items=["a", "b", "c", "zz"])


def test_item_with_two_contents_is_refused():
    data = frame([("a", "r1", 3), ("a", "r2", 4)]).assign(content=["x", "y"])
    with pytest.raises(InputError, match="two different contents.*'a'"):
        prepare_votes(data, content_col="content")


def test_codes_keep_ids_and_order():
    votes = prepare_votes(frame([("b", "r2", 3), ("a", "r1", 4), ("b", "r1", 5)]))
    assert list(votes.items) == ["b", "a"] and list(votes.raters) == ["r1", "r2"]
    back = votes.to_frame()
    assert back[["item", "rater", "vote"]].values.tolist() == [["b", "r2", 3.0], ["a", "r1", 4.0], ["b", "r1", 5.0]]


# --------------------------------------------------------------------------- MOS


def test_item_statistics_histogram_and_t_interval():
    data = frame([("a", f"r{k}", v) for k, v in enumerate([5, 4, 4, 3])] + [("b", "r0", 1), ("b", "r1", 2)])
    stats = item_statistics(prepare_votes(data))
    row = stats.loc["a"]
    assert row["n"] == 4 and row["mos"] == 4.0 and [row[c] for c in COUNT_COLUMNS] == [1, 2, 1, 0, 0]
    sd = np.std([5, 4, 4, 3], ddof=1)
    from scipy import stats as st

    assert row["ci_high"] - row["mos"] == pytest.approx(st.t.ppf(0.975, 3) * sd / 2)


def test_mos_t_interval_is_wider_than_normal_and_single_vote_is_uninformative():
    data = frame([("a", f"r{k}", v) for k, v in enumerate([5, 4, 4, 3, 2])] + [("lone", "r0", 4)])
    votes = prepare_votes(data)
    t, normal = fit_mos(votes, ci="t").items, fit_mos(votes, ci="normal").items
    assert (t.loc["a", "ci_high"] - t.loc["a", "ci_low"]) > (normal.loc["a", "ci_high"] - normal.loc["a", "ci_low"])
    lone = t.loc["lone"]
    assert lone["score"] == 4 and lone["sd"] == 0 and lone["std"] == 2.0
    assert (lone["ci_low"], lone["ci_high"]) == (1.0, 5.0)
    assert np.isfinite(t.to_numpy(dtype=float)).all()


def test_items_table_has_the_cli_columns():
    result = fit_mos(prepare_votes(frame([("a", "r1", 3), ("a", "r2", 4)])))
    assert list(result.items_table().columns) == ["item", "score", "ci_low", "ci_high", "n"]
    assert list(result.raters_table().columns) == ["rater", "bias", "inconsistency", "rejected", "reason"]
    assert list(result.mos_table().columns) == ["item", "score", "sd", "std", "ci_low", "ci_high", "n"]


# --------------------------------------------------------------------------- BT.500 / P.913


def _panel(n_items=20, n_raters=10, seed=0):
    """Every rater votes the item's level, give or take one step at random."""
    rng = np.random.default_rng(seed)
    level = rng.integers(2, 5, n_items)
    rows = [
        (f"i{e}", f"r{s}", int(np.clip(level[e] + rng.integers(-1, 2) * (rng.random() < 0.3), 1, 5)))
        for e in range(n_items)
        for s in range(n_raters)
    ]
    return frame(rows), level


def _lab_panel(extra):
    """20 raters spread -1/0/+1 around level 3 on each of 20 items (kurtosis 2: the 2 SD rule), plus
    rater ``x`` whose vote on item ``e`` is ``extra(e)``."""
    base = [-1] * 5 + [0] * 10 + [1] * 5
    rows = [(f"i{e}", f"r{s:02d}", 3 + int(o)) for e in range(20) for s, o in enumerate(np.roll(base, e))]
    rows += [(f"i{e}", "x", extra(e)) for e in range(20)]
    return frame(rows)


def test_bt500_rejects_a_rater_who_strays_both_ways_not_one_who_is_biased():
    erratic = prepare_votes(_lab_panel(lambda e: 5 if e % 2 == 0 else 1))
    screen = bt500_screen(erratic)
    assert (screen.p[-1], screen.q[-1], screen.n[-1]) == (10, 10, 20) and screen.balance[-1] == 0
    result = fit_bt500(erratic)
    assert list(result.raters.query("rejected").index) == ["x"]
    assert result.raters.loc["x", "reason"].startswith("BT.500: 20 of 20 votes outside")
    assert (result.items["n"] == 20).all() and (result.items["score"] == 3).all()

    biased = fit_bt500(prepare_votes(_lab_panel(lambda e: 5)))  # always high: P = 20, Q = 0
    assert not biased.raters["rejected"].any()
    assert biased.raters.loc["x", "bias"] > 1.5


def test_item_left_without_raters_by_rejection_is_an_error():
    data = pd.concat([_lab_panel(lambda e: 5 if e % 2 == 0 else 1), frame([("solo", "x", 4)])])
    with pytest.raises(InputError, match="every rater of item.*'solo'.*was rejected"):
        fit_bt500(prepare_votes(data))


def test_bt500_keeps_everyone_when_everyone_would_go():
    # Two raters who always disagree by four levels: each is an outlier on every item.
    data = frame(
        [(f"i{e}", r, v) for e in range(6) for r, v in (("a", 1), ("b", 5))]
        + [(f"i{e}", r, v) for e in range(6) for r, v in (("c", 5), ("d", 1))]
    )
    result = fit_bt500(prepare_votes(data))
    assert not result.raters["rejected"].any()


def test_p913_removes_a_constant_offset():
    data, _ = _panel(seed=3)
    shifted = data.copy()
    raised = shifted["rater"] == "r1"
    base = fit_p913(prepare_votes(data)).raters["bias"]
    # One more level from r1 wherever the scale allows: bias goes up, scores barely move.
    shifted.loc[raised & (shifted["vote"] < 5), "vote"] += 1
    after = fit_p913(prepare_votes(shifted))
    assert after.raters.loc["r1", "bias"] > base["r1"] + 0.5
    assert np.allclose(after.raters["bias"].mean(), 0.0, atol=0.2)


def test_every_model_by_name_gives_finite_tables():
    study = simulate_study(40, 10, 10, 4, seed=1)
    votes = prepare_votes(study.votes, content_col="content")
    for model in SUBJECT_MODELS:
        result = fit_subject_model(votes, model)
        assert result.model == model
        assert np.isfinite(result.items[["score", "std", "ci_low", "ci_high"]].to_numpy()).all()
        assert np.isfinite(result.raters[["bias", "inconsistency"]].to_numpy()).all()
    with pytest.raises(InputError, match="unknown subject model"):
        fit_subject_model(votes, "median")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- MLE


def test_mle_recovers_partially_sampled_truth_better_than_mos():
    study = simulate_study(300, 30, 12, 30, seed=5, bias_sd=0.5)
    votes = prepare_votes(study.votes, content_col="content")
    mle = fit_mle(votes, content_ambiguity=False)
    mos = fit_mos(votes)
    truth = study.quality.reindex(mle.items.index)
    # Away from the ends of the scale, where rounding and clipping distort every model alike;
    # scores are identified up to the shared bias offset, so compare after centring.
    mid = (truth > 2) & (truth < 4)

    def rmse(scores):
        err = (scores - truth)[mid]
        return np.sqrt(((err - err.mean()) ** 2).mean())

    assert rmse(mle.items["score"]) < 0.9 * rmse(mos.items["score"])
    true_bias = study.bias.reindex(mle.raters.index)
    assert np.corrcoef(mle.raters["bias"], true_bias)[0, 1] > 0.9
    # About 95 % of the true (centred) scores inside their intervals: the standard errors are honest.
    centred = truth + (mle.items["score"] - truth).mean()
    inside = ((mle.items["ci_low"] <= centred) & (centred <= mle.items["ci_high"])).mean()
    assert 0.85 < inside <= 1.0


def test_fast_and_sureal_solvers_agree_on_the_content_oblivious_model():
    votes = prepare_votes(simulate_study(150, 20, 8, seed=2).votes)
    fast = fit_mle(votes, content_ambiguity=False, solver="fast")
    damped = fit_mle(votes, content_ambiguity=False, solver="sureal")
    assert fast.iterations < damped.iterations / 5
    np.testing.assert_allclose(fast.items["score"], damped.items["score"], atol=1e-5)
    np.testing.assert_allclose(fast.raters["inconsistency"], damped.raters["inconsistency"], atol=1e-5)
    with pytest.raises(InputError, match="content-oblivious model only"):
        fit_mle(votes, content_ambiguity=True, solver="fast")


def test_single_vote_rater_is_left_out_with_a_reason():
    study = simulate_study(30, 6, seed=4)
    data = pd.concat(
        [study.votes, pd.DataFrame([{"item": "i00003", "rater": "zz-once", "content": "c003", "vote": 5}])]
    )
    result = fit_mle(prepare_votes(data), content_ambiguity=False)
    row = result.raters.loc["zz-once"]
    assert row["rejected"] and "fewer than 2 votes" in row["reason"] and row["n"] == 1
    assert not result.raters.drop("zz-once")["rejected"].any()
    assert np.isfinite(result.raters[["bias", "inconsistency"]].to_numpy()).all()
    assert any("left out" in note for note in result.notes)
    assert fit_mos(prepare_votes(data)).raters.loc["zz-once", "rejected"] == False  # noqa: E712 - MOS keeps it


def test_item_rated_only_by_single_vote_raters_is_an_error():
    data = pd.concat([simulate_study(10, 4, seed=1).votes[["item", "rater", "vote"]], frame([("orphan", "once", 3)])])
    with pytest.raises(InputError, match="'orphan'.*fewer than 2 votes"):
        fit_mle(prepare_votes(data), content_ambiguity=False)


def test_degenerate_fits_are_refused_not_returned():
    # Few votes per (rater, content) pair: sureal's iteration runs into a zero-variance singularity here.
    votes = prepare_votes(simulate_study(120, 20, 10, 15, seed=11).votes, content_col="content")
    with pytest.raises(InputError, match="degenerated.*use model 'mle_co'"):
        fit_mle(votes, content_ambiguity=True)
    assert np.isfinite(fit_mle(votes, content_ambiguity=False).items["score"]).all()
    # Eight raters per item: the content-oblivious fit can collapse onto one rater too (sureal 0.9.0
    # returns an inconsistency of 1e-15 for such a rater and scores that copy its votes).
    few = prepare_votes(simulate_study(40, 8, 8, 4, seed=1).votes)
    for solver in ("fast", "sureal"):
        with pytest.raises(InputError, match="degenerated for rater 'r0.*median 8 votes per item"):
            fit_mle(few, content_ambiguity=False, solver=solver)


def test_repeated_votes_count_as_observations():
    data = simulate_study(60, 12, 10, seed=7).votes[["item", "rater", "vote"]]
    doubled = pd.concat([data, data])
    a = fit_mle(prepare_votes(data), content_ambiguity=False)
    b = fit_mle(prepare_votes(doubled), content_ambiguity=False)
    np.testing.assert_allclose(a.items["score"], b.items["score"], atol=1e-6)
    assert (b.items["n"] == 2 * a.items["n"]).all()
    assert (b.items["std"] < a.items["std"]).all()
