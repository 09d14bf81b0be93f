"""Exporting a study's raw votes.

The raw export is the record of what was stored: every vote, those of raters screened out
included (the admin's decision can be undone; the record should not depend on it). Labels and
per-item aggregates are computed from the valid votes by :mod:`toolkit.analysis.study_labels`, which
the store cannot import.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from toolkit.errors import StoreError
from toolkit.io import write_table
from toolkit.store.ratings import votes_frame
from toolkit.store.schema import Study


def export_study(session: Session, study: Study, out: str | Path) -> Path:
    """Write the study's raw votes (``VOTE_COLUMNS``, one row per vote) to ``out`` (.csv/.parquet/.json)."""
    frame = votes_frame(session, study)
    if frame.empty:
        raise StoreError(f"study {study.name!r} has no votes to export")
    return write_table(frame, out)
