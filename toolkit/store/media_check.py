"""Media on disk: flag items whose file has gone (raters skip them) and unflag those that are back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from toolkit.errors import InputError
from toolkit.store.schema import Item, Study, utcnow
from toolkit.store.studies import resolve_in_root


@dataclass
class MediaCheck:
    missing: list[str] = field(default_factory=list)  # flagged now or before, still missing
    restored: list[str] = field(default_factory=list)  # flag cleared: the file is back


def check_media(session: Session, study: Study, now: datetime | None = None) -> MediaCheck:
    """Look for every item's file; flag the missing ones (raters skip them) and unflag the returned."""
    root = Path(study.media_root)
    now = now or utcnow()
    result = MediaCheck()
    items = session.scalars(select(Item).where(Item.study_id == study.id).order_by(Item.id)).all()
    for item in items:
        try:
            present = resolve_in_root(root, item.path).is_file()
        except InputError:  # a path that escapes the media root counts as missing, never as present
            present = False
        if not present:
            result.missing.append(item.path)
            if item.missing_since is None:
                item.missing_since = now
        elif item.missing_since is not None:
            item.missing_since = None
            result.restored.append(item.path)
    session.flush()
    return result


def missing_items(session: Session, study: Study) -> list[str]:
    """Paths of the study's items currently flagged as missing on disk."""
    return list(
        session.scalars(
            select(Item.path).where(Item.study_id == study.id, Item.missing_since.is_not(None)).order_by(Item.path)
        )
    )
