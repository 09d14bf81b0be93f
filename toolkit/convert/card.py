"""The dataset card (``README.md``) of an exported study: YAML metadata for the hub, then the
study design, the raters, how the labels were made, the splits, the columns, licence and citation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from toolkit.convert.labels import LabelTable
from toolkit.convert.splits import DuplicateReport, is_content_split
from toolkit.files import atomic_write_text
from toolkit.qalign import LEVELS

if TYPE_CHECKING:
    from toolkit.store.snapshot import StudySnapshot

SUBJECT_MODEL_TEXT = {
    "mos": "the plain mean of the valid votes (MOS), with a Student-t 95 % interval",
    "mle": "the maximum-likelihood subject model with content ambiguity (sureal `MLE`; ITU-T P.910 Annex E),"
    " which removes rater bias and weighs raters by their consistency; interval from the model",
    "mle_co": "the content-oblivious maximum-likelihood subject model (sureal `MLE_CO`; ITU-T P.913 12.6),"
    " which removes rater bias and weighs raters by their consistency; interval from the model",
    "bt500": "the mean after ITU-R BT.500 observer screening (raters rejected by the kurtosis rule left out)",
    "p913": "the mean after ITU-T P.913 bias removal and subject rejection",
}

COLUMNS_TEXT: tuple[tuple[str, str], ...] = (
    ("image / video / frames", "the media (image bytes embedded; `video` holds the file path)"),
    ("path", "the item's path in the study's media folder"),
    ("question, answer", "a Q-Align prompt and its level answer, ready for fine-tuning"),
    ("mos", "the item's label on the 1-5 vote scale (see Labels)"),
    ("mos_ci_low, mos_ci_high", "95 % confidence interval of `mos`"),
    ("sd", "standard deviation of the item's votes (or the subject model's)"),
    ("n", "number of valid votes"),
    ("level, level_value", "`mos` as a Q-Align level word and value (5 = excellent .. 1 = bad)"),
    ("level_probs", "share of votes per level, excellent first (a soft label)"),
    ("vote_counts", "number of votes per level, excellent first"),
    ("group", "source content; all items of a group are in one split"),
    ("sha256", "SHA-256 of the media file"),
)


UNGROUPED_COLUMN_TEXT = "content group; none was available, so every item is its own group"


def _split_text(table: LabelTable, fractions: dict[str, float] | None, seed: int) -> str:
    """How the items were split. A split by content is claimed only where groups held several
    items: with every item its own group the split is by item, and readers must know that
    versions of one source may sit on both sides."""
    if not fractions:
        return "One split holding every item."
    shares = ", ".join(f"{k} {v:g}" for k, v in fractions.items()) + f", seed {seed}"
    if is_content_split(table.frame["group"].to_numpy()):
        return f"Split by source content ({shares}): every item of a content group is in the same split."
    return (
        f"Split item by item ({shares}): no content grouping was available (every item is its own group), so"
        " items were split individually, not by source content. Versions of one source (e.g. distortions of"
        " one reference) may be in different splits."
    )


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def card_metadata(
    snapshot: StudySnapshot,
    table: LabelTable,
    *,
    kind: str,
    license: str | None,
    license_link: str | None,
    pretty_name: str | None,
    parquet: bool,
) -> dict[str, object]:
    """The card's YAML header, as the hub reads it."""
    meta: dict[str, object] = {
        "license": license or "unknown",
        "pretty_name": pretty_name or f"{snapshot.name} ({snapshot.task} ratings)",
        "task_categories": ["video-classification" if kind == "video" else "image-classification"],
        "tags": [
            "image-quality-assessment" if kind == "image" else "video-quality-assessment",
            "mean-opinion-score",
            "q-align",
            "subjective-study",
        ],
        "size_categories": [_size_category(len(table))],
    }
    if license_link:
        meta["license_link"] = license_link
    if license and license.lower() == "other":
        meta["license_name"] = "other"
    if parquet:
        meta["configs"] = [
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}.parquet"} for name in table.split_names],
            }
        ]
    return meta


def _votes_per_item(n: pd.Series) -> str:
    values = n.to_numpy(dtype=float)
    return f"{values.min():g} / {np.median(values):g} / {values.mean():.1f} / {values.max():g}"


