"""Decoding many pgoutput change messages at once, a column at a time, with numpy.

Streaming at the speed of the server leaves a few microseconds of Python per change, about
what it takes to receive a message. So the reading loop only keeps the messages of
inserts, updates and deletes, and this module decodes a whole batch of them together:
their messages are joined into one buffer, and each step of the format (a column's kind
byte, its length, the next column's position) is one numpy operation over every message
of a table. A column's values become an Arrow binary array without a Python object per
value.

The layout decoded (pgoutput protocol 1; offsets from the start of each CopyData message,
which begins with XLogData's 25-byte header ``w``, start LSN, WAL end, clock)::

    25  I | U | D
    26  relation oid (int32)
    30  I: 'N' TupleData
        U: ['K' | 'O' TupleData] 'N' TupleData
        D: 'K' | 'O' TupleData
    TupleData: int16 n, then n times: 'n' | 'u' | 't' int32 length bytes
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.connectors._bytes import byte_ranges

__all__ = [
    "Image",
    "ParsedChanges",
    "TupleError",
    "be_uint",
    "binary_array",
    "changed_keys",
    "parse_changes",
]

_T, _N, _U = ord("t"), ord("n"), ord("u")
_INSERT, _UPDATE, _DELETE = ord("I"), ord("U"), ord("D")
_OLD = (ord("K"), ord("O"))
_NEW = ord("N")


class TupleError(ValueError):
    """The messages do not hold what the format says (the caller names the LSN)."""


def be_uint(buf: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
    """Big-endian unsigned integers of ``width`` bytes at ``positions``."""
    if not len(positions):
        return np.zeros(0, dtype=np.uint64)
    if positions.max() + width > len(buf) or positions.min() < 0:
        raise TupleError("a field runs past the end of a message")
    raw = buf[positions[:, None] + np.arange(width)]
    kind = {2: ">u2", 4: ">u4", 8: ">u8"}[width]
    return raw.view(kind).ravel().astype(np.int64 if width < 8 else np.uint64)


def binary_array(
    buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, valid: np.ndarray
) -> pa.Array:
    """The values of one column (see :func:`~trunkline.connectors._bytes.byte_ranges`)."""
    try:
        return byte_ranges(buf, starts, lengths, valid)
    except ValueError as exc:
        raise TupleError(str(exc)) from None


@dataclass
class Image:
    """One image (before or after) of a set of changes: per column, the values (null for
    SQL NULL, for an unchanged TOASTed value, and where the change has no such image) and
    which values are unchanged TOASTed ones (None when there are none)."""

    present: np.ndarray
    values: list[pa.Array]
    unchanged: list[np.ndarray | None]

    def take(self, rows: np.ndarray) -> Image:
        index = pa.array(rows)
        return Image(
            self.present[rows],
            [v.take(index) for v in self.values],
            [None if u is None else u[rows] for u in self.unchanged],
        )


def _tuples(
    buf: np.ndarray, pos: np.ndarray, width: int
) -> tuple[list[pa.Array], list[np.ndarray | None], np.ndarray]:
    """TupleData at each position: per column values and unchanged flags; the end."""
    counts = be_uint(buf, pos, 2)
    if len(counts) and (counts != width).any():
        found = int(counts[counts != width][0])
        raise TupleError(f"a row has {found} columns where the relation has {width}")
    p = pos + 2
    values, unchanged = [], []
    for _ in range(width):
        if len(p) and p.max() >= len(buf):
            raise TupleError("a column runs past the end of a message")
        kind = buf[p]
        text = kind == _T
        if not (text | (kind == _N) | (kind == _U)).all():
            bad = int(kind[~(text | (kind == _N) | (kind == _U))][0])
            raise TupleError(f"unexpected column kind {chr(bad)!r}")
        lengths = np.zeros(len(p), dtype=np.int64)
        if text.any():
            lengths[text] = be_uint(buf, p[text] + 1, 4)
        values.append(binary_array(buf, p + 5, lengths, text))
        toast = kind == _U
        unchanged.append(toast if toast.any() else None)
        p = p + 1 + np.where(text, 4 + lengths, 0)
    return values, unchanged, p


def _image(
    buf: np.ndarray, rows: np.ndarray, pos: np.ndarray, width: int, n: int
) -> tuple[Image, np.ndarray]:
    """An image present at ``rows`` (of ``n``), read from the tuples at ``pos``."""
    values, unchanged, end = _tuples(buf, pos, width)
    present = np.zeros(n, dtype=bool)
    present[rows] = True
    if len(rows) == n:
        return Image(present, values, unchanged), end
    # Spread the values of the rows that have this image over all n rows.
    spread = np.full(n, -1, dtype=np.int64)
    spread[rows] = np.arange(len(rows))
    index = pa.array(spread, mask=spread < 0)
    full_unchanged: list[np.ndarray | None] = []
    for u in unchanged:
        if u is None:
            full_unchanged.append(None)
        else:
            f = np.zeros(n, dtype=bool)
            f[rows] = u
            full_unchanged.append(f)
    return Image(present, [v.take(index) for v in values], full_unchanged), end


@dataclass
class ParsedChanges:
    """Changes of one table: ``op`` per change (``c``, ``u``, ``d``), the old image
    (``old_kind`` ``K``: key columns only, ``O``: the whole row, 0: none) and the new one."""

    op: np.ndarray
    old_kind: np.ndarray
    old: Image
    new: Image


def parse_changes(buf: np.ndarray, starts: np.ndarray, width: int) -> ParsedChanges:
    """Decode the change messages that begin at ``starts`` in ``buf`` (all of one table
    with ``width`` columns)."""
    n = len(starts)
    tag = buf[starts + 25]
    if not np.isin(tag, [_INSERT, _UPDATE, _DELETE]).all():
        raise TupleError("a message that is not an insert, update or delete")
    marker = buf[starts + 30]
    has_old = (tag == _DELETE) | ((tag == _UPDATE) & np.isin(marker, _OLD))
    if ((tag == _DELETE) & ~np.isin(marker, _OLD)).any():
        raise TupleError("a delete without 'K' or 'O'")
    old_rows = np.flatnonzero(has_old)
    old, old_end = _image(buf, old_rows, starts[old_rows] + 31, width, n)
    new_rows = np.flatnonzero(tag != _DELETE)
    new_pos = starts[new_rows] + 31
    # An update with an old image has its 'N' right after that image.
    after_old = np.full(n, -1, dtype=np.int64)
    after_old[old_rows] = old_end
    follow = after_old[new_rows]
    with_old = follow >= 0
    if with_old.any():
        if (follow[with_old] >= len(buf)).any() or (buf[follow[with_old]] != _NEW).any():
            raise TupleError("an update whose old row is not followed by 'N'")
        new_pos[with_old] = follow[with_old] + 1
    plain = ~with_old
    if plain.any() and (buf[new_pos[plain] - 1] != _NEW).any():
        raise TupleError("an insert or update without 'N'")
    new, _ = _image(buf, new_rows, new_pos, width, n)
    op = np.where(tag == _INSERT, "c", np.where(tag == _UPDATE, "u", "d"))
    old_kind = np.where(has_old, marker, 0).astype(np.uint8)
    return ParsedChanges(op, old_kind, old, new)


def changed_keys(
    op: np.ndarray, old: Image, new: Image, key_positions: Sequence[int]
) -> np.ndarray:
    """Updates whose old image is there and whose key differs from the new one's."""
    mask = (op == "u") & old.present
    if not mask.any() or not key_positions:
        return np.zeros(len(op), dtype=bool)
    differs = np.zeros(len(op), dtype=bool)
    for i in key_positions:
        same = pc.fill_null(pc.equal(old.values[i], new.values[i]), True)
        differs |= ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(mask & differs, dtype=bool)
