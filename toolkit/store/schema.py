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
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
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
    # Added in revision 0004 (study protocol): the settings of ``toolkit.store.study_settings`` as JSON
    # (NULL: every default, which is how studies behaved before), the texts raters read first, and an
    # optional admin secret that opens this study's admin pages only (salted hash, like the global one).
    protocol: Mapped[str | None] = mapped_column(Text, nullable=True)
    instructions: Mapped[str | None] = mapped_column(Text, nullable=True)  # Markdown
    consent_text: Mapped[str | None] = mapped_column(Text, nullable=True)  # Markdown
    admin_secret_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)

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
    # Added in revision 0005: the item's votes (excluded raters' too), kept by triggers on ratings;
    # read it fresh from the database (an Item loaded before a vote still holds the old count).
    n_votes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Added in revision 0006: the same votes per level (1 bad .. 5 excellent), kept by the same triggers.
    n_level_1: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_level_2: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_level_3: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_level_4: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_level_5: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    study: Mapped[Study] = relationship(back_populates="items")


class Rater(Base):
    __tablename__ = "raters"
    __table_args__ = (
        UniqueConstraint("study_id", "name", name="uq_raters_study_name"),
        # One rater per crowd worker and study, however many tabs or servers join at once (a unique
        # index: adding a table constraint on SQLite would rebuild the table and cascade to ratings).
        Index("uq_raters_study_platform_external", "study_id", "platform", "external_id", unique=True),
    )

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
    # Added in revision 0004 (study protocol).
    platform: Mapped[str | None] = mapped_column(String(16), nullable=True)  # prolific | mturk; NULL: invited
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)  # PROLIFIC_PID / workerId
    external_study: Mapped[str | None] = mapped_column(String(200), nullable=True)  # STUDY_ID / hitId
    external_session: Mapped[str | None] = mapped_column(String(200), nullable=True)  # SESSION_ID / assignmentId
    instructions_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    consent_given_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    quiz_passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # NULL: quiz not finished
    quiz_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Who decided ``excluded``: the rules (``excluded_by_rules``) or the administrator's override,
    # which later rule runs respect.
    excluded_by_rules: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    exclusion_override: Mapped[str | None] = mapped_column(String(8), nullable=True)  # keep | exclude
    override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    override_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    override_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    study: Mapped[Study] = relationship(back_populates="raters")


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("rater_id", "item_id", name="uq_ratings_rater_item"),
        CheckConstraint("level BETWEEN 1 AND 5", name="ck_ratings_level"),
        # Revision 0005: votes given in a sitting only; imported votes have none.
        Index(
            "ix_ratings_session_id",
            "session_id",
            sqlite_where=text("session_id IS NOT NULL"),
            postgresql_where=text("session_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    # Found through uq_ratings_rater_item, whose first column it is (no index of its own since 0005).
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    level: Mapped[int] = mapped_column(Integer)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    response_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Added in revision 0002: the rating session the vote was given in (straightlining is per session).
    session_id: Mapped[int | None] = mapped_column(ForeignKey("rating_sessions.id", ondelete="SET NULL"), nullable=True)
    # Added in revision 0004: display pixels per stimulus pixel when the stimulus was shown scaled
    # (1.0 or NULL: shown at native resolution, P.910).
    scale_factor: Mapped[float | None] = mapped_column(Float, nullable=True)


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


# --------------------------------------------------------------------------- revision 0004 (study protocol)


class EnvironmentCheck(Base):
    """One screen check of a rater's browser (P.808 / the P.910 crowd kit); the latest decides."""

    __tablename__ = "environment_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), index=True)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    viewport_width: Mapped[int] = mapped_column(Integer)  # CSS pixels
    viewport_height: Mapped[int] = mapped_column(Integer)
    dpr: Mapped[float] = mapped_column(Float)  # device pixels per CSS pixel
    zoom: Mapped[float | None] = mapped_column(Float, nullable=True)  # browser zoom, 1.0 = 100 %
    passed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed, as told to the rater


class QuizAnswer(Base):
    """An answer in the qualification quiz (gold items); never a vote on any label."""

    __tablename__ = "quiz_answers"
    __table_args__ = (
        UniqueConstraint("rater_id", "item_id", name="uq_quiz_answers_rater_item"),
        CheckConstraint("level BETWEEN 1 AND 5", name="ck_quiz_answers_level"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    level: Mapped[int] = mapped_column(Integer)
    correct: Mapped[bool] = mapped_column(Boolean)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrapItem(Base):
    """A trapping question (P.808): a stimulus whose screen tells the rater which level to press."""

    __tablename__ = "trap_items"
    __table_args__ = (
        UniqueConstraint("study_id", "path", "instructed_level", name="uq_trap_items_study_path_level"),
        CheckConstraint("instructed_level BETWEEN 1 AND 5", name="ck_trap_items_level"),
        CheckConstraint("kind IN ('image', 'video')", name="ck_trap_items_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)  # relative to the study's media root
    kind: Mapped[str] = mapped_column(String(8))
    instructed_level: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)  # drawn over the stimulus by the app
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrapAnswer(Base):
    """A rater's answer to a trap; kept apart from ``ratings`` so it never counts as a vote."""

    __tablename__ = "trap_answers"
    __table_args__ = (
        UniqueConstraint("rater_id", "trap_id", name="uq_trap_answers_rater_trap"),
        CheckConstraint("level BETWEEN 1 AND 5", name="ck_trap_answers_level"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), index=True)
    trap_id: Mapped[int] = mapped_column(ForeignKey("trap_items.id", ondelete="CASCADE"))
    level: Mapped[int] = mapped_column(Integer)
    passed: Mapped[bool] = mapped_column(Boolean)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("rating_sessions.id", ondelete="SET NULL"), nullable=True)


class TrapAssignment(Base):
    """The trap on a rater's screen now (one per rater), kept like ``Assignment`` across reloads."""

    __tablename__ = "trap_assignments"
    __table_args__ = (UniqueConstraint("rater_id", name="uq_trap_assignments_rater"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    trap_id: Mapped[int] = mapped_column(ForeignKey("trap_items.id", ondelete="CASCADE"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("rating_sessions.id", ondelete="SET NULL"), nullable=True)
    shown_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RaterFlag(Base):
    """A screening rule a rater broke at the last rule run, with the figures that broke it."""

    __tablename__ = "rater_flags"

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    flagged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
