"""vote counters: items.n_votes kept by triggers on ratings; leaner rating indexes

Counting a study's votes read every rating's index entry (seconds at tens of millions of votes);
the per-item counter makes the study list and the progress page read the items instead. It is
kept by the database itself, so every path that adds or removes a vote (the app, an import, a
cascade, an administrator's SQL) keeps it right. ``ix_ratings_rater_id`` repeats the first column
of ``uq_ratings_rater_item`` and goes; ``ix_ratings_session_id`` covers only votes given in a
sitting, so imported votes (no sitting) do not pay for it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 18:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# SQLite: row triggers (one vote a statement in the app; a bulk import replaces them by one
# set-based update, see toolkit.store.vote_import).
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER tr_ratings_count_insert AFTER INSERT ON ratings "
    "BEGIN UPDATE items SET n_votes = n_votes + 1 WHERE id = NEW.item_id; END",
    "CREATE TRIGGER tr_ratings_count_delete AFTER DELETE ON ratings "
    "BEGIN UPDATE items SET n_votes = n_votes - 1 WHERE id = OLD.item_id; END",
    "CREATE TRIGGER tr_ratings_count_move AFTER UPDATE OF item_id ON ratings WHEN NEW.item_id <> OLD.item_id "
    "BEGIN UPDATE items SET n_votes = n_votes - 1 WHERE id = OLD.item_id; "
    "UPDATE items SET n_votes = n_votes + 1 WHERE id = NEW.item_id; END",
)

# PostgreSQL: statement triggers over transition tables, one grouped update a statement however
# many votes it touches (an INSERT ... SELECT of millions of votes updates each item once).
_PG_FUNCTION = """
CREATE FUNCTION ratings_count_votes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE items i SET n_votes = i.n_votes + d.n
        FROM (SELECT item_id, count(*) AS n FROM new_rows GROUP BY item_id) d WHERE i.id = d.item_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE items i SET n_votes = i.n_votes - d.n
        FROM (SELECT item_id, count(*) AS n FROM old_rows GROUP BY item_id) d WHERE i.id = d.item_id;
    ELSE  -- UPDATE: only votes moved to another item change a count
        UPDATE items i SET n_votes = i.n_votes + d.n
        FROM (SELECT item_id, sum(n) AS n FROM (
                SELECT item_id, 1 AS n FROM new_rows UNION ALL SELECT item_id, -1 FROM old_rows
              ) moved GROUP BY item_id HAVING sum(n) <> 0) d
        WHERE i.id = d.item_id;
    END IF;
    RETURN NULL;
END $$
"""
_PG_TRIGGERS = (
    "CREATE TRIGGER tr_ratings_count_insert AFTER INSERT ON ratings "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ratings_count_votes()",
    "CREATE TRIGGER tr_ratings_count_delete AFTER DELETE ON ratings "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ratings_count_votes()",
    "CREATE TRIGGER tr_ratings_count_move AFTER UPDATE ON ratings "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ratings_count_votes()",
)
_TRIGGER_NAMES = ("tr_ratings_count_insert", "tr_ratings_count_delete", "tr_ratings_count_move")


def upgrade() -> None:
    # Plain ADD COLUMN, never a rebuilt items table: on SQLite dropping the old table would cascade
    # to every rating of the database.
    op.add_column("items", sa.Column("n_votes", sa.Integer(), server_default="0", nullable=False))
    op.execute("UPDATE items SET n_votes = (SELECT count(*) FROM ratings WHERE ratings.item_id = items.id)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)

    op.drop_index("ix_ratings_rater_id", table_name="ratings")
    op.drop_index("ix_ratings_session_id", table_name="ratings")
    op.create_index(
        "ix_ratings_session_id",
        "ratings",
        ["session_id"],
        sqlite_where=sa.text("session_id IS NOT NULL"),
        postgresql_where=sa.text("session_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_ratings_session_id", table_name="ratings")
    op.create_index("ix_ratings_session_id", "ratings", ["session_id"])
    op.create_index("ix_ratings_rater_id", "ratings", ["rater_id"])
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in _TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER {name} ON ratings" if postgresql else f"DROP TRIGGER {name}")
    if postgresql:
        op.execute("DROP FUNCTION ratings_count_votes()")
    op.drop_column("items", "n_votes")
