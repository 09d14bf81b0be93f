"""Training labels straight from a study in the store, optionally cleaned by a subject model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from toolkit.errors import InputError

SUBJECT_MODELS = ("mos", "mle", "mle_co", "bt500", "p913")


def study_labels(study: str, db_url: str | None = None, subject_model: str = "mos") -> tuple[pd.DataFrame, Path]:
    """Per-item labels of a study's test items, and the study's media root.

    With ``subject_model="mos"`` the result is the long vote table itself (the converters
    compute MOS, SD and the vote histogram, which gives soft labels). Any other model
    (``mle``, ``mle_co``, ``bt500``, ``p913``) first cleans the votes (rater bias,
    inconsistency, rejection) and returns a MOS table on the 1-5 scale with ``sd`` and ``n``.
    Training and gold items are left out: they were chosen to teach and check raters.
    """
    from toolkit.analysis import clean_labels
    from toolkit.store import Store, get_study, votes_frame

    if subject_model not in SUBJECT_MODELS:
        raise InputError(f"unknown subject model {subject_model!r}; use one of {', '.join(SUBJECT_MODELS)}")
    store = Store(db_url)
    try:
        with store.session() as session:
            record = get_study(session, study)
            votes = votes_frame(session, record)
            media_root = Path(record.media_root)
    finally:
        store.dispose()
    votes = votes[votes["role"] == "test"].reset_index(drop=True)
    if votes.empty:
        raise InputError(f"study {study!r} has no votes on its test items yet")
    if subject_model == "mos":
        return votes[["item", "rater", "vote", "content_group", "sha256"]], media_root
    cleaned = clean_labels(votes[["item", "rater", "vote"]], model=subject_model)  # type: ignore[arg-type]
    groups = votes.drop_duplicates("item").set_index("item")[["content_group", "sha256"]]
    table = cleaned.rename(columns={"item": "path", "score": "mos"})
    table = table.join(groups, on="path")
    return table[["path", "mos", "sd", "n", "content_group", "sha256"]], media_root
