"""level counters: items.n_level_1 .. n_level_5, the item's votes at each level, kept by the triggers

The plain MOS of an item, its SD, interval and level are functions of its vote histogram. With
the histogram stored on the item, the admin's Results page and the study list's labels read the
items (a quarter of a million rows at AVA size) instead of every vote (tens of millions). The
triggers of revision 0005 are replaced by ones that keep ``n_votes`` and the five histogram
columns in the same statement; a vote whose level or item is changed by SQL moves between them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 21:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LEVELS = (1, 2, 3, 4, 5)
_COLUMNS = tuple(f"n_level_{k}" for k in LEVELS)
_TRIGGER_NAMES = ("tr_ratings_count_insert", "tr_ratings_count_delete", "tr_ratings_count_move")


def _sqlite_step(row: str, sign: str) -> str:
    """SQLite: the UPDATE that adds (``sign`` '+') or takes away ('-') the vote ``row`` (NEW/OLD)."""
    levels = ", ".join(f"{c} = {c} {sign} ({row}.level = {k})" for c, k in zip(_COLUMNS, LEVELS))
    return f"UPDATE items SET n_votes = n_votes {sign} 1, {levels} WHERE id = {row}.item_id;"


_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER tr_ratings_count_insert AFTER INSERT ON ratings BEGIN {_sqlite_step('NEW', '+')} END",
    f"CREATE TRIGGER tr_ratings_count_delete AFTER DELETE ON ratings BEGIN {_sqlite_step('OLD', '-')} END",
    "CREATE TRIGGER tr_ratings_count_move AFTER UPDATE OF item_id, level ON ratings "
    "WHEN NEW.item_id IS NOT OLD.item_id OR NEW.level IS NOT OLD.level "
    f"BEGIN {_sqlite_step('OLD', '-')} {_sqlite_step('NEW', '+')} END",
)


def _pg_grouped(rows: str, sign: str) -> str:
    """PostgreSQL: the votes of transition table ``rows`` per item: count and count per level, times ``sign``."""
    per_level = ", ".join(f"{sign} count(*) FILTER (WHERE level = {k}) AS {c}" for c, k in zip(_COLUMNS, LEVELS))
    return f"SELECT item_id, {sign} count(*) AS n, {per_level} FROM {rows} GROUP BY item_id"


_PG_SET = "n_votes = i.n_votes + d.n, " + ", ".join(f"{c} = i.{c} + d.{c}" for c in _COLUMNS)
_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION ratings_count_votes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE items i SET {_PG_SET} FROM ({_pg_grouped("new_rows", "")}) d WHERE i.id = d.item_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE items i SET {_PG_SET} FROM ({_pg_grouped("old_rows", "-")}) d WHERE i.id = d.item_id;
    ELSE  -- UPDATE: the old votes out, the new ones in; items whose figures do not change are left alone
        UPDATE items i SET {_PG_SET}
        FROM (SELECT item_id, sum(n) AS n, {", ".join(f"sum({c}) AS {c}" for c in _COLUMNS)} FROM (
                {_pg_grouped("new_rows", "")} UNION ALL {_pg_grouped("old_rows", "-")}
              ) moved GROUP BY item_id HAVING {" OR ".join(f"sum({c}) <> 0" for c in _COLUMNS)}) d
        WHERE i.id = d.item_id;
    END IF;
    RETURN NULL;
END $$
"""

# Revision 0005's function: the downgrade puts it back.
_PG_FUNCTION_0005 = """
CREATE OR REPLACE FUNCTION ratings_count_votes() RETURNS trigger LANGUAGE plpgsql AS $$
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
_SQLITE_TRIGGERS_0005 = (
    "CREATE TRIGGER tr_ratings_count_insert AFTER INSERT ON ratings "
    "BEGIN UPDATE items SET n_votes = n_votes + 1 WHERE id = NEW.item_id; END",
    "CREATE TRIGGER tr_ratings_count_delete AFTER DELETE ON ratings "
    "BEGIN UPDATE items SET n_votes = n_votes - 1 WHERE id = OLD.item_id; END",
    "CREATE TRIGGER tr_ratings_count_move AFTER UPDATE OF item_id ON ratings WHEN NEW.item_id <> OLD.item_id "
    "BEGIN UPDATE items SET n_votes = n_votes - 1 WHERE id = OLD.item_id; "
    "UPDATE items SET n_votes = n_votes + 1 WHERE id = NEW.item_id; END",
)


def _backfill() -> None:
    """The histograms of the stored votes: one grouped pass over the votes, one update per item."""
    per_level = ", ".join(f"sum(CASE WHEN level = {k} THEN 1 ELSE 0 END) AS {c}" for c, k in zip(_COLUMNS, LEVELS))
    op.execute(f"CREATE TEMPORARY TABLE level_counts AS SELECT item_id, {per_level} FROM ratings GROUP BY item_id")
    assignments = ", ".join(f"{c} = level_counts.{c}" for c in _COLUMNS)
    op.execute(f"UPDATE items SET {assignments} FROM level_counts WHERE items.id = level_counts.item_id")
    op.execute("DROP TABLE level_counts")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    # Plain ADD COLUMN, never a rebuilt items table (on SQLite that would cascade to the votes).
    for column in _COLUMNS:
        op.add_column("items", sa.Column(column, sa.Integer(), server_default="0", nullable=False))
    _backfill()
    if postgresql:
        op.execute(_PG_FUNCTION)  # the triggers of 0005 call it: replaced in place
    else:
        for name in _TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION_0005)
    else:
        for name in _TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
        for statement in _SQLITE_TRIGGERS_0005:
            op.execute(statement)
    for column in reversed(_COLUMNS):
        op.drop_column("items", column)
