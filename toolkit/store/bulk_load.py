"""Inserting millions of votes at once: what a bulk import sets aside while it inserts, and puts back.

A vote inserted on its own pays for every index of ``ratings``, its foreign-key checks and the
trigger that counts it on its item (``items.n_votes`` and the per-level counters, revisions
0005 and 0006). For an import of tens of
millions of votes that per-row work is most of the time (PostgreSQL: the foreign-key triggers
alone are three quarters of it). So, inside the import's own transaction:

- both back-ends: the counting trigger is set aside and the items' counters are raised by one
  grouped update of the votes actually inserted;
- SQLite, when the new votes are a large share of the table: the plain (non-unique) indexes of
  ``ratings`` are dropped and built again afterwards, from their own stored definitions; building
  an index from sorted rows is several times cheaper than growing it row by row. The unique
  (rater, item) constraint stays (SQLite cannot drop a table's constraint);
- PostgreSQL: the foreign keys of ``ratings`` are dropped and added back, then validated in one
  set-based pass (a join per key instead of a trigger per row); when the new votes are a large
  share of the table, its unique (rater, item) constraint and plain indexes are dropped and built
  again too (the unique one checks every vote as it is built). This takes the ratings table for
  the import's transaction: the annotation app waits until the import commits. Where the user
  may not alter the table (not its owner), the import runs the per-row way.

Everything is put back before the transaction commits, and a failure rolls back the set-aside
along with the votes: the schema is the same afterwards, whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

_INSERT_TRIGGER = "tr_ratings_count_insert"
"""Of the triggers that keep the items' vote counters (revisions 0005, 0006), the one an import fires."""

BULK_IMPORT_ROWS = 200_000
"""New votes from which an import sets the per-row work aside (below it, plain inserts are quicker)."""


LEVEL_COLUMNS: tuple[str, ...] = ("n_level_1", "n_level_2", "n_level_3", "n_level_4", "n_level_5")
"""The items' per-level vote counters (revision 0006), level 1 first."""


def add_item_counts(connection: Connection, ids: np.ndarray, level_counts: np.ndarray) -> None:
    """Raise the counters of item ``ids[k]`` by its new votes ``level_counts[k]`` (one column per
    level, level 1 first): ``n_votes`` by their sum, ``n_level_j`` by column j."""
    if not ids.size:
        return
    levels = ", ".join(f"{c} = {c} + :{c}" for c in LEVEL_COLUMNS)
    rows = [
        {"id": i, "n": sum(per_level), **dict(zip(LEVEL_COLUMNS, per_level))}
        for i, per_level in zip(ids.tolist(), level_counts.tolist())
    ]
    connection.execute(text(f"UPDATE items SET n_votes = n_votes + :n, {levels} WHERE id = :id"), rows)


def count_by_item_and_level(item_ids: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``item_ids`` and, for each, how many of ``levels`` (1-5) it has at each level: an
    (items, 5) array, level 1 first, for :func:`add_item_counts`."""
    ids, inverse = np.unique(item_ids, return_inverse=True)
    width = len(LEVEL_COLUMNS)
    cell = inverse.astype(np.int64) * width + levels.astype(np.int64) - 1
    return ids, np.bincount(cell, minlength=ids.size * width).reshape(ids.size, width)


def merge_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(ids, counts)`` of :func:`count_by_item_and_level` parts added up per item."""
    ids, inverse = np.unique(np.concatenate([ids for ids, _ in parts]), return_inverse=True)
    stacked = np.concatenate([counts for _, counts in parts])
    merged = np.stack(
        [np.bincount(inverse, weights=stacked[:, j], minlength=ids.size) for j in range(stacked.shape[1])], axis=1
    )
    return ids, merged.astype(np.int64)


def pg_grouped_counts(source: str) -> str:
    """PostgreSQL: ``UPDATE items`` raising each item's counters by the votes of table ``source``
    (item_id, level), one grouped pass."""
    per_level = ", ".join(f"count(*) FILTER (WHERE level = {k + 1}) AS {c}" for k, c in enumerate(LEVEL_COLUMNS))
    levels = ", ".join(f"{c} = i.{c} + d.{c}" for c in LEVEL_COLUMNS)
    return (
        f"UPDATE items i SET n_votes = i.n_votes + d.n, {levels} "
        f"FROM (SELECT item_id, count(*) AS n, {per_level} FROM {source} GROUP BY item_id) d WHERE i.id = d.item_id"
    )


def _sqlite_objects(connection: Connection, plain_indexes: bool) -> list[tuple[str, str, str]]:
    """(type, name, sql) of the count trigger and, with ``plain_indexes``, the non-unique indexes of ratings."""
    rows = connection.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'ratings' AND sql IS NOT NULL "
        "AND type IN ('trigger', 'index') ORDER BY type, name"
    ).all()
    keep = []
    for type_, name, sql in rows:
        if type_ == "trigger" and name == _INSERT_TRIGGER:
            keep.append((type_, name, sql))
        elif type_ == "index" and plain_indexes and sql.lstrip().upper().startswith("CREATE INDEX"):
            keep.append((type_, name, sql))
    return keep


