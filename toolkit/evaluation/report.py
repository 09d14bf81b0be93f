"""An evaluation report folder: ``report.md``, ``report.json`` and one scatter PNG per prediction set.

Several named prediction sets (e.g. ``before`` and ``after`` fine-tuning) are scored against
the same MOS on the same items. Every later set is compared with the first one by a paired
bootstrap, and their fitted PLCCs by the Fisher-z test of ITU-T P.1401. An inter-rater
split-half correlation, computed from the raw votes by the analysis layer, can be passed in as
the noise ceiling: no model can be expected to agree with the MOS better than the raters agree
among themselves.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.evaluation.metrics import (
    DEFAULT_BOOT,
    METRIC_NAMES,
    AgreementReport,
    MetricResult,
    PairedDifference,
    agreement,
    fisher_z_test,
    paired_bootstrap,
)
from toolkit.files import atomic_write_text, claim_output_dir, prepare_output_dir

REPORT_MD = "report.md"
REPORT_JSON = "report.json"

METRIC_LABELS: dict[str, str] = {
    "srcc": "SRCC",
    "krcc": "KRCC",
    "plcc": "PLCC (raw)",
    "plcc_logistic": "PLCC (logistic)",
    "rmse": "RMSE (raw)",
    "rmse_logistic": "RMSE (logistic)",
}

METRIC_DEFINITIONS: dict[str, str] = {
    "plcc": "Pearson correlation of the raw predictions (as the Q-Align reference and pyiqa report it)",
    "plcc_logistic": "Pearson correlation after the 4-parameter logistic fit (VQEG, ITU-T P.1401)",
    "rmse": "RMSE of the raw predictions against the MOS (only meaningful on a shared scale)",
    "rmse_logistic": "RMSE after the 4-parameter logistic fit, in MOS units",
    "intervals": "percentile bootstrap over items; plcc_fisher: Fisher-z interval",
}
"""What the report's coefficients are, written into every ``report.json``."""

_CEILING_LABELS = {"split_half_srcc": "split-half SRCC", "split_half_plcc": "split-half PLCC"}


@dataclass
class Comparison:
    """Set ``b`` against the reference set ``a`` on the same items."""

    a: str
    b: str
    differences: dict[str, PairedDifference]
    fisher_z: float
    fisher_p: float

    def to_dict(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "differences": {k: v.to_dict() for k, v in self.differences.items()},
            "plcc_logistic_fisher_z": {"z": self.fisher_z, "p_value": self.fisher_p, "method": "ITU-T P.1401 Fisher-z"},
        }


@dataclass
class EvaluationReport:
    """What :func:`write_report` computed and wrote."""

    out_dir: Path
    results: dict[str, AgreementReport]
    comparisons: list[Comparison]
    noise_ceiling: MetricResult | None
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "sets": {k: v.to_dict() for k, v in self.results.items()},
            "comparisons": [c.to_dict() for c in self.comparisons],
            "noise_ceiling": None if self.noise_ceiling is None else self.noise_ceiling.to_dict(),
            "notes": list(self.notes),
            "metric_definitions": dict(METRIC_DEFINITIONS),
        }


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "set"


def _ceiling(value: MetricResult | float | None) -> MetricResult | None:
    if value is None or isinstance(value, MetricResult):
        return value
    v = float(value)
    return MetricResult("split_half_srcc", v, float("nan"), float("nan"), method="given")


def evaluate_sets(
    predictions: Mapping[str, Sequence[float] | np.ndarray],
    mos: Sequence[float] | np.ndarray,
    *,
    items: Sequence[str] | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict[str, AgreementReport], list[Comparison]]:
    """Agreement of every set with the MOS, and every later set compared with the first."""
    if not predictions:
        raise InputError("no prediction sets given")
    results = {
        name: agreement(pred, mos, n_boot=n_boot, seed=seed, confidence=confidence, items=items)
        for name, pred in predictions.items()
    }
    names = list(predictions)
    comparisons = []
    for other in names[1:]:
        diffs = paired_bootstrap(
            predictions[names[0]], predictions[other], mos, n_boot=n_boot, seed=seed, confidence=confidence, items=items
        )
        z, p = fisher_z_test(
            results[names[0]]["plcc_logistic"].value,
            results[other]["plcc_logistic"].value,
            results[names[0]].n,
            results[other].n,
        )
        comparisons.append(Comparison(names[0], other, diffs, z, p))
    return results, comparisons


