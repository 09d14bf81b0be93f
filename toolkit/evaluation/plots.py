"""Report figures (matplotlib, Agg): predictions against MOS with the fitted curve; reliability
diagrams of predicted level probabilities."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolkit.evaluation.calibration import CalibrationResult
from toolkit.evaluation.metrics import AgreementReport
from toolkit.files import atomic_path
from toolkit.levels import LEVELS


def scatter_plot(
    path: str | os.PathLike[str],
    pred: np.ndarray,
    mos: np.ndarray,
    report: AgreementReport,
    title: str,
    x_label: str = "predicted score",
    y_label: str = "MOS",
) -> Path:
    """Write a PNG: one dot per item, the fitted curve over the prediction range, SRCC/PLCC in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on an Agg canvas (no pyplot): no global backend switch, no state kept
    # between reports, no display needed.
    fig = Figure(figsize=(5.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(pred, mos, s=8, alpha=0.5, linewidths=0, color="#2b6cb0")
    grid = np.linspace(float(np.min(pred)), float(np.max(pred)), 200)
    label = "4-parameter logistic" if report.fit.kind == "logistic" else "linear fit"
    ax.plot(grid, report.fit.predict(grid), color="#c53030", linewidth=1.5, label=label)
    srcc, plcc = report["srcc"].value, report["plcc_logistic"].value
    ax.set_title(f"{title}\nSRCC {srcc:.3f}  PLCC (fitted) {plcc:.3f}  n={report.n}", fontsize=10)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


_LINE_COLOURS = ("#2b6cb0", "#c53030", "#2f855a", "#b7791f", "#6b46c1", "#4a5568", "#d53f8c", "#319795")


def reliability_plot(
    path: str | os.PathLike[str],
    results: Mapping[str, CalibrationResult],
    title: str,
) -> Path:
    """Write a PNG with one panel per level: mean observed share against mean predicted
    probability in each probability bin, one line per model, the diagonal for reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 3.2), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(LEVELS), sharey=True)
    for ax, word in zip(axes, LEVELS):
        ax.plot([0, 1], [0, 1], color="#a0aec0", linewidth=1, linestyle="--")
        for k, (name, res) in enumerate(results.items()):
            bins = res.reliability.get(word, [])
            if not bins:
                continue
            x = [b.mean_predicted for b in bins]
            y = [b.mean_observed for b in bins]
            colour = _LINE_COLOURS[k % len(_LINE_COLOURS)]
            ax.plot(
                x,
                y,
                marker="o",
                markersize=3,
                linewidth=1.2,
                color=colour,
                label=f"{name} (ECE {res.ece_per_level[word]:.3f})",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"p({word})", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=6)
    axes[0].set_ylabel("observed share", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
