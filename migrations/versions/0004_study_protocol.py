"""study protocol: per-study settings, instructions and consent, screen checks, qualification quiz,
trapping questions, automatic exclusion with overrides, crowd raters, vote scale factor, per-study admin secret

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 15:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RATER_COLUMNS = (
    ("platform", sa.String(length=16)),
    ("external_id", sa.String(length=200)),
    ("external_study", sa.String(length=200)),
    ("external_session", sa.String(length=200)),
    ("instructions_seen_at", sa.DateTime(timezone=True)),
    ("consent_given_at", sa.DateTime(timezone=True)),
    ("quiz_passed", sa.Boolean()),
    ("quiz_finished_at", sa.DateTime(timezone=True)),
    ("completed_at", sa.DateTime(timezone=True)),
    ("exclusion_override", sa.String(length=8)),
    ("override_reason", sa.Text()),
    ("override_by", sa.String(length=200)),
    ("override_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("protocol", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("instructions", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("consent_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("admin_secret_hash", sa.String(length=200), nullable=True))

    # Plain ADD COLUMN (no table rebuild) for raters: on SQLite a rebuilt table is dropped first, and
    # with foreign keys enforced that drop would cascade to every rating of the database.
    with op.batch_alter_table("raters", schema=None) as batch_op:
        for name, type_ in _RATER_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.add_column(sa.Column("excluded_by_rules", sa.Boolean(), server_default="0", nullable=False))
    op.create_index("uq_raters_study_platform_external", "raters", ["study_id", "platform", "external_id"], unique=True)

    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scale_factor", sa.Float(), nullable=True))

    op.create_table(
        "environment_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("viewport_width", sa.Integer(), nullable=False),
        sa.Column("viewport_height", sa.Integer(), nullable=False),
        sa.Column("dpr", sa.Float(), nullable=False),
        sa.Column("zoom", sa.Float(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_environment_checks_rater_id", "environment_checks", ["rater_id"])

    op.create_table(
        "quiz_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("level BETWEEN 1 AND 5", name="ck_quiz_answers_level"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rater_id", "item_id", name="uq_quiz_answers_rater_item"),
    )
    op.create_index("ix_quiz_answers_rater_id", "quiz_answers", ["rater_id"])

    op.create_table(
        "trap_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("instructed_level", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("instructed_level BETWEEN 1 AND 5", name="ck_trap_items_level"),
        sa.CheckConstraint("kind IN ('image', 'video')", name="ck_trap_items_kind"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "path", "instructed_level", name="uq_trap_items_study_path_level"),
    )
    op.create_index("ix_trap_items_study_id", "trap_items", ["study_id"])

    op.create_table(
        "trap_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("trap_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("level BETWEEN 1 AND 5", name="ck_trap_answers_level"),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trap_id"], ["trap_items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["rating_sessions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rater_id", "trap_id", name="uq_trap_answers_rater_trap"),
    )
    op.create_index("ix_trap_answers_rater_id", "trap_answers", ["rater_id"])

    op.create_table(
        "trap_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("trap_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trap_id"], ["trap_items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["rating_sessions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rater_id", name="uq_trap_assignments_rater"),
    )

    op.create_table(
        "rater_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rater_flags_rater_id", "rater_flags", ["rater_id"])


def _drop_columns(table: str, names: list[str]) -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+ and PostgreSQL): batch mode would rebuild
    # the table, and dropping the old copy cascades to the rows that refer to it (items, ratings).
    for name in names:
        op.execute(f'ALTER TABLE {table} DROP COLUMN "{name}"')


def downgrade() -> None:
    op.drop_index("ix_rater_flags_rater_id", table_name="rater_flags")
    op.drop_table("rater_flags")
    op.drop_table("trap_assignments")
    op.drop_index("ix_trap_answers_rater_id", table_name="trap_answers")
    op.drop_table("trap_answers")
    op.drop_index("ix_trap_items_study_id", table_name="trap_items")
    op.drop_table("trap_items")
    op.drop_index("ix_quiz_answers_rater_id", table_name="quiz_answers")
    op.drop_table("quiz_answers")
    op.drop_index("ix_environment_checks_rater_id", table_name="environment_checks")
    op.drop_table("environment_checks")
    _drop_columns("ratings", ["scale_factor"])
    op.drop_index("uq_raters_study_platform_external", table_name="raters")
    _drop_columns("raters", ["excluded_by_rules"] + [name for name, _ in reversed(_RATER_COLUMNS)])
    _drop_columns("studies", ["admin_secret_hash", "consent_text", "instructions", "protocol"])
