"""Exporting a study: raw votes, or per-item aggregates (MOS, SD, CI, level histogram)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

from toolkit.errors import StoreError
from toolkit.io import write_table
from toolkit.levels import vote_stats
from toolkit.store.models import Study
from toolkit.store.ratings import votes_frame
from toolkit.store.studies import study_items


def item_aggregates(session: Session, study: Study) -> pd.DataFrame:
    """One row per item of the study: path, kind, group, role, n, MOS, SD, t-CI, c1..c5.

    Items without votes are kept with ``n = 0`` and empty statistics, so nothing disappears
    from an export silently.
    """
    items = pd.DataFrame(
        [(i.path, i.kind, i.content_group, i.role, i.sha256) for i in study_items(session, study)],
        columns=["item", "kind", "content_group", "role", "sha256"],
    )
    votes = votes_frame(session, study)
    if votes.empty:
        stats = pd.DataFrame(columns=["n", "mos", "sd", "ci_low", "ci_high", "c1", "c2", "c3", "c4", "c5"])
    else:
        stats = vote_stats(votes, item="item", vote="vote")
    merged = items.merge(stats, left_on="item", right_index=True, how="left")
    count_cols = ["n", "c1", "c2", "c3", "c4", "c5"]
    merged[count_cols] = merged[count_cols].fillna(0).astype(int)
    return merged


def export_study(session: Session, study: Study, out: str | Path, aggregate: bool = False) -> Path:
    """Write the study's raw votes (or per-item aggregates) to ``out`` (.csv/.parquet/.json)."""
    frame = item_aggregates(session, study) if aggregate else votes_frame(session, study)
    if frame.empty and not aggregate:
        raise StoreError(f"study {study.name!r} has no votes to export")
    return write_table(frame, out)
