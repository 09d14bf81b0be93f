"""Figures for the evaluation metrics and the KonIQ conversion.

    python bench/evaluation_bootstrap.py [--draws 1000] [--sizes 300,2000] \\
        [--koniq tests/data/koniq10k_distributions_sets.csv]

1. ``agreement()`` (all six coefficients with bootstrap intervals) per item count, against a
   per-draw loop of scipy calls (``spearmanr``, ``kendalltau``, ``pearsonr``, ``curve_fit``)
   on a subset of the draws, extrapolated to the same number of draws; the ratio is measured
   in one process. Two data sets: a clearly sigmoid relation and a near-linear one (where the
   logistic fit is badly conditioned and converges slowly).
2. The largest difference between the vectorised draws and the per-draw scipy values.
3. Reading the KonIQ-10k table and writing its conversation JSON.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.optimize import curve_fit

from toolkit.evaluation.metrics import (
    agreement,
    bootstrap_draws,
    bootstrap_indices,
    fit_logistic,
    logistic4,
)


def _data(n: int, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mos = rng.uniform(0, 100, n)
    if kind == "sigmoid":
        pred = 1 + 4 / (1 + np.exp(-(mos - 50) / 10)) + rng.normal(0, 0.5, n)
    else:
        pred = 1 + mos / 25 + rng.normal(0, 0.4, n)
    return pred, mos


def _scipy_loop(x: np.ndarray, y: np.ndarray, idx: np.ndarray, start: tuple[float, ...]) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {k: [] for k in ("srcc", "krcc", "plcc", "plcc_logistic")}
    for row in idx:
        xb, yb = x[row], y[row]
        out["srcc"].append(stats.spearmanr(xb, yb).statistic)
        out["krcc"].append(stats.kendalltau(xb, yb).statistic)
        out["plcc"].append(stats.pearsonr(xb, yb).statistic)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic4, xb, yb, p0=start, maxfev=20000)
        out["plcc_logistic"].append(stats.pearsonr(logistic4(xb, *params), yb).statistic)
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--sizes", default="300,2000")
    parser.add_argument("--loop-draws", type=int, default=100, help="draws timed for the scipy loop")
    parser.add_argument(
        "--koniq",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "tests" / "data" / "koniq10k_distributions_sets.csv",
    )
    args = parser.parse_args()

    print(f"bootstrap with {args.draws} draws (scipy loop timed on {args.loop_draws} draws, scaled up)")
    print(f"{'n':>6} {'data':>8} {'agreement() s':>14} {'scipy loop s':>13} {'ratio':>6} {'max |diff|':>11}")
    for n in (int(s) for s in args.sizes.split(",")):
        for kind in ("sigmoid", "linear"):
            x, y = _data(n, kind)
            t0 = time.perf_counter()
            agreement(x, y, n_boot=args.draws, seed=0)
            ours = time.perf_counter() - t0
            fit = fit_logistic(x, y)
            idx = bootstrap_indices(n, args.draws, seed=0)[: args.loop_draws]
            t0 = time.perf_counter()
            ref = _scipy_loop(
                x, y, idx, fit.params if fit.kind == "logistic" else (y.max(), y.min(), x.mean(), x.std() / 4)
            )
            loop = (time.perf_counter() - t0) * args.draws / args.loop_draws
            vec = bootstrap_draws(x, y, idx, fit, names=ref.keys())
            diff = max(float(np.nanmax(np.abs(vec[k] - ref[k]))) for k in ref)
            print(f"{n:>6} {kind:>8} {ours:>14.2f} {loop:>13.2f} {loop / ours:>6.1f} {diff:>11.2e}")

    if args.koniq.exists():
        from toolkit.convert import convert, load_labels

        t0 = time.perf_counter()
        table = load_labels(args.koniq)
        read = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            convert(args.koniq, Path(tmp) / "koniq", prefix="koniq")
            total = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in (Path(tmp) / "koniq").glob("*.json"))
        print(
            f"KonIQ-10k: {len(table)} items read in {read:.2f} s; "
            f"read + JSON for 3 splits in {total:.2f} s ({size / 1e6:.1f} MB)"
        )


if __name__ == "__main__":
    main()
