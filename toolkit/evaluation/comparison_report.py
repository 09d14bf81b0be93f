"""The report folder of :func:`~toolkit.evaluation.evaluate_models`: one section per test set.

Layout::

    report.md, report.json
    <test set>/scatter_<model>.png     predicted score vs MOS with the fitted logistic
    <test set>/reliability.png         predicted level probabilities vs observed shares
    scores/<test set>/<model>.csv      the score tables (written while scoring)
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.evaluation.model_comparison import ModelsReport, TestSetResult, slug
from toolkit.evaluation.report import (
    REPORT_JSON,
    REPORT_MD,
    _finite,
    _fmt,
    ceiling_line,
    comparison_lines,
    fisher_line,
    results_table,
)
from toolkit.files import atomic_write_text, prepare_output_dir
from toolkit.levels import LEVELS


def write_models_report(
    report: ModelsReport, *, title: str, plots: bool = True, overwrite: bool = False
) -> ModelsReport:
    """Draw the figures, then write ``report.md`` and ``report.json`` into ``report.out_dir``.

    ``report.out_dir`` follows every command's output-folder rule
    (:func:`toolkit.files.claim_output_dir`): a new or empty folder, or with ``overwrite`` an earlier
    toolkit output; any other non-empty folder is refused untouched.
    """
    from toolkit.evaluation.plots import reliability_plot, scatter_plot

    out = prepare_output_dir(report.out_dir, overwrite=overwrite, written_by="toolkit.evaluation.write_models_report")
    files: list[Path] = []
    if plots:
        for test in report.tests.values():
            folder = out / slug(test.name)
            for name, pred in test.predictions.items():
                test.plots[name] = scatter_plot(
                    folder / f"scatter_{slug(name)}.png", pred, test.mos, test.results[name], f"{name} on {test.name}"
                )
            if test.calibration:
                test.plots["reliability"] = reliability_plot(
                    folder / "reliability.png", test.calibration, f"Calibration on {test.name}"
                )
            files.extend(test.plots.values())
    md = render_models_markdown(report, title)
    report.files = [
        atomic_write_text(out / REPORT_MD, md),
        atomic_write_text(out / REPORT_JSON, json.dumps(_finite(report.to_dict()), indent=2) + "\n"),
        *files,
    ]
    return report


def _probs(values: tuple[float, ...]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _relative(test: TestSetResult, key: str) -> str:
    return f"{slug(test.name)}/{test.plots[key].name}"


def render_models_markdown(report: ModelsReport, title: str) -> str:
    """The Markdown text of a models x test sets report."""
    first_test = next(iter(report.tests.values()))
    first = next(iter(first_test.results.values()))
    pct = f"{first.confidence * 100:g}%"
    lines = [
        f"# {title}",
        "",
        "Models (the first is the reference of the paired comparisons):",
        "",
        "| model | checkpoint | adapter |",
        "|---|---|---|",
        *(f"| {m.label} | `{m.model}` | {f'`{m.adapter}`' if m.adapter else '-'} |" for m in report.models),
        "",
        f"{pct} intervals from {first.n_boot} bootstrap draws over items (seed {first.seed}).",
        "PLCC and RMSE are given raw (no fit, as the Q-Align reference and pyiqa report them) and after the",
        "4-parameter logistic `y = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2` (VQEG, ITU-T P.1401).",
        "Calibration compares the predicted level probabilities with the observed ones: mean KL(observed ||",
        "predicted) in nats and the classwise expected calibration error (ECE); lower is better for both.",
    ]
    lines.append("")
    lines.append("| test set | items | " + " | ".join(f"{m.label} SRCC" for m in report.models) + " | noise ceiling |")
    lines.append("|---|---|" + "---|" * (len(report.models) + 1))
    for test in report.tests.values():
        srcc = [_fmt(test.results[m.label]["srcc"].value) for m in report.models]
        ceiling = _fmt(test.noise_ceiling.value) if test.noise_ceiling is not None else "-"
        lines.append(f"| {test.name} | {len(test.items)} | " + " | ".join(srcc) + f" | {ceiling} |")
    for test in report.tests.values():
        lines += ["", *section_markdown(test, first.confidence)]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def section_markdown(test: TestSetResult, confidence: float) -> list[str]:
    """The Markdown section of one test set."""
    lines = [
        f"## Test set: {test.name}",
        "",
        f"`{test.source}`: {len(test.items)} of {test.n_items} items evaluated (those every model scored).",
        "",
        *results_table(test.results, first_column="model"),
        "",
        fisher_line(test.results),
    ]
    if test.noise_ceiling is not None:
        lines += ["", ceiling_line(test.noise_ceiling)]
        if test.votes:
            lines.append(
                f"From {test.votes['n_votes']} votes by {test.votes['n_raters']} raters"
                f" on {test.votes['n_items']} test items"
                f" ({test.noise_ceiling.method})."
            )
    for comp in test.comparisons:
        lines += ["", *comparison_lines(comp, confidence, heading="###")]
    if test.calibration:
        any_cal = next(iter(test.calibration.values()))
        lines += [
            "",
            "### Calibration",
            "",
            f"Observed level distribution: {any_cal.observed_from}; {any_cal.n} items;"
            f" {any_cal.n_bins} probability bins.",
            "",
            "| model | mean KL (nats) | ECE | " + " | ".join(f"ECE {w}" for w in LEVELS) + " |",
            "|---|---|---|" + "---|" * len(LEVELS),
        ]
        for name, cal in test.calibration.items():
            per_level = " | ".join(_fmt(cal.ece_per_level[w]) for w in LEVELS)
            lines.append(f"| {name} | {_fmt(cal.mean_kl)} | {_fmt(cal.ece)} | {per_level} |")
        if "reliability" in test.plots:
            lines += ["", f"![reliability on {test.name}]({_relative(test, 'reliability')})"]
        lines += [
            "",
            "Mean level distribution (excellent / good / fair / poor / bad) of the items on each MOS level:",
            "",
            "| model | MOS level | n | observed | predicted | KL |",
            "|---|---|---|---|---|---|",
        ]
        for name, cal in test.calibration.items():
            for b in cal.level_bins:
                lines.append(
                    f"| {name} | {b.level} | {b.count} | {_probs(b.observed)} | {_probs(b.predicted)} | {_fmt(b.kl)} |"
                )
    lines += ["", "### Fits and scatter plots"]
    for name, res in test.results.items():
        params = ", ".join(f"{p:.4g}" for p in res.fit.params)
        lines += ["", f"{name}: {res.fit.kind} fit ({params})."]
        if name in test.plots:
            lines += ["", f"![{name}: predicted score vs MOS on {test.name}]({_relative(test, name)})"]
    if test.notes:
        lines += ["", "### Notes", ""] + [f"- {n}" for n in test.notes]
    return lines