def write_report(
    out_dir: str | os.PathLike[str],
    predictions: Mapping[str, Sequence[float] | np.ndarray],
    mos: Sequence[float] | np.ndarray,
    *,
    items: Sequence[str] | None = None,
    noise_ceiling: MetricResult | float | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
    title: str = "Agreement with human ratings",
    notes: Sequence[str] = (),
    plots: bool = True,
    overwrite: bool = False,
    legacy: Sequence[str] = (),
) -> EvaluationReport:
    """Compute the agreement of each named prediction set with ``mos`` and write the report folder.

    ``out_dir`` follows every command's output-folder rule (:func:`toolkit.files.claim_output_dir`):
    a new or empty folder, or with ``overwrite`` an earlier toolkit output (one holding the output
    marker or one of the ``legacy`` entries); any other non-empty folder is refused untouched.
    """
    from toolkit.evaluation.plots import scatter_plot

    # Checked before the bootstrap, so a refused folder costs no time; created only after it, so
    # bad inputs leave no empty folder behind.
    out = claim_output_dir(out_dir, overwrite=overwrite, legacy=legacy)
    results, comparisons = evaluate_sets(predictions, mos, items=items, n_boot=n_boot, seed=seed, confidence=confidence)
    prepare_output_dir(out, overwrite=overwrite, written_by="toolkit.evaluation.write_report", legacy=legacy)
    report = EvaluationReport(out, results, comparisons, _ceiling(noise_ceiling), notes=list(notes))
    for name, result in results.items():
        report.notes.extend(f"{name}: {note}" for note in result.notes)
    mos_arr = np.asarray(mos, dtype=float)
    plot_files: dict[str, Path] = {}
    if plots:
        for name, pred in predictions.items():
            target = out / f"scatter_{_slug(name)}.png"
            plot_files[name] = scatter_plot(target, np.asarray(pred, dtype=float), mos_arr, results[name], name)
    md = render_markdown(report, title, {k: v.name for k, v in plot_files.items()})
    report.files = [
        atomic_write_text(out / REPORT_MD, md),
        atomic_write_text(out / REPORT_JSON, json.dumps(_finite(report.to_dict()), indent=2) + "\n"),
        *plot_files.values(),
    ]
    return report


def _finite(value: object) -> object:
    """NaN and infinities as ``null``: strict JSON readers reject the bare tokens."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _cell(m: MetricResult) -> str:
    return f"{_fmt(m.value)} [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]"


def results_table(results: Mapping[str, AgreementReport], first_column: str = "set") -> list[str]:
    """Markdown table rows: one line per prediction set, every coefficient with its interval."""
    lines = [
        f"| {first_column} | " + " | ".join(METRIC_LABELS[m] for m in METRIC_NAMES) + " |",
        "|---|" + "---|" * len(METRIC_NAMES),
    ]
    for name, res in results.items():
        lines.append(f"| {name} | " + " | ".join(_cell(res[m]) for m in METRIC_NAMES) + " |")
    return lines


def fisher_line(results: Mapping[str, AgreementReport]) -> str:
    return (
        "Fisher-z interval of the raw PLCC: "
        + ", ".join(
            f"{name} [{_fmt(r.plcc_fisher.ci_low)}, {_fmt(r.plcc_fisher.ci_high)}]" for name, r in results.items()
        )
        + "."
    )


def ceiling_line(nc: MetricResult) -> str:
    ci = "" if not math.isfinite(nc.ci_low) else f" [{_fmt(nc.ci_low)}, {_fmt(nc.ci_high)}]"
    return (
        f"**Noise ceiling** (inter-rater {_CEILING_LABELS.get(nc.name, nc.name)}): {_fmt(nc.value)}{ci}."
        " A model's SRCC with the MOS is not expected to exceed the raters' agreement with each other."
    )


def comparison_lines(comp: Comparison, confidence: float, heading: str = "##") -> list[str]:
    """A paired comparison as a Markdown section (heading, difference table, Fisher-z line)."""
    pct = f"{confidence * 100:g}%"
    lines = [
        f"{heading} {comp.b} vs {comp.a}",
        "",
        f"Paired bootstrap on the same items; difference = {comp.b} - {comp.a} (for RMSE, negative is better).",
        "",
        f"| metric | {comp.a} | {comp.b} | difference [{pct} CI] | p |",
        "|---|---|---|---|---|",
    ]
    for m, d in comp.differences.items():
        lines.append(
            f"| {METRIC_LABELS[m]} | {_fmt(d.a)} | {_fmt(d.b)} | {_fmt(d.diff)} [{_fmt(d.ci_low)}, {_fmt(d.ci_high)}]"
            f" | {_fmt(d.p_value, 3)} |"
        )
    lines += [
        "",
        f"Fisher-z test of the fitted PLCCs (ITU-T P.1401): z = {_fmt(comp.fisher_z, 3)},"
        f" p = {_fmt(comp.fisher_p, 3)}.",
    ]
    return lines


def render_markdown(report: EvaluationReport, title: str, plots: Mapping[str, str]) -> str:
    """The Markdown text of a report (plots: set name -> PNG file name in the same folder)."""
    first = next(iter(report.results.values()))
    pct = f"{first.confidence * 100:g}%"
    lines = [
        f"# {title}",
        "",
        f"{first.n} items; {pct} intervals from {first.n_boot} bootstrap draws over items (seed {first.seed}).",
        "PLCC and RMSE are given raw (no fit, as the Q-Align reference and pyiqa report them) and after the",
        "4-parameter logistic `y = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2` (VQEG, ITU-T P.1401),",
        "monotone in the direction of the SRCC (a fitted PLCC is negative when the ranking is) and no steeper",
        "than the spread of the predictions allows; where it degenerates a linear fit stands in.",
        "",
        *results_table(report.results),
    ]
    lines.append("")
    lines.append(fisher_line(report.results))
    if report.noise_ceiling is not None:
        lines += ["", ceiling_line(report.noise_ceiling)]
    for comp in report.comparisons:
        lines += ["", *comparison_lines(comp, first.confidence)]
    for name, res in report.results.items():
        fit = res.fit
        params = ", ".join(f"{p:.4g}" for p in fit.params)
        why = f" — {fit.note}" if fit.note else ""
        lines += ["", f"## {name}", "", f"Fit: {fit.kind} ({params}){why}."]
        if name in plots:
            lines += ["", f"![{name}: predicted score vs MOS]({plots[name]})"]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"
