"""A Markdown report with plots for one analysis: what was fitted, who was rejected and why,
the noise ceiling, and the scores with their intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.analysis.pipeline import Analysis
from toolkit.files import atomic_open, atomic_path, prepare_output_dir
from toolkit.qalign import COUNT_COLUMNS

MODEL_TITLES = {
    "mos": "MOS (mean of all votes)",
    "bt500": "ITU-R BT.500 observer rejection, then MOS",
    "p913": "ITU-T P.913 bias removal and rejection, then MOS",
    "mle": "MLE subject model (rater bias, inconsistency, content ambiguity)",
    "mle_co": "MLE subject model (rater bias and inconsistency)",
}


def _fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _md_table(frame: pd.DataFrame, digits: int = 3) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def plot_raters(analysis: Analysis, path: Path) -> Path:
    """Rater bias (+- 1.96 SE) and inconsistency (with its interval), rejected raters in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raters = analysis.result.raters
    pos = np.arange(len(raters))
    colors = np.where(raters["rejected"], "tab:red", "tab:blue")
    fig, (ax_b, ax_v) = plt.subplots(2, 1, figsize=(max(6.0, 0.25 * len(raters) + 2), 6), sharex=True)
    b_err = np.nan_to_num(1.95996 * raters["bias_std"].to_numpy(dtype=float), nan=0.0, posinf=0.0)
    ax_b.errorbar(pos, raters["bias"], yerr=b_err, fmt="none", ecolor="gray", lw=1)
    ax_b.scatter(pos, raters["bias"], c=colors, s=16, zorder=3)
    ax_b.axhline(0, color="black", lw=0.5)
    ax_b.set_ylabel("bias")
    v = raters["inconsistency"].to_numpy(dtype=float)
    low = np.nan_to_num(v - raters["inconsistency_ci_low"].to_numpy(dtype=float), nan=0.0)
    high = np.nan_to_num(raters["inconsistency_ci_high"].to_numpy(dtype=float) - v, nan=0.0)
    ax_v.errorbar(pos, v, yerr=np.vstack([np.maximum(low, 0), np.maximum(high, 0)]), fmt="none", ecolor="gray", lw=1)
    ax_v.scatter(pos, v, c=colors, s=16, zorder=3)
    ax_v.set_ylabel("inconsistency")
    ax_v.set_xlabel("rater")
    if len(raters) <= 60:
        ax_v.set_xticks(pos, [str(r) for r in raters.index], rotation=90, fontsize=7)
    fig.suptitle(f"Raters ({analysis.result.model}); red = rejected")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_scores(analysis: Analysis, path: Path) -> Path:
    """Item scores in increasing order with their 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = analysis.result.items.sort_values("score")
    pos = np.arange(len(items))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.fill_between(pos, items["ci_low"], items["ci_high"], color="tab:blue", alpha=0.25, lw=0, label="95 % CI")
    ax.plot(pos, items["score"], color="tab:blue", lw=1, label="score")
    ax.set_xlabel("items, sorted by score")
    ax.set_ylabel("score")
    ax.legend(loc="upper left")
    ax.set_title(f"Item scores ({analysis.result.model}, {len(items)} items)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_report(analysis: Analysis, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``report.md``, ``raters.png`` and ``scores.png`` into ``folder``; return the Markdown path.

    ``folder`` follows every command's output-folder rule (:func:`toolkit.files.claim_output_dir`):
    a new or empty folder, or with ``overwrite`` an earlier toolkit output; any other non-empty
    folder (of photos, say) is refused untouched.
    """
    out = prepare_output_dir(folder, overwrite=overwrite, written_by="qalign analyze")
    plot_raters(analysis, out / "raters.png")
    plot_scores(analysis, out / "scores.png")
    res = analysis.result
    items, raters = res.items, res.raters
    lines = [
        f"# Subjective study analysis: {analysis.source}",
        "",
        f"- Model: **{res.model}**, {MODEL_TITLES.get(res.model, res.model)}",
        f"- Votes: {analysis.n_votes}; items: {len(items)}; raters: {len(raters)} "
        f"({int(raters['rejected'].sum())} rejected)",
        f"- Votes per item: median {np.median(items['n']):.0f}, min {items['n'].min()}, max {items['n'].max()}",
    ]
    if res.iterations:
        lines.append(f"- Iterations: {res.iterations} ({'converged' if res.converged else 'NOT converged'})")
    if analysis.agreement is not None:
        ag = analysis.agreement
        lines += [
            f"- Split-half agreement (noise ceiling, Spearman-Brown corrected, {ag.n_splits} splits, "
            f"{ag.n_items} items): SRCC {ag.srcc:.3f} [{ag.srcc_ci[0]:.3f}, {ag.srcc_ci[1]:.3f}], "
            f"PLCC {ag.plcc:.3f} [{ag.plcc_ci[0]:.3f}, {ag.plcc_ci[1]:.3f}]",
        ]
    for note in analysis.notes:
        lines.append(f"- Note: {note}")
    counts = analysis.item_stats[list(COUNT_COLUMNS)].sum()
    shares = counts / counts.sum()
    lines += [
        "",
        "## Votes",
        "",
        "| excellent | good | fair | poor | bad |",
        "|---|---|---|---|---|",
        "| " + " | ".join(f"{int(c)} ({s:.0%})" for c, s in zip(counts, shares)) + " |",
        "",
    ]
    widest = items.assign(width=items["ci_high"] - items["ci_low"]).nlargest(5, "width")
    lines += [
        "## Scores",
        "",
        "![scores](scores.png)",
        "",
        f"Mean 95 % interval width: {(items['ci_high'] - items['ci_low']).mean():.3f}. Widest intervals:",
        "",
        _md_table(widest.reset_index()[["item", "score", "ci_low", "ci_high", "n"]]),
        "",
    ]

    lines += ["## Raters", "", "![raters](raters.png)", ""]
    rejected = raters[raters["rejected"]]
    if len(rejected):
        lines += [
            "### Rejected",
            "",
            _md_table(rejected.reset_index()[["rater", "n", "bias", "inconsistency", "reason"]]),
            "",
        ]
    else:
        lines += ["No rater was rejected by the model.", ""]
    if analysis.screening is not None:
        table = analysis.screening.table
        flagged = table[table["flagged"]]
        lines += ["### Screening", ""]
        if len(flagged):
            cols = [
                "rater",
                "n_votes",
                "gold_accuracy",
                "modal_share",
                "longest_run",
                "median_response_ms",
                "correlation",
                "reason",
            ]
            lines += [_md_table(flagged.reset_index()[cols]), ""]
        else:
            lines += ["No rater was flagged (gold items, straightlining, response time, agreement).", ""]
    if res.contents is not None:
        lines += [
            "## Content ambiguity",
            "",
            _md_table(res.contents.reset_index()[["content", "n", "ambiguity", "ambiguity_std"]]),
            "",
        ]
    lines += [
        "## All raters",
        "",
        _md_table(raters.reset_index()[["rater", "n", "bias", "inconsistency", "rejected", "reason"]]),
        "",
    ]
    path = out / "report.md"
    with atomic_open(path) as handle:
        handle.write("\n".join(lines))
    return path
