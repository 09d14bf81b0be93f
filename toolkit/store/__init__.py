"""The study store: studies, items, raters and ratings in SQLite (default) or PostgreSQL.

Typical use::

    from toolkit.store import Store, create_study, add_items, scan_media, add_rater, record_rating
    store = Store("sqlite:///study.db")      # after `qalign db upgrade --db sqlite:///study.db`
    with store.session() as s:
        study = create_study(s, "koniq-pilot", media_root="images/")
        add_items(s, study, scan_media("images/"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.lazy import lazy_exports

# Names load on first use: a command that needs the engine alone (``qalign study list``, ``db``)
# must not pay for pandas and the vote tables.
_EXPORTS: dict[str, str] = {
    "DB_URL_ENV": "toolkit.store.engine",
    "DEFAULT_DB_URL": "toolkit.store.engine",
    "Store": "toolkit.store.engine",
    "make_engine": "toolkit.store.engine",
    "resolve_db_url": "toolkit.store.engine",
    "safe_url": "toolkit.store.engine",
    "current_revision": "toolkit.store.migrate",
    "head_revision": "toolkit.store.migrate",
    "upgrade": "toolkit.store.migrate",
    "VOTE_COLUMNS": "toolkit.store.ratings",
    "RecordResult": "toolkit.store.ratings",
    "import_votes": "toolkit.store.ratings",
    "record_rating": "toolkit.store.ratings",
    "record_rating_by_token": "toolkit.store.ratings",
    "votes_frame": "toolkit.store.ratings",
    "Item": "toolkit.store.schema",
    "Rater": "toolkit.store.schema",
    "Rating": "toolkit.store.schema",
    "Study": "toolkit.store.schema",
    "StudySnapshot": "toolkit.store.snapshot",
    "load_snapshot": "toolkit.store.snapshot",
    "read_snapshot": "toolkit.store.snapshot",
    "AddItemsResult": "toolkit.store.studies",
    "ItemSpec": "toolkit.store.studies",
    "add_items": "toolkit.store.studies",
    "add_rater": "toolkit.store.studies",
    "create_study": "toolkit.store.studies",
    "get_study": "toolkit.store.studies",
    "list_studies": "toolkit.store.studies",
    "rater_for_token": "toolkit.store.studies",
    "read_item_manifest": "toolkit.store.studies",
    "revoke_rater": "toolkit.store.studies",
    "scan_media": "toolkit.store.studies",
    "study_items": "toolkit.store.studies",
    "export_study": "toolkit.store.vote_export",
    "StudyProtocol": "toolkit.store.study_settings",
    "configure_protocol": "toolkit.store.study_settings",
    "study_protocol": "toolkit.store.study_settings",
    "FlowState": "toolkit.store.protocol",
    "rater_flow": "toolkit.store.protocol",
    "crowd_join": "toolkit.store.crowd",
    "completion": "toolkit.store.crowd",
    "run_exclusion": "toolkit.store.exclusion",
    "rater_payments": "toolkit.store.payments",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # the same names, eagerly, for type checkers
    from toolkit.store.crowd import (
        completion as completion,
    )
    from toolkit.store.crowd import (
        crowd_join as crowd_join,
    )
    from toolkit.store.engine import (
        DB_URL_ENV as DB_URL_ENV,
    )
    from toolkit.store.engine import (
        DEFAULT_DB_URL as DEFAULT_DB_URL,
    )
    from toolkit.store.engine import (
        Store as Store,
    )
    from toolkit.store.engine import (
        make_engine as make_engine,
    )
    from toolkit.store.engine import (
        resolve_db_url as resolve_db_url,
    )
    from toolkit.store.engine import (
        safe_url as safe_url,
    )
    from toolkit.store.exclusion import (
        run_exclusion as run_exclusion,
    )
    from toolkit.store.migrate import (
        current_revision as current_revision,
    )
    from toolkit.store.migrate import (
        head_revision as head_revision,
    )
    from toolkit.store.migrate import (
        upgrade as upgrade,
    )
    from toolkit.store.payments import (
        rater_payments as rater_payments,
    )
    from toolkit.store.protocol import (
        FlowState as FlowState,
    )
    from toolkit.store.protocol import (
        rater_flow as rater_flow,
    )
    from toolkit.store.ratings import (
        VOTE_COLUMNS as VOTE_COLUMNS,
    )
    from toolkit.store.ratings import (
        RecordResult as RecordResult,
    )
    from toolkit.store.ratings import (
        import_votes as import_votes,
    )
    from toolkit.store.ratings import (
        record_rating as record_rating,
    )
    from toolkit.store.ratings import (
        record_rating_by_token as record_rating_by_token,
    )
    from toolkit.store.ratings import (
        votes_frame as votes_frame,
    )
    from toolkit.store.schema import (
        Item as Item,
    )
    from toolkit.store.schema import (
        Rater as Rater,
    )
    from toolkit.store.schema import (
        Rating as Rating,
    )
    from toolkit.store.schema import (
        Study as Study,
    )
    from toolkit.store.snapshot import (
        StudySnapshot as StudySnapshot,
    )
    from toolkit.store.snapshot import (
        load_snapshot as load_snapshot,
    )
    from toolkit.store.snapshot import (
        read_snapshot as read_snapshot,
    )
    from toolkit.store.studies import (
        AddItemsResult as AddItemsResult,
    )
    from toolkit.store.studies import (
        ItemSpec as ItemSpec,
    )
    from toolkit.store.studies import (
        add_items as add_items,
    )
    from toolkit.store.studies import (
        add_rater as add_rater,
    )
    from toolkit.store.studies import (
        create_study as create_study,
    )
    from toolkit.store.studies import (
        get_study as get_study,
    )
    from toolkit.store.studies import (
        list_studies as list_studies,
    )
    from toolkit.store.studies import (
        rater_for_token as rater_for_token,
    )
    from toolkit.store.studies import (
        read_item_manifest as read_item_manifest,
    )
    from toolkit.store.studies import (
        revoke_rater as revoke_rater,
    )
    from toolkit.store.studies import (
        scan_media as scan_media,
    )
    from toolkit.store.studies import (
        study_items as study_items,
    )
    from toolkit.store.study_settings import (
        StudyProtocol as StudyProtocol,
    )
    from toolkit.store.study_settings import (
        configure_protocol as configure_protocol,
    )
    from toolkit.store.study_settings import (
        study_protocol as study_protocol,
    )
    from toolkit.store.vote_export import (
        export_study as export_study,
    )
