"""Reliability coefficients and rater QA at scale: wall times on a simulated partially sampled study.

Simulates ``--items`` items (default 10,000), each voted on by ``--votes`` (15) of ``--raters``
(300) raters on the 1-5 levels, and prints the wall time of Krippendorff's alpha and ICC(2,k)
(point estimate, then with ``--boot`` bootstrap replicates, and the bootstrap time at a quarter,
half and the full count, to show it grows linearly), and of the per-rater model agreement. When
the ``krippendorff`` package is importable its alpha and time on the same votes are printed too.

    python bench/reliability_scale.py --items 10000 --votes 15 --boot 1000
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from toolkit.analysis import icc2k, krippendorff_alpha, prepare_votes, rater_model_agreement

T = TypeVar("T")


def simulate(items: int, raters: int, votes: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    quality = rng.normal(3.0, 0.8, items)
    bias = rng.normal(0.0, 0.3, raters)
    item = np.repeat(np.arange(items), votes)
    # Each item's raters: a random subset without repeats (argsort of random keys per row).
    rater = np.argsort(rng.random((items, raters)), axis=1)[:, :votes].ravel()
    value = np.clip(np.rint(quality[item] + bias[rater] + rng.normal(0, 0.7, item.size)), 1, 5).astype(int)
    frame = pd.DataFrame({"item": [f"i{i}" for i in item], "rater": [f"r{r}" for r in rater], "vote": value})
    return frame, quality


def timed(label: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    start = time.perf_counter()
    result = func(*args, **kwargs)
    print(f"{label:<48} {time.perf_counter() - start:8.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--raters", type=int, default=300)
    parser.add_argument("--votes", type=int, default=15, help="votes per item")
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    frame, quality = simulate(args.items, args.raters, args.votes, args.seed)
    print(f"{args.items} items x {args.votes} votes ({len(frame)} votes, {args.raters} raters)")
    votes = timed("prepare_votes", prepare_votes, frame)
    alpha = timed("Krippendorff's alpha (ordinal), point", krippendorff_alpha, votes, n_boot=0)
    icc = timed("ICC(2,k), point", icc2k, votes, n_boot=0)
    for n in sorted({max(args.boot // 4, 1), max(args.boot // 2, 1), args.boot}):
        alpha = timed(f"Krippendorff's alpha, {n} bootstrap replicates", krippendorff_alpha, votes, n_boot=n)
        icc = timed(f"ICC(2,k), {n} bootstrap replicates", icc2k, votes, n_boot=n)
    print(f"alpha {alpha.alpha:.4f} [{alpha.ci[0]:.4f}, {alpha.ci[1]:.4f}]")
    print(
        f"ICC(2,k) {icc.icc:.4f} [{icc.ci[0]:.4f}, {icc.ci[1]:.4f}], k = {icc.k:.2f}; "
        f"ICC(2,1) {icc.icc_single:.4f}; variances {icc.var_items:.3f} / {icc.var_raters:.3f} / {icc.var_error:.3f}"
    )
    scores = pd.Series(
        quality + np.random.default_rng(1).normal(0, 0.3, args.items), index=[f"i{i}" for i in range(args.items)]
    )
    table = timed("rater_model_agreement", rater_model_agreement, votes, scores)
    print(f"median srcc_model {table['srcc_model'].median():.3f}, srcc_peers {table['srcc_peers'].median():.3f}")

    if importlib.util.find_spec("krippendorff") is not None:
        import krippendorff

        counts = pd.crosstab(frame["item"], frame["vote"]).reindex(columns=range(1, 6), fill_value=0).to_numpy()
        reference = timed(
            "krippendorff package, point (value counts)",
            krippendorff.alpha,
            value_counts=counts,
            value_domain=[1, 2, 3, 4, 5],
            level_of_measurement="ordinal",
        )
        print(f"krippendorff package alpha {reference:.12f}; toolkit {alpha.alpha:.12f}")


if __name__ == "__main__":
    main()
