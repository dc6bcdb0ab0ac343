"""JSON record values, both ways, a whole Arrow batch at a time.

Encoding (sources): :class:`JsonEncoder` turns an Arrow table into a table of records whose
``value`` is each row as a JSON object, using DuckDB's ``to_json`` (one vectorised query,
as in ``trunkline.demo._data``). NaN and infinities, which JSON cannot spell, become null.

Decoding (sinks): :func:`decode_json` turns a column of JSON values back into an Arrow table.
The fast path joins the values with newlines (one ``binary_join`` over a list view of the
column, no copy per row) and parses them with ``pyarrow.json`` on all cores, in blocks of
the size :func:`trunkline._json_blocks.block_size` picks for the batch. Only when that
fails, or yields a different number of rows, does it bisect the batch to find the values
that do not parse, so one bad record costs two parses of the batch, not one per row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from trunkline._json_blocks import block_size
from trunkline.connectors._sql import quote_identifier, quote_literal
from trunkline.contracts._codec import HEADER_BYTES as WIRE_PREFIX
from trunkline.contracts._codec import MAGIC as WIRE_MAGIC

__all__ = ["Decoded", "JsonEncoder", "concat_tables", "decode_json", "promote_timestamps"]

#: Below this many values a failing range is parsed value by value.
_SMALL = 16
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(?P<zone>Z|[+-]\d{2}(:?\d{2})?)?$"
)


class JsonEncoder:
    """Encodes Arrow tables as JSON record values; one per thread (it owns a DuckDB connection).

    Args:
        key: Columns whose values become the record key: one column's text, or a JSON object
            of several columns.
        timestamp: A timestamp (or integer milliseconds) column to stamp records with.

    Example:
        >>> encoder = JsonEncoder(key=("id",))
        >>> out = encoder.encode(pa.table({"id": [7], "name": ["Ada"]}))
        >>> out.column("key")[0].as_py(), out.column("value")[0].as_py()
        (b'7', b'{"id":7,"name":"Ada"}')
    """

    def __init__(self, *, key: Sequence[str] = (), timestamp: str | None = None) -> None:
        self.key = tuple(key)
        self.timestamp = timestamp
        self._con = duckdb.connect()

    def close(self) -> None:
        self._con.close()

    def encode(self, rows: pa.Table) -> pa.Table:
        """A table of ``value`` (and ``key``, ``timestamp`` when configured), one per row."""
        rows = _finite(rows)
        names = set(rows.column_names)
        select = ["to_json(r) AS value"]

        def column(name: str) -> str:
            # A row without the column (JSON lines may leave fields out) gets a null key.
            return f"r.{quote_identifier(name)}" if name in names else "NULL"

        if len(self.key) == 1:
            select.append(f"CAST({column(self.key[0])} AS VARCHAR) AS key")
        elif self.key:
            fields = ", ".join(f"{quote_literal(k)}: {column(k)}" for k in self.key)
            select.append(f"to_json({{{fields}}}) AS key")
        stamped = self.timestamp is not None and self.timestamp in names
        if stamped:
            assert self.timestamp is not None
            kind = rows.schema.field(self.timestamp).type
            stamp = f"r.{quote_identifier(self.timestamp)}"
            if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
                stamp = f"epoch_ms(CAST({stamp} AS TIMESTAMP))"
            select.append(f"CAST({stamp} AS BIGINT) AS timestamp")
        self._con.register("__rows", rows)
        try:
            # A plain projection keeps the input order, so values line up with rows.
            query = f"SELECT {', '.join(select)} FROM __rows AS r"  # noqa: S608 (quoted names)
            out = self._con.sql(query).to_arrow_table()
        finally:
            self._con.unregister("__rows")
        columns = {"value": out.column("value").cast(pa.binary())}
        if self.key:
            columns["key"] = out.column("key").cast(pa.binary())
        if stamped:
            columns["timestamp"] = out.column("timestamp")
        return pa.table(columns)


def _finite(rows: pa.Table) -> pa.Table:
    """NaN and +-inf as null: JSON has no spelling for them."""
    for i, f in enumerate(rows.schema):
        if not pa.types.is_floating(f.type):
            continue
        column = rows.column(i)
        finite = pc.is_finite(column)
        if pc.all(pc.or_kleene(finite, pc.is_null(column))).as_py() is False:
            rows = rows.set_column(i, f, pc.if_else(finite, column, None))
    return rows


@dataclass
class Decoded:
    """The result of :func:`decode_json`.

    ``table`` has one row per decoded value; ``rows`` says which input position each came
    from. ``bad`` lists input positions that did not decode, with why.
    """

    table: pa.Table
    rows: np.ndarray
    bad: list[tuple[int, str]] = field(default_factory=list)


def decode_json(values: pa.Array | pa.ChunkedArray) -> Decoded:
    """Parse JSON object values into Arrow; nulls (tombstones) are skipped, not bad.

    Values in Confluent's wire format (topics with a contract) are read without their
    5-byte prefix.

    Example:
        >>> out = decode_json(pa.array([b'{"a": 1}', None, b"oops", b'{"a": 2.5}']))
        >>> out.table.to_pylist(), out.rows.tolist(), [i for i, _ in out.bad]
        ([{'a': 1.0}, {'a': 2.5}], [0, 3], [2])
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not pa.types.is_binary(values.type):
        values = values.cast(pa.binary())
    present = np.flatnonzero(np.asarray(values.is_valid()))
    if len(present) < len(values):
        values = values.take(pa.array(present))
    values = _unframed(values)
    bad: list[tuple[int, str]] = []
    keep = present
    empty = np.asarray(pc.equal(pc.binary_length(values), 0).fill_null(False))
    if empty.any():
        bad += [(int(i), "an empty value is not a JSON object") for i in present[empty]]
        keep = present[~empty]
        values = values.filter(pa.array(~empty))
    try:
        first = _parse(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        first = None
    if first is not None and first.num_rows == len(values):
        tables, rows = [first], [keep]
    else:
        if _has_newline(values):
            # Pretty-printed objects: outside strings a newline is only whitespace, and
            # inside strings JSON forbids it, so a space in its place changes nothing valid.
            values = pc.replace_substring(values, b"\n", b" ")
        tables, rows = _decode(values, 0, len(values), bad, keep)
    if not tables:
        return Decoded(pa.table({}), np.zeros(0, np.int64), sorted(bad))
    table = concat_tables(tables)
    return Decoded(promote_timestamps(table), np.concatenate(rows), sorted(bad))


def _unframed(values: pa.BinaryArray) -> pa.BinaryArray:
    """Values without the wire format's prefix (magic byte 0, 4-byte schema id), if any.

    A value that starts with the magic byte but is too short stays as it is: it does not
    parse, and is reported like any other bad value.
    """
    framed = pc.and_(
        pc.starts_with(values, WIRE_MAGIC), pc.greater_equal(pc.binary_length(values), WIRE_PREFIX)
    )
    if not pc.any(framed).as_py():
        return values
    return pc.if_else(framed, pc.binary_slice(values, WIRE_PREFIX, 2**31 - 1), values)


def _decode(
    values: pa.BinaryArray,
    start: int,
    stop: int,
    bad: list[tuple[int, str]],
    positions: np.ndarray,
) -> tuple[list[pa.Table], list[np.ndarray]]:
    """Parse ``values[start:stop]``; on failure split in two and recurse (ordered output)."""
    if stop <= start:
        return [], []
    part = values.slice(start, stop - start)
    try:
        table = _parse(part)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        table, error = None, _short(exc)
    else:
        error = "" if table.num_rows == stop - start else "not exactly one JSON object"
    if not error and table is not None:
        return [table], [positions[start:stop]]
    if stop - start == 1:
        bad.append((int(positions[start]), error or "not a JSON object"))
        return [], []
    if stop - start <= _SMALL:
        out_tables: list[pa.Table] = []
        out_rows: list[np.ndarray] = []
        for i in range(start, stop):
            t, r = _decode(values, i, i + 1, bad, positions)
            out_tables += t
            out_rows += r
        return out_tables, out_rows
    middle = (start + stop) // 2
    left_tables, left_rows = _decode(values, start, middle, bad, positions)
    right_tables, right_rows = _decode(values, middle, stop, bad, positions)
    return left_tables + right_tables, left_rows + right_rows


def _parse(values: pa.BinaryArray) -> pa.Table:
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + n + 1
    ]
    longest = int(np.max(np.diff(offsets))) if n else 0
    whole = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), values), b"\n")
    buffer = whole.buffers()[2] if whole[0].is_valid else pa.py_buffer(b"")
    # Several blocks are parsed on several cores; a value longer than the shared rule allows
    # for still gets a block that holds it, as it always did.
    block = max(block_size(buffer.size, longest), longest + 2)
    return pj.read_json(
        pa.BufferReader(buffer),
        read_options=pj.ReadOptions(use_threads=block < buffer.size, block_size=block),
    )


