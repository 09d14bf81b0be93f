"""Agreement metrics: point values against scipy, the logistic fit, vectorised bootstrap, paired tests."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import curve_fit

from toolkit.errors import InputError
from toolkit.evaluation import agreement, fisher_z_ci, fisher_z_test, fit_logistic, logistic4, paired_bootstrap
from toolkit.evaluation.metrics import (
    MIN_SCALE_FRACTION,
    bootstrap_draws,
    bootstrap_indices,
    kendall_draws,
    pearson_rows,
    refit_logistic_rows,
    spearman_rows,
)


def _data(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mos = rng.uniform(0, 100, n)
    pred = 1 + 4 / (1 + np.exp(-(mos - 50) / 15)) + rng.normal(0, noise, n)
    return pred, mos


def test_point_values_match_scipy_on_random_data():
    pred, mos = _data(200, 0.7, seed=1)
    pred = np.round(pred, 1)  # ties, to exercise the tie handling
    rep = agreement(pred, mos, n_boot=50)
    assert rep["srcc"].value == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-12)
    assert rep["krcc"].value == pytest.approx(stats.kendalltau(pred, mos).statistic, abs=1e-12)
    assert rep["plcc"].value == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=1e-12)
    assert rep["rmse"].value == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)), abs=1e-9)
    fitted = rep.fit.predict(pred)
    assert rep["plcc_logistic"].value == pytest.approx(stats.pearsonr(fitted, mos).statistic, abs=1e-12)
    assert rep["rmse_logistic"].value == pytest.approx(np.sqrt(np.mean((fitted - mos) ** 2)), abs=1e-9)


def test_vectorised_draws_equal_per_draw_scipy():
    pred, mos = _data(120, 0.5, seed=2)
    pred = np.round(pred, 1)
    idx = bootstrap_indices(pred.size, 40, seed=3)
    xb, yb = pred[idx], mos[idx]
    sp = [stats.spearmanr(a, b).statistic for a, b in zip(xb, yb)]
    kt = [stats.kendalltau(a, b).statistic for a, b in zip(xb, yb)]
    pe = [stats.pearsonr(a, b).statistic for a, b in zip(xb, yb)]
    np.testing.assert_allclose(spearman_rows(xb, yb), sp, atol=1e-12)
    np.testing.assert_allclose(kendall_draws(pred, mos, idx), kt, atol=1e-6)  # float32 sign matrices
    np.testing.assert_allclose(pearson_rows(xb, yb), pe, atol=1e-12)


def test_logistic_fit_recovers_a_known_monotone_transform():
    rng = np.random.default_rng(4)
    pred = rng.uniform(1, 5, 300)
    true = (90.0, 5.0, 3.2, 0.4)
    mos = logistic4(pred, *true)
    fit = fit_logistic(pred, mos)
    assert fit.kind == "logistic"
    np.testing.assert_allclose(fit.params[:3], true[:3], rtol=1e-4)
    assert abs(fit.params[3]) == pytest.approx(true[3], rel=1e-4)
    rep = agreement(pred, mos, n_boot=200)
    assert rep["plcc_logistic"].value > 0.99999
    assert rep["rmse_logistic"].value < 1e-3
    assert rep["plcc"].value < 0.99  # the raw PLCC sees the curvature
    assert rep["srcc"].value == pytest.approx(1.0)


def test_batched_refit_matches_curve_fit_per_draw():
    pred, mos = _data(150, 0.4, seed=5)
    fit = fit_logistic(pred, mos)
    idx = bootstrap_indices(pred.size, 12, seed=6)
    batched = refit_logistic_rows(pred[idx], mos[idx], fit.params)
    for row, values in zip(idx, batched):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic4, pred[row], mos[row], p0=fit.params, maxfev=20000)
        reference = logistic4(pred[row], *params)
        sse_ours = np.sum((values - mos[row]) ** 2)
        sse_ref = np.sum((reference - mos[row]) ** 2)
        assert sse_ours <= sse_ref * (1 + 1e-6)
        np.testing.assert_allclose(values, reference, atol=1e-2)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_n():
    widths = {}
    for n in (50, 1250):
        pred, mos = _data(n, 0.8, seed=7)
        rep = agreement(pred, mos, n_boot=500, seed=1)
        for name, m in rep.metrics.items():
            assert m.ci_low <= m.value <= m.ci_high, (n, name, m)
        widths[n] = {name: m.ci_high - m.ci_low for name, m in rep.metrics.items()}
        lo, hi = rep.plcc_fisher.ci_low, rep.plcc_fisher.ci_high
        assert lo < rep["plcc"].value < hi and rep.plcc_fisher.method == "fisher-z"
    for name in widths[50]:
        # 1/sqrt(25) = 1/5 expected; 1/2.5 leaves room for the sampling noise of the small set
        assert widths[1250][name] < widths[50][name] / 2.5, name


def test_bootstrap_is_seeded():
    pred, mos = _data(80, 0.6, seed=8)
    a = agreement(pred, mos, n_boot=300, seed=3)
    b = agreement(pred, mos, n_boot=300, seed=3)
    c = agreement(pred, mos, n_boot=300, seed=4)
    assert a.to_dict() == b.to_dict()
    assert a["srcc"].ci_low != c["srcc"].ci_low


def test_paired_bootstrap():
    pred, mos = _data(300, 0.3, seed=9)
    worse = pred + np.random.default_rng(10).normal(0, 1.0, pred.size)
    same = paired_bootstrap(pred, pred, mos, n_boot=200)
    for d in same.values():
        assert d.diff == 0 and d.ci_low == 0 and d.ci_high == 0 and d.p_value == 1.0
    diff = paired_bootstrap(worse, pred, mos, n_boot=400, seed=2)
    srcc = diff["srcc"]
    assert srcc.diff == pytest.approx(stats.spearmanr(pred, mos).statistic - stats.spearmanr(worse, mos).statistic)
    assert 0 < srcc.ci_low <= srcc.diff <= srcc.ci_high
    assert srcc.p_value < 0.01
    assert diff["rmse_logistic"].ci_high < 0  # b (the better set) has the lower fitted RMSE


def test_fisher_z():
    lo, hi = fisher_z_ci(0.8, 103, 0.95)
    half = stats.norm.ppf(0.975) / 10.0
    assert lo == pytest.approx(np.tanh(np.arctanh(0.8) - half)) and hi == pytest.approx(np.tanh(np.arctanh(0.8) + half))
    z, p = fisher_z_test(0.8, 0.9, 103, 103)
    assert z == pytest.approx((np.arctanh(0.9) - np.arctanh(0.8)) / np.sqrt(2 / 100))
    assert p == pytest.approx(2 * stats.norm.sf(z))
    assert fisher_z_test(0.9, 0.8, 103, 103)[0] == pytest.approx(-z)
    assert np.isnan(fisher_z_ci(0.5, 3)[0])


def test_bad_input_is_reported():
    pred, mos = _data(10, 0.3)
    bad = pred.copy()
    bad[4] = np.nan
    with pytest.raises(InputError, match=r"prediction of item 'e.png' is nan \(1 non-finite"):
        agreement(bad, mos, items=[f"{c}.png" for c in "abcdefghij"])
    with pytest.raises(InputError, match="constant values"):
        agreement(np.full(10, 3.0), mos)
    with pytest.raises(InputError, match="differ in length"):
        agreement(pred[:9], mos)
    with pytest.raises(InputError, match="at least 3 items"):
        agreement(pred[:2], mos[:2])


def test_linear_fallback_for_tiny_samples_and_constant_resamples():
    rep = agreement([1.0, 2.0, 3.0, 4.0], [10.0, 25.0, 20.0, 40.0], n_boot=500, seed=0)
    assert rep.fit.kind == "linear"
    assert rep["plcc_logistic"].value == pytest.approx(rep["plcc"].value)
    assert any("linear" in note for note in rep.notes)
    # with four items some resamples repeat one item only; those draws are left out
    assert any("undefined" in note for note in rep.notes)
    assert np.isfinite(rep["srcc"].ci_low)


def test_bootstrap_draws_shapes():
    pred, mos = _data(50, 0.5)
    idx = bootstrap_indices(50, 30, seed=0)
    draws = bootstrap_draws(pred, mos, idx, fit_logistic(pred, mos))
    assert set(draws) == {"srcc", "krcc", "plcc", "rmse", "plcc_logistic", "rmse_logistic"}
    assert all(v.shape == (30,) for v in draws.values())


def test_a_model_ranking_the_wrong_way_gets_a_negative_fitted_plcc():
    # Scores that fall as the MOS rises: the old fit turned them into PLCC (logistic) +0.90.
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 60)
    pred = 5 - 3 / (1 + np.exp(-(mos - 3) / 0.5)) + rng.normal(0, 0.5, 60)
    rep = agreement(pred, mos, n_boot=300)
    assert rep["srcc"].value < -0.8
    assert rep.fit.kind == "logistic" and not rep.fit.increasing
    fitted = rep.fit.predict(pred)
    assert rep["plcc_logistic"].value == pytest.approx(-stats.pearsonr(fitted, mos).statistic, abs=1e-12)
    assert rep["plcc_logistic"].value < -0.8 and rep["plcc_logistic"].ci_high < 0
    # A model and its mirror image score the same fitted PLCC with opposite signs.
    mirror = agreement(-pred, mos, n_boot=10)
    assert mirror["plcc_logistic"].value == pytest.approx(-rep["plcc_logistic"].value, abs=1e-6)


def test_a_step_shaped_fit_falls_back_to_a_line_and_says_so():
    # Like the demo's untrained model: near-constant scores whose few outliers sit on high MOS;
    # the old fit put a step between them and reported PLCC (logistic) 0.45 beside SRCC 0.01.
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 40)
    pred = 3 + rng.normal(0, 0.05, 40) - 0.02 * (mos - 3)
    top = np.argsort(mos)[-3:]
    pred[top] = 3.4 + rng.normal(0, 0.01, 3)
    rep = agreement(pred, mos, n_boot=100)
    assert rep.fit.kind == "linear" and "step" in rep.fit.note
    assert rep["plcc_logistic"].value == pytest.approx(rep["plcc"].value)
    assert any("linear fit: the logistic fit is a step" in n for n in rep.notes)
    assert rep.to_dict()["fit"]["note"] == rep.fit.note  # type: ignore[index]


def test_the_logistic_is_no_steeper_than_the_spread_of_the_predictions():
    pred, mos = _data(200, 0.3, seed=7)
    fit = fit_logistic(pred, mos)
    assert fit.kind == "logistic"
    assert abs(fit.params[3]) >= MIN_SCALE_FRACTION * np.ptp(pred)


def test_near_constant_predictions_are_flagged():
    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 5, 40)
    flat = agreement(3 + rng.uniform(0, 0.03, 40), mos, n_boot=50)
    assert any("nearly constant: all 40 lie within 0.0" in n for n in flat.notes)
    pred, mos = _data(40, 0.5)
    assert not any("nearly constant" in n for n in agreement(pred, mos, n_boot=50).notes)
