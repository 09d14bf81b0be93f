"""Scatter plot of predictions against MOS with the fitted logistic curve (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.io import atomic_path
from toolkit.evaluation.metrics import AgreementReport


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