def _has_newline(values: pa.BinaryArray) -> bool:
    return bool(pc.any(pc.match_substring(values.cast(pa.binary()), "\n")).as_py())


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("JSON parse error: ").removesuffix(" in row 0")


def concat_tables(tables: list[pa.Table]) -> pa.Table:
    """Tables one after the other; columns whose types disagree keep their values' text."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Parts disagree on a column's type (a number here, text there): keep the text of
        # every value; the sink decides, value by value, what fits its target.
        conflicted = _conflicting_columns(tables)
        fixed = []
        for table in tables:
            for name in conflicted:
                if name in table.column_names:
                    i = table.column_names.index(name)
                    table = table.set_column(i, name, _as_text(table.column(i)))
            fixed.append(table)
        return pa.concat_tables(fixed, promote_options="permissive")


def _conflicting_columns(tables: list[pa.Table]) -> list[str]:
    seen: dict[str, pa.DataType] = {}
    conflicted: list[str] = []
    for table in tables:
        for f in table.schema:
            if pa.types.is_null(f.type):
                continue
            known = seen.setdefault(f.name, f.type)
            if known != f.type and not (_numeric(known) and _numeric(f.type)):
                conflicted.append(f.name)
    return list(dict.fromkeys(conflicted))


def _numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_struct(kind) or pa.types.is_list(kind):
        con = duckdb.connect()
        try:
            con.register("c", pa.table({"c": column}))
            text = con.sql("SELECT CAST(to_json(c) AS VARCHAR) FROM c").to_arrow_table()
            return text.column(0)
        finally:
            con.close()
    return column.cast(pa.string())


def promote_timestamps(table: pa.Table) -> pa.Table:
    """Text columns (also inside structs) whose values all look like timestamps become one."""
    for i, f in enumerate(table.schema):
        column = table.column(i)
        promoted = _promote_column(column)
        if promoted is not column:
            table = table.set_column(i, pa.field(f.name, promoted.type), promoted)
    return table


def _promote_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_struct(kind):
        array = column.combine_chunks()
        children = [
            _promote_column(pa.chunked_array([array.field(j)])) for j in range(kind.num_fields)
        ]
        if all(c.type == kind.field(j).type for j, c in enumerate(children)):
            return column
        fields = [pa.field(kind.field(j).name, c.type) for j, c in enumerate(children)]
        rebuilt = pa.StructArray.from_arrays(
            [c.combine_chunks() for c in children], fields=fields, mask=array.is_null()
        )
        return pa.chunked_array([rebuilt])
    if not pa.types.is_string(kind) or column.null_count == len(column):
        return column
    sample = column.drop_null().slice(0, 20).to_pylist()
    matches = [_TIMESTAMP.match(v) for v in sample]
    if not all(matches):
        return column
    zoned = any(m.group("zone") for m in matches if m)
    target = pa.timestamp("us", tz="UTC") if zoned else pa.timestamp("us")
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column
