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

    items: Mapped[list["Item"]] = relationship(back_populates="study", cascade="all, delete-orphan")
    raters: Mapped[list["Rater"]] = relationship(back_populates="study", cascade="all, delete-orphan")


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
