"""MLE subject models at scale: toolkit.analysis against Netflix sureal 0.9.0 on the same votes.

Simulates a partially sampled study (default 10,000 items x 100 raters, 30 votes per item,
500 source contents), fits ``mle_co`` and ``mle`` with the toolkit, runs sureal's
``MLE_CO``/``MLE`` on the same saved CSV and prints wall times, the speed ratio and the largest
differences between the estimates.

sureal is not a toolkit dependency. When it is importable here it runs in this process;
otherwise give a Python that has it (``--sureal-python /tmp/sureal-venv/bin/python`` or the
``SUREAL_PYTHON`` environment variable) and it runs there as a subprocess on the saved CSV
(``bench/sureal_reference.py``; its times cover sureal's ``run_modeling`` only, as ours cover
coding the votes plus the fit). Without either, only the toolkit's times are printed.

    python bench/aggregate_scale.py --sureal-python /tmp/sureal-venv/bin/python
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.analysis import fit_mle, prepare_votes
from toolkit.analysis.simulate import simulate_study

HERE = Path(__file__).resolve().parent
SUREAL_NAMES = {"mle_co": "MLE_CO", "mle": "MLE"}


def run_toolkit(frame: pd.DataFrame, model: str, solver: str, repeat: int) -> tuple[float, object]:
    """Median wall time of ``repeat`` runs (coding the votes plus the fit) and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        votes = prepare_votes(frame, content_col="content")
        result = fit_mle(votes, content_ambiguity=model == "mle", solver=solver)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def run_sureal(csv: Path, models: list[str], python: str | None, workdir: Path) -> dict | None:
    names = ",".join(SUREAL_NAMES[m] for m in models)
    out = workdir / "sureal.json"
    if importlib.util.find_spec("sureal") is not None:
        cmd = [sys.executable, str(HERE / "sureal_reference.py"), str(csv), str(out), names]
    elif python:
        cmd = [python, str(HERE / "sureal_reference.py"), str(csv), str(out), names]
    else:
        return None
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    data["wall"] = time.perf_counter() - start
    return data


def max_diff(
    ours: pd.Series | np.ndarray, theirs: list, index: pd.Index | None = None, names: list | None = None
) -> float:
    if names is not None:
        theirs = pd.Series(theirs, index=names).reindex(index).to_numpy()
    return float(np.max(np.abs(np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--raters", type=int, default=100)
    parser.add_argument("--votes-per-item", type=int, default=30)
    parser.add_argument("--contents", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--models", default="mle_co,mle", help="comma-separated: mle_co, mle")
    parser.add_argument(
        "--sureal-python",
        default=os.environ.get("SUREAL_PYTHON"),
        help="a Python with sureal==0.9.0 (when sureal is not importable here)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the CSV and sureal's JSON go")
    parser.add_argument("--repeat", type=int, default=3, help="toolkit runs per model (the median is reported)")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="aggregate-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    study = simulate_study(args.items, args.raters, args.votes_per_item, args.contents, seed=args.seed)
    csv = workdir / "votes.csv"
    study.votes.to_csv(csv, index=False)
    frame = pd.read_csv(csv)  # both sides read the same file
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings are wall clock)")
    print(
        f"study: {args.items} items x {args.raters} raters, {len(frame)} votes "
        f"({len(frame) / args.items:.0f} per item, {len(frame) / args.raters:.0f} per rater), "
        f"{args.contents} contents; data in {workdir}"
    )

    ours: dict[str, tuple[float, object]] = {}
    for model in models:
        ours[model] = run_toolkit(frame, model, "auto", args.repeat)
        print(f"toolkit {model:7s} (auto solver):   {ours[model][0]:8.2f} s, {ours[model][1].iterations} iterations")
    if "mle_co" in models:
        seconds, damped = run_toolkit(frame, "mle_co", "sureal", args.repeat)
        print(f"toolkit mle_co  (sureal solver): {seconds:8.2f} s, {damped.iterations} iterations")

    reference = run_sureal(csv, models, args.sureal_python, workdir)
    if reference is None:
        print("sureal: not importable and no --sureal-python / SUREAL_PYTHON given; no comparison")
        return
    print(
        f"sureal 0.9.0 subprocess wall time (loading, all models): {reference['wall']:.1f} s; "
        f"load average now {os.getloadavg()[0]:.1f}"
    )
    header = f"{'model':7s} {'toolkit s':>10s} {'sureal s':>9s} {'ratio':>7s} {'iter':>11s}  max |difference|"
    print(header)
    print("-" * (len(header) + 50))
    for model in models:
        seconds, result = ours[model]
        ref = reference[SUREAL_NAMES[model]]
        names = reference["items"]
        diffs = {
            "score": max_diff(result.items["score"], ref["quality_scores"], result.items.index, names),
            "std": max_diff(result.items["std"], ref["quality_scores_std"], result.items.index, names),
            "bias": max_diff(result.raters["bias"], ref["observer_bias"]),
            "inconsistency": max_diff(result.raters["inconsistency"], ref["observer_inconsistency"]),
        }
        if model == "mle":
            diffs["ambiguity"] = max_diff(result.contents["ambiguity"], ref["content_ambiguity"])
        sureal_s = reference["seconds"][SUREAL_NAMES[model]]
        worst = max(diffs.values())
        print(
            f"{model:7s} {seconds:10.2f} {sureal_s:9.1f} {sureal_s / seconds:6.1f}x "
            f"{result.iterations:>5d}/{ref['num_iter']:<5d}  "
            + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
            + f"  [{'equal within 1e-3' if worst < 1e-3 else 'DIFFERENT'}]"
        )


if __name__ == "__main__":
    main()
