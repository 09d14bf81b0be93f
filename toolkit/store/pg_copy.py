"""PostgreSQL's binary COPY stream read into numpy arrays, with every part of it checked.

A vote read sends one row per block of rating ids, each field a whole array (``int8[]`` packed votes,
``float8[]`` times) or a single ``float8``: a few hundred rows for 50 M votes, so the Python work
is per block and the values go from the wire into numpy without a Python object per vote. The
format (PostgreSQL documentation, "COPY", binary format): a 19-byte header, then per row an
``int16`` field count and per field an ``int32`` length (-1: NULL) and that many bytes, then the
``int16`` -1 trailer; an array field is ``int32`` dimensions, flags and element type, per dimension
``int32`` size and lower bound, then per element an ``int32`` length and the value, big-endian.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from toolkit.errors import StoreError

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = len(SIGNATURE) + 8  # signature, flags, header extension length
_INT8_OID = 20
_FLOAT8_OID = 701
ELEMENT_OIDS = {np.dtype(">i8"): _INT8_OID, np.dtype(">f8"): _FLOAT8_OID}


def _fail(what: str) -> StoreError:
    return StoreError(f"unexpected PostgreSQL COPY stream: {what}")


def copy_rows(chunks: Iterable[Any], n_fields: int) -> Iterator[list[bytes | None]]:
    """The rows of a binary COPY stream (``chunks``: its bytes, cut anywhere), each a list of
    ``n_fields`` fields (the field's bytes, None for NULL). A wrong header, field count or length,
    a missing trailer or bytes after it raise StoreError naming what is wrong."""
    buffer = bytearray()
    position = 0  # of the next unread byte in buffer
    header_read = ended = False
    for chunk in chunks:
        if ended and len(chunk):
            raise _fail("data after the end marker")
        buffer += chunk
        if not header_read:
            if len(buffer) < _HEADER:
                continue
            if bytes(buffer[: len(SIGNATURE)]) != SIGNATURE:
                raise _fail("no PGCOPY signature (not binary COPY output)")
            flags = int.from_bytes(buffer[11:15], "big", signed=True)
            if flags & (1 << 16):
                raise _fail("rows carry OIDs")
            extension = int.from_bytes(buffer[15:19], "big", signed=True)
            if extension < 0:
                raise _fail(f"header extension length {extension}")
            if len(buffer) < _HEADER + extension:
                continue
            position = _HEADER + extension
            header_read = True
        while not ended:
            row, after = _row(buffer, position, n_fields)
            if after < 0:  # the row is not all here yet
                break
            position = after
            if row is None:
                ended = True
                if position != len(buffer):
                    raise _fail("data after the end marker")
            else:
                yield row
        # Drop what was read, so the buffer holds at most one row's bytes between chunks.
        del buffer[:position]
        position = 0
    if not ended:
        raise _fail("it ends before its end marker" if header_read or buffer else "it is empty")


def _row(buffer: bytearray, position: int, n_fields: int) -> tuple[list[bytes | None] | None, int]:
    """The row at ``position`` and where the next one starts; (None, after) for the end marker,
    (None, -1) while the row's bytes have not all come."""
    if len(buffer) - position < 2:
        return None, -1
    count = int.from_bytes(buffer[position : position + 2], "big", signed=True)
    position += 2
    if count == -1:
        return None, position
    if count != n_fields:
        raise _fail(f"a row of {count} fields where {n_fields} were asked for")
    fields: list[bytes | None] = []
    with memoryview(buffer) as view:  # released before the buffer is cut down
        for _ in range(count):
            if len(buffer) - position < 4:
                return None, -1
            length = int.from_bytes(view[position : position + 4], "big", signed=True)
            position += 4
            if length < -1:
                raise _fail(f"field length {length}")
            if length == -1:
                fields.append(None)
                continue
            if len(buffer) - position < length:
                return None, -1
            # A copy of the field: the buffer is cut down (and so may move) once the row is read.
            fields.append(bytes(view[position : position + length]))
            position += length
    return fields, position


def array_values(field: bytes | None, dtype: str) -> np.ndarray:
    """A one-dimensional array field without NULLs (``dtype``: ``">i8"`` for int8[], ``">f8"`` for
    float8[]) as a native-endian numpy array; an empty array gives an empty one."""
    element = np.dtype(dtype)
    if field is None:
        raise _fail("a NULL where an array was expected")
    if len(field) < 12:
        raise _fail(f"an array field of {len(field)} bytes")
    dims, flags, oid = np.frombuffer(field, dtype=">i4", count=3).tolist()
    if dims == 0:
        if len(field) != 12:
            raise _fail("an empty array with elements")
        return np.empty(0, dtype=element.newbyteorder("="))
    if dims != 1 or flags != 0 or oid != ELEMENT_OIDS[element]:
        raise _fail(
            f"an array of {dims} dimension(s), flags {flags}, element type {oid} (want 1, 0, {ELEMENT_OIDS[element]})"
        )
    if len(field) < 20:
        raise _fail(f"an array field of {len(field)} bytes")
    size = int(np.frombuffer(field, dtype=">i4", count=1, offset=12)[0])
    if size < 0 or len(field) != 20 + size * (4 + element.itemsize):
        raise _fail(f"an array of {size} elements in {len(field)} bytes")
    cells = np.frombuffer(field, dtype=np.dtype([("length", ">i4"), ("value", element)]), offset=20)
    if (cells["length"] != element.itemsize).any():
        raise _fail("an array element that is NULL or not 8 bytes")
    return cells["value"].astype(element.newbyteorder("="))


def scalar_value(field: bytes | None) -> float:
    """A ``float8`` field as a float."""
    if field is None or len(field) != 8:
        raise _fail("a float8 field that is NULL or not 8 bytes")
    return float(np.frombuffer(field, dtype=">f8")[0])
