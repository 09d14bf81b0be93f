"""The study store's tables, as SQLAlchemy 2.0 typed models.

A *study* asks one question about a set of *items* (images or videos). *Raters* join a study
with an invite token (only its hash is stored) and give at most one *rating* per item: the
``(rater_id, item_id)`` unique constraint is what makes a double submission count once.
The schema itself is created by the Alembic migrations in ``migrations/``; keep both in step.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task: Mapped[str] = mapped_column(String(32), default="quality")  # quality | aesthetics | custom
    question: Mapped[str] = mapped_column(Text)
    media_root: Mapped[str] = mapped_column(Text)
    target_votes: Mapped[int] = mapped_column(Integer, default=15)
    items_per_session: Mapped[int] = mapped_column(Integer, default=50)
    allow_self_register: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Added in revision 0002 (annotation app).
    level_labels: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of 5 labels, best first
    gold_every: Mapped[int] = mapped_column(
        Integer, default=10, server_default="10"
    )  # one gold item per N test votes; 0 = none

    items: Mapped[list[Item]] = relationship(back_populates="study", cascade="all, delete-orphan")
    raters: Mapped[list[Rater]] = relationship(back_populates="study", cascade="all, delete-orphan")


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("study_id", "path", name="uq_items_study_path"),
        CheckConstraint("kind IN ('image', 'video')", name="ck_items_kind"),
        CheckConstraint("role IN ('test', 'training', 'gold')", name="ck_items_role"),
        CheckConstraint("expected_level IS NULL OR expected_level BETWEEN 1 AND 5", name="ck_items_expected_level"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)  # relative to the study's media_root
    kind: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_group: Mapped[str] = mapped_column(Text)  # source content: no group spans two splits
    role: Mapped[str] = mapped_column(String(16), default="test")
    expected_level: Mapped[int | None] = mapped_column(Integer, nullable=True)  # gold and training items
    tolerance: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Added in revision 0002: set when the file was not found on disk; raters are not served it.
    missing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Added in revision 0003: raters are served higher-priority items first (``qalign suggest --push``).
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    study: Mapped[Study] = relationship(back_populates="items")


class Rater(Base):
    __tablename__ = "raters"
    __table_args__ = (UniqueConstraint("study_id", "name", name="uq_raters_study_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Added in revision 0002 (annotation app).
    trained_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    excluded: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="0"
    )  # screened out: votes not counted as valid
    self_registered: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    study: Mapped[Study] = relationship(back_populates="raters")


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("rater_id", "item_id", name="uq_ratings_rater_item"),
        CheckConstraint("level BETWEEN 1 AND 5", name="ck_ratings_level"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    response_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Added in revision 0002: the rating session the vote was given in (straightlining is per session).
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("rating_sessions.id", ondelete="SET NULL"), nullable=True, index=True
    )


class RatingSession(Base):
    """A sitting of one rater: at most ``Study.items_per_session`` votes, then a break."""

    __tablename__ = "rating_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    n_votes: Mapped[int] = mapped_column(Integer, default=0)


class Assignment(Base):
    """The item a rater is looking at now. One per rater (unique), so a reload, a second tab or a
    closed browser finds the same item, and the time it was first shown is kept on the server."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("rater_id", name="uq_assignments_rater"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("rating_sessions.id", ondelete="SET NULL"), nullable=True)
    shown_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AppSetting(Base):
    """Database-wide settings of the annotation app (e.g. the admin secret's salted hash)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
