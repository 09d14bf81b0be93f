"""The Results tab's figures, each of a fixed size whatever the number of items.

A study of 10,000 items is shown as the distribution of its MOS and its ends (the worst and the
best items with their intervals); single items are found in the searchable table, never in a
figure with one row per item.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from annotation_ui.paged_table import first_rows  # noqa: E402

MAX_RANKED = 50
"""The most items one ranked plot shows: beyond that the labels no longer read."""

LABEL_CHARS = 36
"""Item names longer than this are shortened in the middle (folders and suffix stay readable)."""

# The five levels' shares of the vote scale [1, 5] ("equal" rule of toolkit.analysis.study_labels).
LEVEL_EDGES = np.linspace(1.0, 5.0, 6)


# Worst level (1) to best (5): red through amber to green, each dark enough to read on white
# (a diverging map's pale middle vanishes there).
LEVEL_COLOURS = np.array(["#c0392b", "#e67e22", "#d4ac0d", "#7cb342", "#1e8449"])


def _colours(n: int) -> np.ndarray:
    return LEVEL_COLOURS[np.linspace(0, len(LEVEL_COLOURS) - 1, n).round().astype(int)]


def short_name(name: str, width: int = LABEL_CHARS) -> str:
    """``name`` cut to ``width`` characters with an ellipsis in the middle."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


def mos_histogram(mos: np.ndarray, level_labels: Sequence[str]) -> Figure:
    """How many items have each MOS (bins of 0.1), bars coloured by the level the MOS gives."""
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    edges = np.linspace(1.0, 5.0, 41)
    counts, _ = np.histogram(np.clip(mos, 1.0, 5.0), bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    level = np.clip(np.searchsorted(LEVEL_EDGES, centres, side="right") - 1, 0, 4)
    colours = _colours(5)
    ax.bar(centres, counts, width=edges[1] - edges[0], color=colours[level], edgecolor="white", linewidth=0.4)
    # Level names under their fifth of the scale, worst (level 1) on the left.
    ticks = (LEVEL_EDGES[:-1] + LEVEL_EDGES[1:]) / 2
    ax.set_xticks(ticks, [f"{label}\n({k + 1})" for k, label in enumerate(reversed(level_labels))], fontsize=8)
    ax.set_xlim(1.0, 5.0)
    ax.set_ylabel("items")
    ax.set_title(f"MOS of {len(mos):,} items", fontsize=10)
    for edge in LEVEL_EDGES[1:-1]:
        ax.axvline(edge, color="0.85", linewidth=0.8, zorder=0)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def ranked_items(table: pd.DataFrame, n: int, worst: bool) -> Figure:
    """The ``n`` worst (or best) items by MOS with their 95 % intervals, ``n`` capped at ``MAX_RANKED``.

    ``table`` needs ``item, mos, ci_low, ci_high, n``. Ties are broken by the item name so the
    same study always shows the same items.
    """
    n = max(1, min(n, MAX_RANKED))
    ordered = first_rows(table, "mos", worst, n)
    fig, ax = plt.subplots(figsize=(6.4, 0.24 * len(ordered) + 1.1))
    y = np.arange(len(ordered))
    mos = ordered["mos"].to_numpy(dtype=float)
    low = np.nan_to_num(mos - ordered["ci_low"].to_numpy(dtype=float), nan=0.0)
    high = np.nan_to_num(ordered["ci_high"].to_numpy(dtype=float) - mos, nan=0.0)
    colour = _colours(5)[0 if worst else 4]
    ax.errorbar(mos, y, xerr=[low, high], fmt="o", markersize=4, capsize=2, color=colour, ecolor="0.45")
    ax.set_yticks(y, [f"{short_name(str(i))}  (n={int(k)})" for i, k in zip(ordered["item"], ordered["n"])], fontsize=7)
    ax.invert_yaxis()
    # Fitted to the items shown (at least one scale unit wide), so the intervals can be told apart.
    ends = np.concatenate([mos - low, mos + high])
    left, right = float(np.nanmin(ends)), float(np.nanmax(ends))
    if right - left < 1.0:
        middle = (left + right) / 2
        left, right = middle - 0.5, middle + 0.5
    ax.set_xlim(max(0.9, left - 0.1), min(5.1, right + 0.1))
    ax.set_xlabel("MOS with 95% CI", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    ax.set_title(f"{'Worst' if worst else 'Best'} {len(ordered)} items", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
