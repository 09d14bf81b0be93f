"""Setting up a study: level labels, the question raters read, the study with its items in one
transaction, the bundled sample study, and bringing a database to the app's schema."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from toolkit.errors import InputError
from toolkit.store.admin_secret import ensure_admin_secret
from toolkit.store.schema import Study
from toolkit.store.studies import (
    AddItemsResult,
    ContentGrouping,
    ItemSpec,
    add_items,
    create_study,
    list_studies,
    read_item_manifest,
    scan_media,
)
from toolkit.store.study_settings import configure_protocol, set_study_texts

DEFAULT_LEVEL_LABELS: tuple[str, ...] = ("Excellent", "Good", "Fair", "Poor", "Bad")
SAMPLE_STUDY_NAME = "sample-study"
SAMPLE_MEDIA_ROOT = Path(__file__).resolve().parents[1] / "data" / "sample_study"


def level_labels(study: Study) -> list[str]:
    """The five button labels of the study, best first (default Excellent .. Bad)."""
    if not study.level_labels:
        return list(DEFAULT_LEVEL_LABELS)
    return list(json.loads(study.level_labels))


def study_question(study: Study, kind: str = "image") -> str:
    """The question as raters read it, the built-in wording's ``{input}`` filled with the media kind."""
    return study.question.replace("{input}", kind)


def check_level_labels(labels: Sequence[str]) -> list[str]:
    cleaned = [str(label).strip() for label in labels]
    if len(cleaned) != 5 or not all(cleaned):
        raise InputError(f"level labels: need 5 non-empty labels, best first (got {len(cleaned)}: {cleaned!r})")
    if len(set(cleaned)) != 5:
        raise InputError(f"level labels must differ from each other (got {cleaned!r})")
    return cleaned


def configure_study(
    session: Session, study: Study, labels: Sequence[str] | None = None, gold_every: int | None = None
) -> Study:
    """Set the level labels and the gold interleaving rate of a study."""
    if labels is not None:
        cleaned = check_level_labels(labels)
        # The default labels are stored as NULL so that a later change of the defaults reaches them.
        study.level_labels = None if tuple(cleaned) == DEFAULT_LEVEL_LABELS else json.dumps(cleaned)
    if gold_every is not None:
        if gold_every < 0:
            raise InputError(f"gold_every must be 0 (no gold items) or more, got {gold_every}")
        study.gold_every = gold_every
    session.flush()
    return study


@dataclass
class StudySetup:
    """Everything the admin page (or a script) asks when setting up a study."""

    name: str
    media_root: str | Path
    manifest: str | Path | None = None  # CSV of items inside media_root; default: scan the folder
    task: str = "quality"  # quality | aesthetics | custom
    question: str | None = None
    labels: Sequence[str] | None = None
    target_votes: int = 15
    items_per_session: int = 50
    allow_self_register: bool = False
    gold_every: int = 10
    grouping: ContentGrouping | None = None  # content groups from folders or file names; default: one per file
    instructions: str | None = None  # Markdown shown before anything else
    consent: str | None = None  # Markdown the rater agrees to
    protocol: Mapping[str, Any] | None = None  # ``StudyProtocol`` settings (screen check, quiz, traps, crowd, ...)


def setup_study(session: Session, setup: StudySetup) -> tuple[Study, AddItemsResult]:
    """Create a study and its items in one transaction (nothing is kept when an item is refused)."""
    if setup.labels is not None:
        check_level_labels(setup.labels)  # before anything is written
    specs: list[ItemSpec] = read_item_manifest(setup.manifest) if setup.manifest else scan_media(setup.media_root)
    if not specs:
        raise InputError(f"no images or videos found for study {setup.name!r} in {str(setup.media_root)!r}")
    study = create_study(
        session,
        setup.name,
        setup.media_root,
        task=setup.task,
        question=setup.question or None,
        target_votes=setup.target_votes,
        items_per_session=setup.items_per_session,
        allow_self_register=setup.allow_self_register,
    )
    result = add_items(session, study, specs, setup.grouping)
    configure_study(session, study, labels=setup.labels, gold_every=setup.gold_every)
    set_study_texts(session, study, instructions=setup.instructions, consent=setup.consent)
    if setup.protocol:
        configure_protocol(session, study, **dict(setup.protocol))
    return study, result


def create_sample_study(session: Session, name: str = SAMPLE_STUDY_NAME) -> Study:
    """The bundled demonstration study: a few images and a short clip, with training and gold items."""
    return setup_study(
        session,
        StudySetup(
            name=name,
            media_root=SAMPLE_MEDIA_ROOT,
            manifest=SAMPLE_MEDIA_ROOT / "manifest.csv",
            target_votes=5,
            items_per_session=20,
            allow_self_register=True,
            gold_every=3,
        ),
    )[0]


@dataclass
class PrepareReport:
    revision: str
    upgraded: bool
    sample_created: bool
    generated_admin_secret: str | None = None


def prepare_database(url: str | None = None, sample: bool = True, admin_secret: str | None = None) -> PrepareReport:
    """Bring a database to the app's schema, add the sample study to an empty one, ensure an admin secret."""
    from toolkit.store.engine import Store
    from toolkit.store.migrate import current_revision, head_revision, upgrade

    upgraded = False
    if current_revision(url) != head_revision():
        upgrade(url)
        upgraded = True
    store = Store(url)
    try:
        with store.session() as session:
            created = False
            if sample and not list_studies(session):
                create_sample_study(session)
                created = True
            generated = ensure_admin_secret(session, admin_secret)
    finally:
        store.dispose()
    return PrepareReport(
        revision=head_revision(), upgraded=upgraded, sample_created=created, generated_admin_secret=generated
    )
