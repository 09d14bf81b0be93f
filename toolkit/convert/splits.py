"""Content-grouped, seeded splits and removal of byte-identical duplicates.

Two known leaks of public IQA training files motivate this module: the same distorted image
under two names in train and test, and distortions of one reference image on both sides.
Duplicates are found by the SHA-256 of the file bytes and dropped before splitting; splitting
is done over content groups, so every item of a group lands in the same split.

Where every item is its own group (a study or table without content groups), a split by group
is a split by item and prevents neither leak; :func:`split_notes` says so, and the dataset card
words its split section accordingly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.convert.labels import HASH_COLUMN, LabelTable
from toolkit.convert.media import absolute, media_ref
from toolkit.errors import InputError
from toolkit.files import sha256_file


def parse_fractions(spec: str) -> dict[str, float]:
    """``'train=0.8,test=0.2'`` -> ``{'train': 0.8, 'test': 0.2}`` (must sum to 1)."""
    fractions: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"split {part!r} is not of the form name=fraction (e.g. train=0.8,test=0.2)")
        try:
            frac = float(value)
        except ValueError:
            raise InputError(f"split {name!r} has non-numeric fraction {value.strip()!r}") from None
        if not 0 < frac <= 1:
            raise InputError(f"split {name!r} has fraction {frac}; fractions must be in (0, 1]")
        if name in fractions:
            raise InputError(f"split {name!r} is given twice")
        fractions[name] = frac
    return check_fractions(fractions)


def check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    if not fractions:
        raise InputError("no split fractions given")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise InputError(f"split fractions must sum to 1, got {total:g} ({fractions})")
    return dict(fractions)


def assign_splits(groups: np.ndarray | pd.Series, fractions: dict[str, float], seed: int = 0) -> np.ndarray:
    """Split name per item such that all items of a group share a split.

    Groups are shuffled with ``numpy.random.default_rng(seed)`` (after sorting their names, so
    the result does not depend on row order) and laid end to end; a group goes to the split in
    whose share of the items its midpoint falls. Split sizes therefore match the fractions to
    within one group.
    """
    fractions = check_fractions(fractions)
    keys = np.asarray(groups, dtype=object).astype(str)
    names, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = sizes[order]
    midpoints = np.cumsum(shuffled) - shuffled / 2.0
    edges = np.cumsum(list(fractions.values())) * len(keys)
    slot = np.minimum(np.searchsorted(edges, midpoints, side="right"), len(fractions) - 1)
    split_of_group = np.empty(len(names), dtype=object)
    split_of_group[order] = np.asarray(list(fractions), dtype=object)[slot]
    return split_of_group[inverse]


def split_table(table: LabelTable, fractions: dict[str, float] | str, seed: int = 0) -> LabelTable:
    """A copy of ``table`` with its ``split`` column assigned by content group."""
    if isinstance(fractions, str):
        fractions = parse_fractions(fractions)
    frame = table.frame.copy()
    frame["split"] = assign_splits(frame["group"].to_numpy(), fractions, seed)
    return table.with_frame(frame)


ITEM_SPLIT_NOTE = (
    "no content groups: every item is its own group, so items were split individually, not by source "
    "content (versions of one source, e.g. distortions of one reference, may be in different splits)"
)


def is_content_split(groups: np.ndarray | pd.Series) -> bool:
    """Whether splitting by ``groups`` keeps items together: False when no two items share a
    group (each file its own group), which makes the split one by item."""
    keys = np.asarray(groups, dtype=object).astype(str)
    return len(keys) < 2 or len(np.unique(keys)) < len(keys)


def split_notes(table: LabelTable) -> list[str]:
    """What a reader of a table split by :func:`split_table` should know about its split."""
    return [] if is_content_split(table.frame["group"].to_numpy()) else [ITEM_SPLIT_NOTE]


@dataclass
class DuplicateReport:
    """Items dropped because their bytes equal those of an item kept earlier in the table."""

    dropped: pd.DataFrame  # columns: path, duplicate_of, sha256, mos, duplicate_of_mos

    def __len__(self) -> int:
        return len(self.dropped)


def known_hashes(table: LabelTable) -> bool:
    """Whether every item already carries a content hash (e.g. recorded by the study store)."""
    frame = table.frame
    return HASH_COLUMN in frame.columns and bool((frame[HASH_COLUMN].astype(str).str.len() > 0).all())


def file_hashes(table: LabelTable, root: str | os.PathLike[str] | None, kind: str = "image") -> np.ndarray:
    """SHA-256 of each item's media (frame lists hash all frames in order).

    Hashes already in the table (a ``sha256`` column, as the study store records them) are
    used as they are, without reading the files.
    """
    if known_hashes(table):
        return table.frame[HASH_COLUMN].astype(str).to_numpy(dtype=object)
    base = Path(root) if root is not None else None
    out = []
    for value in table.frame["path"]:
        paths = absolute(media_ref(value, kind, base), base)
        if isinstance(paths, list):
            out.append("+".join(sha256_file(p) for p in paths))
        else:
            out.append(sha256_file(paths))
    return np.asarray(out, dtype=object)


def drop_duplicates(
    table: LabelTable, root: str | os.PathLike[str] | None, kind: str = "image"
) -> tuple[LabelTable, DuplicateReport]:
    """Keep the first item of each set of byte-identical files; report the others."""
    hashes = file_hashes(table, root, kind)
    codes, _ = pd.factorize(hashes)
    _, first_of_code = np.unique(codes, return_index=True)
    first_index = first_of_code[codes]
    dup = first_index != np.arange(len(codes))
    frame = table.frame
    dropped = pd.DataFrame(
        {
            "path": frame["path"].to_numpy()[dup],
            "duplicate_of": frame["path"].to_numpy()[first_index[dup]],
            "sha256": hashes[dup],
            "mos": frame["mos"].to_numpy()[dup],
            "duplicate_of_mos": frame["mos"].to_numpy()[first_index[dup]],
        }
    )
    return table.subset(~dup), DuplicateReport(dropped)
