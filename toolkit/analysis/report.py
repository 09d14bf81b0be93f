"""A Markdown report with plots for one analysis: what was fitted, who was rejected and why,
the noise ceiling and reliability, the scores with their intervals, and (given a model's scores)
which raters disagree with both the model and their peers. ``report.json`` holds the same
figures for programs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit.analysis.model_agreement import ModelAgreement
from toolkit.analysis.pipeline import Analysis
from toolkit.analysis.reliability import AlphaResult, IccResult
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


def _ci(interval: tuple[float, float]) -> str:
    return "" if not all(np.isfinite(interval)) else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def reliability_lines(alpha: AlphaResult | None, icc: IccResult | None) -> list[str]:
    """Report bullets for Krippendorff's alpha and ICC(2,k) (intervals: bootstrap over items)."""
    lines = []
    if alpha is not None:
        boot = f", {alpha.n_boot} bootstrap replicates over items" if alpha.n_boot else ""
        if alpha.boot_subsampled:
            boot += f" (a random {alpha.boot_items} of them, m-out-of-n)"
        lines.append(
            f"- Krippendorff's alpha ({alpha.metric}, {alpha.n_items} items with 2+ votes{boot}): "
            f"{alpha.alpha:.3f}{_ci(alpha.ci)}"
        )
    if icc is not None:
        boot = f", {icc.n_boot} bootstrap replicates over items" if icc.n_boot else ""
        if icc.boot_subsampled:
            boot += f" (a random {icc.boot_items} of them, m-out-of-n)"
        lines.append(
            f"- ICC(2,k) (two-way random, absolute agreement, k = {icc.k:.1f} votes per item (harmonic mean), "
            f"{icc.n_items} items{boot}): {icc.icc:.3f}{_ci(icc.ci)}; one vote, ICC(2,1): "
            f"{icc.icc_single:.3f}{_ci(icc.icc_single_ci)}. Variances (item, rater, error): {icc.var_items:.3f}, "
            f"{icc.var_raters:.3f}, {icc.var_error:.3f}, by {icc.method}"
        )
    return lines


def model_agreement_lines(qa: ModelAgreement) -> list[str]:
    """The report's section on rater QA against a model's scores."""
    cfg = qa.config
    lines = [
        "## Raters against the model",
        "",
        f"Model scores from {qa.source} matched {qa.n_matched} of {qa.n_items} study items; "
        f"the model's SRCC with the MOS of all votes on them: {_fmt(qa.srcc_mos)}.",
        "",
        "Per rater, Spearman correlation of their votes with the model's scores (`srcc_model`) and with "
        f"the MOS of the other raters (`srcc_peers`) over their common items. Flagged: both below "
        f"{cfg.min_srcc_model:.2f} / {cfg.min_srcc_peers:.2f} on at least {cfg.min_items} common items.",
        "",
    ]
    flagged = qa.flagged
    if len(flagged):
        lines += [_md_table(flagged.reset_index()[["rater", "common_items", "srcc_model", "srcc_peers"]]), ""]
    else:
        lines += ["No rater disagrees with both the model and their peers.", ""]
    for note in qa.notes:
        lines.append(f"- Note: {note}")
    if qa.notes:
        lines.append("")
    return lines


def _plain(value: Any) -> Any:
    """JSON-ready: NumPy scalars as Python numbers, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_data(analysis: Analysis) -> dict[str, Any]:
    """The report's figures as plain data (what ``report.json`` holds)."""
    res = analysis.result
    data: dict[str, Any] = {
        "source": analysis.source,
        "model": res.model,
        "n_votes": analysis.n_votes,
        "n_items": len(res.items),
        "n_raters": len(res.raters),
        "n_rejected": int(res.raters["rejected"].sum()),
        "split_half": None,
        "krippendorff_alpha": None,
        "icc": None,
        "model_agreement": None,
        "notes": list(analysis.notes),
    }
    if analysis.agreement is not None:
        ag = analysis.agreement
        data["split_half"] = {
            "srcc": ag.srcc,
            "srcc_ci": ag.srcc_ci,
            "plcc": ag.plcc,
            "plcc_ci": ag.plcc_ci,
            "n_items": ag.n_items,
            "n_items_eligible": ag.n_items_eligible,
            "n_splits": ag.n_splits,
        }
    rel = analysis.reliability
    if rel is not None and rel.alpha is not None:
        a = rel.alpha
        data["krippendorff_alpha"] = {
            "alpha": a.alpha,
            "ci": a.ci,
            "metric": a.metric,
            "n_items": a.n_items,
            "n_votes": a.n_votes,
            "n_boot": a.n_boot,
            "boot_items": a.boot_items,
            "confidence": a.confidence,
        }
    if rel is not None and rel.icc is not None:
        i = rel.icc
        data["icc"] = {
            "icc2k": i.icc,
            "icc2k_ci": i.ci,
            "icc21": i.icc_single,
            "icc21_ci": i.icc_single_ci,
            "k": i.k,
            "var_items": i.var_items,
            "var_raters": i.var_raters,
            "var_error": i.var_error,
            "complete_design": i.complete,
            "method": i.method,
            "n_items": i.n_items,
            "n_raters": i.n_raters,
            "n_boot": i.n_boot,
            "boot_items": i.boot_items,
            "confidence": i.confidence,
        }
    qa = analysis.model_agreement
    if qa is not None:
        data["model_agreement"] = {
            "source": qa.source,
            "n_matched": qa.n_matched,
            "n_items": qa.n_items,
            "srcc_mos": qa.srcc_mos,
            "thresholds": {
                "min_srcc_model": qa.config.min_srcc_model,
                "min_srcc_peers": qa.config.min_srcc_peers,
                "min_items": qa.config.min_items,
            },
            "flagged": qa.flagged.index.astype(str).tolist(),
            "notes": list(qa.notes),
        }
    return _plain(data)


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
    """Write ``report.md``, ``report.json``, ``raters.png`` and ``scores.png`` into ``folder``; return the
    Markdown path.

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
        sample = f" of {ag.n_items_eligible}, a random subsample" if ag.subsampled else ""
        lines += [
            f"- Split-half agreement (noise ceiling, Spearman-Brown corrected, {ag.n_splits} splits, "
            f"{ag.n_items} items{sample}): SRCC {ag.srcc:.3f} [{ag.srcc_ci[0]:.3f}, {ag.srcc_ci[1]:.3f}], "
            f"PLCC {ag.plcc:.3f} [{ag.plcc_ci[0]:.3f}, {ag.plcc_ci[1]:.3f}]",
        ]
    if analysis.reliability is not None:
        lines += reliability_lines(analysis.reliability.alpha, analysis.reliability.icc)
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
    if analysis.model_agreement is not None:
        lines += model_agreement_lines(analysis.model_agreement)
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
    with atomic_open(out / "report.json") as handle:
        json.dump(report_data(analysis), handle, indent=2, allow_nan=False)
        handle.write("\n")
    path = out / "report.md"
    with atomic_open(path) as handle:
        handle.write("\n".join(lines))
    return path
