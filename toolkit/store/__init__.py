"""The study store: studies, items, raters and ratings in SQLite (default) or PostgreSQL.

Typical use::

    from toolkit.store import Store, create_study, add_items, scan_media, add_rater, record_rating
    store = Store("sqlite:///study.db")      # after `qalign db upgrade --db sqlite:///study.db`
    with store.session() as s:
        study = create_study(s, "koniq-pilot", media_root="images/")
        add_items(s, study, scan_media("images/"))
"""

from toolkit.store.engine import DB_URL_ENV, DEFAULT_DB_URL, Store, make_engine, resolve_db_url, safe_url
from toolkit.store.migrate import current_revision, head_revision, upgrade
from toolkit.store.ratings import (
    VOTE_COLUMNS,
    RecordResult,
    import_votes,
    record_rating,
    record_rating_by_token,
    votes_frame,
)
from toolkit.store.schema import Item, Rater, Rating, Study
from toolkit.store.snapshot import StudySnapshot, load_snapshot, read_snapshot
from toolkit.store.studies import (
    AddItemsResult,
    ItemSpec,
    add_items,
    add_rater,
    create_study,
    get_study,
    list_studies,
    rater_for_token,
    read_item_manifest,
    revoke_rater,
    scan_media,
    study_items,
)
from toolkit.store.vote_export import export_study

__all__ = [
    "DB_URL_ENV",
    "DEFAULT_DB_URL",
    "Store",
    "make_engine",
    "resolve_db_url",
    "safe_url",
    "current_revision",
    "head_revision",
    "upgrade",
    "Item",
    "Rater",
    "Rating",
    "Study",
    "export_study",
    "StudySnapshot",
    "load_snapshot",
    "read_snapshot",
    "VOTE_COLUMNS",
    "RecordResult",
    "import_votes",
    "record_rating",
    "record_rating_by_token",
    "votes_frame",
    "AddItemsResult",
    "ItemSpec",
    "add_items",
    "add_rater",
    "create_study",
    "get_study",
    "list_studies",
    "rater_for_token",
    "read_item_manifest",
    "revoke_rater",
    "scan_media",
    "study_items",
]
