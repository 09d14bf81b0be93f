"""What a rater's browser session holds: their token, the study's settings (read once), the stimulus
on screen, and a message waiting for the next run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import streamlit as st
from sqlalchemy import func, select

from toolkit.errors import StoreError
from toolkit.store import Store, rater_for_token
from toolkit.store.schema import Item, Study, TrapItem
from toolkit.store.setup import level_labels, study_question
from toolkit.store.study_settings import study_protocol

TOKEN_KEY = "rater_token"
FLASH_KEY = "rater_flash"
CONTEXT_KEY = "rater_context"
SERVED_KEY = "rater_served"
TRAIN_KEY = "train_index"
NEXT_KEY = "rater_next"
PREVIEW_KEY = "rater_preview"


@dataclass(frozen=True)
class RaterContext:
    """What the pages need of the rater and their study, read once per browser session."""

    token: str
    rater_name: str
    study_id: int
    study_name: str
    labels: tuple[str, ...]
    question: str  # with "{input}" for the media kind, as stored
    kinds: tuple[str, ...]  # media kinds of the study's items ("image", "video")
    gold_every: int
    n_gold: int
    trap_every: int = 0
    n_traps: int = 0
    instructions: str | None = None  # Markdown
    consent: str | None = None  # Markdown
    replay: str = "once"
    audio: str = "muted"
    oversize: str = "scale"

    def ask(self, kind: str) -> str:
        return self.question.replace("{input}", kind)

    @property
    def kind_words(self) -> str:
        """How texts name this study's stimuli: image, video, or image or video."""
        return " or ".join(self.kinds) or "image"

    @property
    def who(self) -> str:
        return f"{self.study_name}: {self.rater_name}"


@dataclass(frozen=True)
class Served:
    """The stimulus on the rater's screen, for checking the screen's answer against."""

    key: str
    item_id: int
    kind: str
    role: str  # test | gold | trap | quiz
    file: Path
    shown_at: datetime | None


def load_context(store: Store, token: str) -> RaterContext:
    """The rater's context (raises ToolkitError for an unknown or revoked token)."""
    cached = st.session_state.get(CONTEXT_KEY)
    if isinstance(cached, RaterContext) and cached.token == token:
        return cached
    with store.session() as session:
        rater = rater_for_token(session, token)
        study = session.get(Study, rater.study_id)
        if study is None:  # the foreign key (ON DELETE CASCADE) keeps this from happening
            raise StoreError(f"rater {rater.name!r} belongs to no study")
        kinds = session.scalars(
            select(Item.kind).where(Item.study_id == study.id, Item.role != "training").distinct()
        ).all()
        n_gold = session.scalar(
            select(func.count()).select_from(Item).where(Item.study_id == study.id, Item.role == "gold")
        )
        n_traps = session.scalar(select(func.count()).select_from(TrapItem).where(TrapItem.study_id == study.id))
        protocol = study_protocol(study)
        context = RaterContext(
            token=token,
            rater_name=rater.name,
            study_id=study.id,
            study_name=study.name,
            labels=tuple(level_labels(study)),
            question=study_question(study, "{input}"),
            kinds=tuple(sorted(set(kinds))),
            gold_every=study.gold_every,
            n_gold=int(n_gold or 0),
            trap_every=protocol.trap_every,
            n_traps=int(n_traps or 0),
            instructions=study.instructions or None,
            consent=study.consent_text or None,
            replay=protocol.video_replay,
            audio=protocol.audio,
            oversize=protocol.oversize,
        )
    st.session_state[CONTEXT_KEY] = context
    return context


def context() -> RaterContext | None:
    found = st.session_state.get(CONTEXT_KEY)
    return found if isinstance(found, RaterContext) else None


def served() -> Served | None:
    found = st.session_state.get(SERVED_KEY)
    return found if isinstance(found, Served) else None


def sign_in(token: str) -> None:
    st.session_state[TOKEN_KEY] = token


def sign_out() -> None:
    for key in (TOKEN_KEY, TRAIN_KEY, CONTEXT_KEY, SERVED_KEY, NEXT_KEY):
        st.session_state.pop(key, None)
    if "token" in st.query_params:
        del st.query_params["token"]


def flash(kind: str, message: str) -> None:
    """A message (plain text) for the next run: callbacks run before the page is drawn again."""
    st.session_state[FLASH_KEY] = (kind, message)


def take_flash() -> tuple[str, str] | None:
    kind, message = st.session_state.pop(FLASH_KEY, (None, None))
    return (kind, message) if kind else None