def render_card(
    snapshot: StudySnapshot,
    table: LabelTable,
    items: pd.DataFrame,
    duplicates: DuplicateReport,
    *,
    subject_model: str,
    kind: str,
    license: str | None,
    license_link: str | None,
    citation: str | None,
    description: str | None,
    formats: Sequence[str],
    notes: Sequence[str],
    seed: int,
    fractions: dict[str, float] | None,
) -> str:
    """The Markdown body of the card (no YAML header)."""
    votes = snapshot.votes
    test_votes = votes[votes["role"] == "test"] if "role" in votes.columns else votes
    roles = snapshot.items["role"].value_counts()
    n_test, n_gold, n_training = (int(roles.get(r, 0)) for r in ("test", "gold", "training"))
    media = "videos" if kind == "video" else "images"
    edges = table.scale.boundaries()
    lines = [
        f"# {snapshot.name}",
        "",
        description
        or (
            f"Human {snapshot.task} ratings of {len(table)} {media} on the five-level absolute category rating"
            f" scale, collected in the study `{snapshot.name}` (started {snapshot.created_at}) and exported with"
            " qalign-toolkit."
        ),
        "",
        "## Study design",
        "",
        f'- Question shown to raters: "{snapshot.question}"',
        "- Scale: absolute category rating, five levels (ITU-T P.910 / P.913); buttons, best first: "
        + ", ".join(f"{label} ({5 - k})" for k, label in enumerate(snapshot.level_labels)),
        f"- Target: {snapshot.target_votes} valid votes per item;"
        f" at most {snapshot.items_per_session} votes per sitting;"
        " each rater sees the items in an own random order, never one twice, the least-rated items first",
        f"- Items: {n_test} test item(s), {n_gold} gold item(s) with a known answer"
        + (f" (one after every {snapshot.gold_every} test votes)" if n_gold and snapshot.gold_every else "")
        + f", {n_training} training example(s) shown before rating; only test items are in this dataset",
        "",
        "## Raters",
        "",
        "| | |",
        "|---|---|",
        f"| raters registered | {snapshot.raters_registered} |",
        f"| raters screened out (their votes are not used) | {snapshot.raters_excluded} |",
        f"| raters with valid votes on test items | {test_votes['rater'].nunique() if len(test_votes) else 0} |",
        f"| valid votes on test items | {len(test_votes)} |",
        f"| votes per item in the dataset (min / median / mean / max) | {_votes_per_item(items['n'])} |",
        "",
        "## Labels",
        "",
        f"- `mos` is {SUBJECT_MODEL_TEXT[subject_model]}; subject model: `{subject_model}`.",
        f"- `level` splits the scale [{edges[0]:g}, {edges[5]:g}] into five equal intervals (the Q-Align rule): "
        + ", ".join(
            f"{'[' if k == 0 else '('}{edges[k]:g}, {edges[k + 1]:g}] {LEVELS[4 - k]}" for k in range(4, -1, -1)
        )
        + ".",
        "- `level_probs` is the vote histogram, usable as a soft label (DeQA-Score style training).",
        "",
        "## Splits",
        "",
        _split_text(table, fractions, seed),
        f"Byte-identical media (same SHA-256) were dropped before splitting: {len(duplicates)} item(s).",
        "",
        "| split | items | content groups | " + " | ".join(LEVELS) + " |",
        "|---|---|---|" + "---|" * len(LEVELS),
    ]
    frame = table.frame
    for name in table.split_names:
        part = frame[frame["split"] == name]
        per_level = [int((part["level"] == 5 - k).sum()) for k in range(5)]
        lines.append(f"| {name} | {len(part)} | {part['group'].nunique()} | " + " | ".join(map(str, per_level)) + " |")
    lines += ["", "## Columns", "", "| column | meaning |", "|---|---|"]
    grouped = is_content_split(frame["group"].to_numpy())
    lines += [f"| {c} | {t if grouped or c != 'group' else UNGROUPED_COLUMN_TEXT} |" for c, t in COLUMNS_TEXT]
    lines += ["", "## Loading", "", "```python"]
    if "parquet" in formats:
        files = ", ".join(f'"{n}": "data/{n}.parquet"' for n in table.split_names)
        lines.append(f'from datasets import load_dataset\nds = load_dataset("parquet", data_files={{{files}}})')
    if "dataset" in formats:
        lines.append('from datasets import load_from_disk\nds = load_from_disk("hf_dataset")')
    lines += ["```", "", "`items.csv` lists every item with its split, label, interval and vote counts."]
    lines += ["", "## Licence", ""]
    if license:
        lines.append(f"Released under `{license}`" + (f" ({license_link})" if license_link else "") + ".")
    else:
        lines.append("No licence was stated when this dataset was exported: ask the study's owners before reusing it.")
    lines += ["", "## Citation", ""]
    if citation:
        lines += ["```bibtex" if citation.lstrip().startswith("@") else "```", citation, "```"]
    else:
        lines.append("No citation was given when this dataset was exported.")
    if notes:
        lines += ["", "## Export notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def card_text(metadata: dict[str, object], body: str) -> str:
    """``---``-delimited YAML metadata followed by the Markdown body."""
    import yaml

    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n\n{body}"


def write_card(path: str | os.PathLike[str], metadata: dict[str, object], body: str) -> str:
    text = card_text(metadata, body)
    atomic_write_text(path, text)
    return text
