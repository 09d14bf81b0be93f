"""Each item's valid votes per level, read from the items, not from the votes.

The items carry their vote histogram (``n_level_1`` .. ``n_level_5``, revision 0006, kept by the
database's triggers), so the plain-MOS labels of a study of tens of millions of votes cost a read
of its items. Valid votes leave out the raters the administrator excluded (as
:func:`toolkit.store.read_snapshot` does): their votes are taken off the counters, found through
the (rater, item) index; excluded raters are few.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from toolkit.qalign import COUNT_COLUMNS, LEVEL_VALUES
from toolkit.store.schema import Rater, Rating, Study
from toolkit.store.sqlite_columns import column_reader, database_uri
from toolkit.store.vote_arrays import placeholder

HISTOGRAM_ITEM_COLUMNS: tuple[str, ...] = ("item_id", "item", "kind", "role", "content_group", "sha256")
"""The item columns of :attr:`ItemHistograms.items`, before ``COUNT_COLUMNS``."""


@dataclass(frozen=True)
class ItemHistograms:
    """Every item of a study in study order with its valid votes per level (``COUNT_COLUMNS``)."""

    items: pd.DataFrame  # HISTOGRAM_ITEM_COLUMNS + COUNT_COLUMNS, one row per item
    excluded_raters: int  # raters the administrator screened out
    excluded_votes: int  # their votes, not counted in ``items``


def _items(session: Session, study: Study) -> pd.DataFrame:
    """``HISTOGRAM_ITEM_COLUMNS`` and the stored ``COUNT_COLUMNS`` of the study's items, in study order."""
    connection = session.connection()
    # COUNT_COLUMNS run excellent (level 5) first.
    stored = ", ".join(f"n_level_{level}" for level in LEVEL_VALUES)
    sql = "SELECT id, path, kind, role, content_group, sha256, {} FROM items WHERE study_id = {} ORDER BY id"
    uri = database_uri(connection)
    if uri is not None:  # a SQLite file: Arrow columns, no Python row per item (half the time)
        with column_reader(uri) as reader:
            columns: list[Any] = reader.columns(sql.format(stored, "?"), (study.id,))
    elif connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        # The server's CSV, parsed by pandas' C reader: no Python row per item (half the time).
        return _items_by_copy(connection, sql.format(stored, "%s"), study.id)
    else:  # straight from the driver: SQLAlchemy's rows would cost three times the query
        cursor = connection.connection.cursor()
        try:
            cursor.execute(sql.format(stored, placeholder(connection)), (study.id,))
            rows = cursor.fetchall()
        finally:
            cursor.close()
        width = len(HISTOGRAM_ITEM_COLUMNS) + len(COUNT_COLUMNS)
        columns = list(zip(*rows)) if rows else [() for _ in range(width)]
    # Column by column, the texts as plain objects: no per-value type inference or conversion.
    data: dict[str, object] = {"item_id": np.asarray(columns[0], dtype=np.int64)}
    for name, values in zip(HISTOGRAM_ITEM_COLUMNS[1:], columns[1:]):
        data[name] = pd.Series(np.asarray(values, dtype=object), dtype=object)
    for name, values in zip(COUNT_COLUMNS, columns[len(HISTOGRAM_ITEM_COLUMNS) :]):
        data[name] = np.array(values, dtype=np.int64)  # a copy: Arrow's memory is read-only
    return pd.DataFrame(data, copy=False)


_TEXT_COLUMNS = HISTOGRAM_ITEM_COLUMNS[1:]


def _items_by_copy(connection: Connection, sql: str, study_id: int) -> pd.DataFrame:
    """The rows of ``sql`` as :func:`_items` gives them, through ``COPY ... TO STDOUT (FORMAT csv)``."""
    driver: Any = connection.connection.driver_connection
    data = io.BytesIO()
    with driver.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", (study_id,)) as copy:
        for block in copy:
            data.write(block)
    data.seek(0)
    names = [*HISTOGRAM_ITEM_COLUMNS, *COUNT_COLUMNS]
    if not data.getbuffer().nbytes:  # no items: read_csv would find no columns at all
        return pd.DataFrame({n: pd.Series(dtype=object if n in _TEXT_COLUMNS else np.int64) for n in names})
    # Every value as written (an item called "NA" stays "NA"); the texts as plain objects.
    types = {n: (object if n in _TEXT_COLUMNS else np.int64) for n in names}
    return pd.read_csv(data, header=None, names=names, dtype=types, na_filter=False, engine="c")


def item_histograms(session: Session, study: Study) -> ItemHistograms:
    """:class:`ItemHistograms` of ``study``: one read of its items (straight from the driver: no
    ORM row per item) and one of the excluded raters' votes per item and level."""
    items = _items(session, study)
    excluded = select(Rater.id).where(Rater.study_id == study.id, Rater.excluded.is_(True))
    n_excluded = int(session.scalar(select(func.count()).select_from(excluded.subquery())) or 0)
    taken = 0
    if n_excluded:
        off = session.execute(
            select(Rating.item_id, Rating.level, func.count())
            .where(Rating.rater_id.in_(excluded))
            .group_by(Rating.item_id, Rating.level)
        ).all()
        if off:
            item_id, level, count = (np.asarray(column, dtype=np.int64) for column in zip(*off))
            row = pd.Index(items["item_id"]).get_indexer(item_id)
            counts = items[list(COUNT_COLUMNS)].to_numpy(dtype=np.int64)
            np.subtract.at(counts, (row, 5 - level), count)  # column 0 is level 5
            items[list(COUNT_COLUMNS)] = counts
            taken = int(count.sum())
    return ItemHistograms(items, n_excluded, taken)
