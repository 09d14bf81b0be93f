"""The subject models against Netflix sureal 0.9.0's own numbers (sureal itself is not needed).

* The Netflix public data set (full sampling) and sureal's results on it, from ``tests/data``.
* A simulated partially sampled study and sureal's results on it, from ``tests/data/analysis``.

The requirement is agreement within 1e-3; the tolerance here is far tighter so a drift shows up
long before it matters.
"""

import json

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis import fit_bt500, fit_mle, fit_mos, fit_p913, prepare_votes

from conftest import DATA

LOCAL = DATA / "analysis"
TOL = 1e-5


@pytest.fixture(scope="module")
def nflx():
    frame = pd.read_csv(DATA / "nflx_public_raw_votes.csv")
    reference = json.loads((DATA / "nflx_public_sureal_reference.json").read_text())
    return prepare_votes(frame, content_col="content"), reference


def by_item(reference: dict, key: str, items: pd.Index) -> np.ndarray:
    names = list(reference["quality_scores"])
    values = reference[key]
    series = pd.Series(values, index=names) if isinstance(values, list) else pd.Series(values)
    return series.reindex(items).to_numpy(dtype=float)


def assert_items(result, reference: dict) -> None:
    items = result.items
    np.testing.assert_allclose(items["score"], by_item(reference, "quality_scores", items.index), atol=TOL, rtol=0)
    np.testing.assert_allclose(items["std"], by_item(reference, "quality_scores_std", items.index), atol=TOL, rtol=0)
    lower, upper = reference["quality_scores_ci95"]
    names = list(reference["quality_scores"])
    np.testing.assert_allclose(
        items["score"] - items["ci_low"], pd.Series(lower, index=names).reindex(items.index), atol=TOL, rtol=0
    )
    np.testing.assert_allclose(
        items["ci_high"] - items["score"], pd.Series(upper, index=names).reindex(items.index), atol=TOL, rtol=0
    )


def test_reference_covers_the_votes(nflx):
    votes, reference = nflx
    assert list(votes.raters) == reference["subjects"]
    assert set(votes.items) == set(reference["MOS"]["quality_scores"])
    assert votes.n_votes == 79 * 26


@pytest.mark.parametrize("name, fit", [("MOS", fit_mos), ("BT500_SR_MOS", fit_bt500), ("P913_BR_SR_MOS", fit_p913)])
def test_mean_based_models_match_sureal(nflx, name, fit):
    votes, reference = nflx
    result = fit(votes, ci="normal")  # sureal's interval: +- 1.95996 standard errors
    assert_items(result, reference[name])
    if "observer_rejected" in reference[name]:
        assert result.raters["rejected"].tolist() == reference[name]["observer_rejected"]
        assert all(result.raters.loc[result.raters["rejected"], "reason"].str.startswith("BT.500"))
    if "observer_bias" in reference[name]:
        np.testing.assert_allclose(result.raters["bias"], reference[name]["observer_bias"], atol=TOL, rtol=0)


def test_rejections_are_the_documented_ones(nflx):
    votes, _ = nflx
    assert list(fit_bt500(votes).raters.query("rejected").index) == ["s02"]
    assert list(fit_p913(votes).raters.query("rejected").index) == ["s03", "s04", "s09", "s12"]


@pytest.mark.parametrize("solver", ["auto", "sureal"])
def test_mle_content_oblivious_matches_sureal(nflx, solver):
    votes, reference = nflx
    result = fit_mle(votes, content_ambiguity=False, solver=solver)
    ref = reference["MLE_CO"]
    assert result.converged
    assert_items(result, ref)
    np.testing.assert_allclose(result.raters["bias"], ref["observer_bias"], atol=TOL, rtol=0)
    np.testing.assert_allclose(result.raters["inconsistency"], ref["observer_inconsistency"], atol=TOL, rtol=0)
    assert abs(result.raters["bias"].mean()) < 1e-12  # sureal's zero-mean bias convention


def test_mle_with_content_ambiguity_matches_sureal(nflx):
    votes, reference = nflx
    result = fit_mle(votes, content_ambiguity=True)
    ref = reference["MLE"]
    assert result.converged and result.iterations > 100
    assert_items(result, ref)
    np.testing.assert_allclose(result.raters["bias"], ref["observer_bias"], atol=TOL, rtol=0)
    np.testing.assert_allclose(result.raters["inconsistency"], ref["observer_inconsistency"], atol=TOL, rtol=0)
    assert list(result.contents.index) == sorted(result.contents.index)  # sureal's content ids: sorted names
    np.testing.assert_allclose(result.contents["ambiguity"], ref["content_ambiguity"], atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def partial():
    frame = pd.read_csv(LOCAL / "partial_votes.csv")
    reference = json.loads((LOCAL / "partial_sureal.json").read_text())
    return prepare_votes(frame, content_col="content"), reference


def partial_ref(reference: dict, model: str) -> dict:
    """sureal's lists are in its item order; key the item-level ones by item name."""
    ref = dict(reference[model])
    names = reference["items"]
    ref["quality_scores"] = dict(zip(names, ref["quality_scores"]))
    ref["quality_scores_ci95"] = [
        [1.95996 * s for s in ref["quality_scores_std"]],
        [1.95996 * s for s in ref["quality_scores_std"]],
    ]
    return ref


def test_partial_sampling_design(partial):
    votes, reference = partial
    assert (votes.item_counts() == 12).all()
    assert votes.rater_counts().min() < votes.n_items  # every rater saw only part of the study
    assert list(votes.raters) == reference["subjects"]


@pytest.mark.parametrize("model", ["MOS", "MLE_CO", "MLE"])
def test_partial_sampling_matches_sureal(partial, model):
    votes, reference = partial
    ref = partial_ref(reference, model)
    if model == "MOS":
        result = fit_mos(votes, ci="normal")
    else:
        result = fit_mle(votes, content_ambiguity=model == "MLE")
    assert_items(result, ref)
    if model != "MOS":
        np.testing.assert_allclose(result.raters["bias"], ref["observer_bias"], atol=TOL, rtol=0)
        np.testing.assert_allclose(result.raters["bias_std"], ref["observer_bias_std"], atol=TOL, rtol=0)
        np.testing.assert_allclose(result.raters["inconsistency"], ref["observer_inconsistency"], atol=TOL, rtol=0)
        v = result.raters["inconsistency"].to_numpy()
        lower, upper = ref["observer_inconsistency_ci95"]
        np.testing.assert_allclose(v - result.raters["inconsistency_ci_low"], lower, atol=TOL, rtol=0)
        np.testing.assert_allclose(result.raters["inconsistency_ci_high"] - v, upper, atol=TOL, rtol=0)
    if model == "MLE":
        np.testing.assert_allclose(result.contents["ambiguity"], ref["content_ambiguity"], atol=TOL, rtol=0)
