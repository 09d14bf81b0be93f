"""study store: studies, items, raters, ratings

Revision ID: 0001
Revises:
Create Date: 2026-11-24 14:35:19.101587
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("media_root", sa.Text(), nullable=False),
        sa.Column("target_votes", sa.Integer(), nullable=False),
        sa.Column("items_per_session", sa.Integer(), nullable=False),
        sa.Column("allow_self_register", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_group", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("expected_level", sa.Integer(), nullable=True),
        sa.Column("tolerance", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('image', 'video')", name="ck_items_kind"),
        sa.CheckConstraint("role IN ('test', 'training', 'gold')", name="ck_items_role"),
        sa.CheckConstraint("expected_level IS NULL OR expected_level BETWEEN 1 AND 5", name="ck_items_expected_level"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "path", name="uq_items_study_path"),
    )
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_items_sha256"), ["sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_items_study_id"), ["study_id"], unique=False)

    op.create_table(
        "raters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "name", name="uq_raters_study_name"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("raters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_raters_study_id"), ["study_id"], unique=False)

    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("response_ms", sa.Float(), nullable=True),
        sa.CheckConstraint("level BETWEEN 1 AND 5", name="ck_ratings_level"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rater_id", "item_id", name="uq_ratings_rater_item"),
    )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ratings_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ratings_rater_id"), ["rater_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ratings_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ratings_study_id"))
        batch_op.drop_index(batch_op.f("ix_ratings_rater_id"))
        batch_op.drop_index(batch_op.f("ix_ratings_item_id"))

    op.drop_table("ratings")
    with op.batch_alter_table("raters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_raters_study_id"))

    op.drop_table("raters")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_items_study_id"))
        batch_op.drop_index(batch_op.f("ix_items_sha256"))

    op.drop_table("items")
    op.drop_table("studies")