@contextmanager
def sqlite_bulk_insert(connection: Connection, new_rows: int, bulk_rows: int = BULK_IMPORT_ROWS) -> Iterator[bool]:
    """For ``new_rows`` of at least ``bulk_rows``: inside, the insert trigger is off (yields True:
    the caller raises the counters with :func:`add_item_counts`) and, when the new votes are at
    least half as many as the stored ones, the plain indexes are gone. Else yields False."""
    if new_rows < bulk_rows or not _has_count_trigger(connection):  # before revision 0005: nothing to set aside
        yield False
        return
    plain_indexes = new_rows >= stored_votes(connection) // 2
    saved = _sqlite_objects(connection, plain_indexes)
    for type_, name, _ in saved:
        connection.exec_driver_sql(f'DROP {type_.upper()} "{name}"')
    yield True
    # Indexes first, then the trigger: rebuilding an index fires no trigger.
    for _, _, sql in sorted(saved, key=lambda row: row[0] != "index"):
        connection.exec_driver_sql(sql)


def _has_count_trigger(connection: Connection) -> bool:
    if connection.dialect.name == "postgresql":
        query = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ratings'::regclass AND tgname = :name"
    else:
        query = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = :name"
    return bool(connection.execute(text(query), {"name": _INSERT_TRIGGER}).scalar_one())


def _postgresql_set_aside(connection: Connection, rebuild: bool) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Drop what :func:`postgresql_bulk_insert` sets aside; returns the statements that put it back:
    (unique constraints, plain indexes, foreign keys as (name, definition))."""
    connection.exec_driver_sql(f"ALTER TABLE ratings DISABLE TRIGGER {_INSERT_TRIGGER}")
    constraints = connection.exec_driver_sql(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'ratings'::regclass AND contype IN ('f', 'u') ORDER BY contype, conname"
    ).all()
    foreign = [(name, definition) for name, kind, definition in constraints if kind == "f"]
    unique = [
        f'ALTER TABLE ratings ADD CONSTRAINT "{name}" {definition}'
        for name, kind, definition in constraints
        if kind == "u"
    ]
    plain = []
    for name, _ in foreign:
        connection.exec_driver_sql(f'ALTER TABLE ratings DROP CONSTRAINT "{name}"')
    if rebuild:
        # The indexes no constraint owns (the primary key's and the unique constraint's are owned).
        plain = list(
            connection.exec_driver_sql(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
                "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname "
                "WHERE i.tablename = 'ratings' AND i.schemaname = current_schema() "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid) ORDER BY i.indexname"
            ).all()
        )
        for name, kind, _ in constraints:
            if kind == "u":
                connection.exec_driver_sql(f'ALTER TABLE ratings DROP CONSTRAINT "{name}"')
        for name, _ in plain:
            connection.exec_driver_sql(f'DROP INDEX "{name}"')
    return (unique if rebuild else []), [definition for _, definition in plain], foreign


@contextmanager
def postgresql_bulk_insert(connection: Connection, rebuild: bool) -> Iterator[bool]:
    """Inside: the insert trigger is off, the foreign keys of ratings are gone and, with ``rebuild``,
    its unique constraint and plain indexes too (built again from sorted rows afterwards; the
    unique one is still checked then, so a vote can never be stored twice). Yields True, or False
    (nothing set aside) where the user may not alter the table or the schema predates 0005."""
    if not _has_count_trigger(connection):
        yield False
        return
    savepoint = connection.begin_nested()
    try:
        unique, plain, foreign = _postgresql_set_aside(connection, rebuild)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege: the per-row way
            raise
        savepoint.rollback()
        yield False
        return
    savepoint.commit()
    yield True
    if unique or plain:
        connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    for statement in [*unique, *plain]:
        connection.exec_driver_sql(statement)
    for name, definition in foreign:
        connection.exec_driver_sql(f'ALTER TABLE ratings ADD CONSTRAINT "{name}" {definition} NOT VALID')
    for name, _ in foreign:
        connection.exec_driver_sql(f'ALTER TABLE ratings VALIDATE CONSTRAINT "{name}"')
    connection.exec_driver_sql(f"ALTER TABLE ratings ENABLE TRIGGER {_INSERT_TRIGGER}")
    # Fresh statistics: planned with those of the table before the import, the next queries (the
    # study list's excluded-rater count, say) would scan millions of votes to find a few.
    connection.exec_driver_sql("ANALYZE ratings")


def stored_votes(connection: Connection) -> int:
    """Votes in the whole ratings table, from the items' counters (cheap at any size)."""
    return int(connection.exec_driver_sql("SELECT coalesce(sum(n_votes), 0) FROM items").scalar_one())
