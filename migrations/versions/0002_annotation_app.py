"""annotation app: rating sessions, pending assignments, settings; level labels, gold rate,
missing-media flag, rater training/exclusion

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 15:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rating_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("n_votes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rating_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rating_sessions_rater_id"), ["rater_id"], unique=False)

    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["rating_sessions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rater_id", name="uq_assignments_rater"),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assignments_item_id"), ["item_id"], unique=False)

    op.create_table(
        "app_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )

    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("level_labels", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("gold_every", sa.Integer(), server_default="10", nullable=False))

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("raters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trained_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("excluded", sa.Boolean(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("self_registered", sa.Boolean(), server_default="0", nullable=False))

    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_ratings_session_id"), ["session_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_ratings_session_id", "rating_sessions", ["session_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_constraint("fk_ratings_session_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_ratings_session_id"))
        batch_op.drop_column("session_id")

    with op.batch_alter_table("raters", schema=None) as batch_op:
        batch_op.drop_column("self_registered")
        batch_op.drop_column("excluded")
        batch_op.drop_column("trained_at")

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("missing_since")

    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("gold_every")
        batch_op.drop_column("level_labels")

    op.drop_table("app_settings")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignments_item_id"))
    op.drop_table("assignments")
    with op.batch_alter_table("rating_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rating_sessions_rater_id"))
    op.drop_table("rating_sessions")
