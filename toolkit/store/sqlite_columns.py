"""A SQLite database's query results as Arrow columns (ADBC), without a Python object per row.

The standard ``sqlite3`` driver makes a Python object of every value it returns: for a study of
50 M votes that is most of the time of reading it. The ADBC SQLite driver fills Arrow columns in
C, which numpy takes over as they are. It runs on a connection of its own to the same file: its
reads see the committed data (not the session's uncommitted writes), all in one read transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import numpy as np
from sqlalchemy import Connection

from toolkit.errors import StoreError
from toolkit.store.engine import SQLITE_BUSY_MS, error_reason

BATCH_ROWS = 65_536
"""Rows per Arrow batch the driver fills (its default is 1,024)."""


def database_uri(connection: Connection) -> str | None:
    """A read-only URI of the session's SQLite database file; None for a database in memory (or
    a temporary one) and while the session holds writes of its own that another connection
    would not see."""
    if connection.dialect.name != "sqlite":
        return None
    if getattr(connection.connection.driver_connection, "in_transaction", True):
        return None
    files = {name: file for _, name, file in connection.exec_driver_sql("PRAGMA database_list").all()}
    main = files.get("main") or ""
    return f"file:{quote(main)}?mode=ro" if main else None


class ColumnReader:
    """Queries on one ADBC connection, in one read transaction: each result as numpy columns."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def columns(self, sql: str, params: tuple[Any, ...] = ()) -> list[np.ndarray]:
        """Each column of the result as a numpy array (an integer column with NULLs as float64 NaN;
        read-only where Arrow's memory is used as it is)."""
        try:
            self._cursor.execute(sql, params)
            table = self._cursor.fetch_arrow_table()
        except Exception as exc:  # noqa: BLE001 - the driver's errors have no common base class
            raise StoreError(f"cannot read the SQLite database through ADBC: {error_reason(exc)}") from None
        return [table.column(k).to_numpy() for k in range(table.num_columns)]

    def row(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        """The first row of the result as Python values, None when there is none."""
        try:
            self._cursor.execute(sql, params)
            row = self._cursor.fetchone()
            self._cursor.fetchall()  # the rest, so the statement is done with
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"cannot read the SQLite database through ADBC: {error_reason(exc)}") from None
        return None if row is None else tuple(row)


@contextmanager
def column_reader(uri: str) -> Iterator[ColumnReader]:
    """A :class:`ColumnReader` on ``uri``; its reads form one transaction (one state of the file)."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    try:
        connection = adbc_sqlite.connect(uri)  # autocommit off: one transaction until rollback
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"cannot open the SQLite database through ADBC: {error_reason(exc)}") from None
    try:
        cursor = connection.cursor()
        try:
            # Wait for another process's lock as the session's connections do (engine.make_engine).
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cursor.fetchall()
            # Arrow batches of this many rows: a block of votes comes as one array, not sixty-four.
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
            yield ColumnReader(cursor)
        finally:
            cursor.close()
    finally:
        try:
            connection.rollback()  # read only: ends the read transaction
        finally:
            connection.close()
