"""Record values to Arrow columns and back, and Confluent's wire format, on whole batches.

Decoding has a fast path and a careful one. The fast path joins the values with newlines and
hands them to Arrow's JSON reader with the contract's types: one C++ pass, strict about
types (a string where a number belongs fails). It holds when every value is one JSON object
on one line, which :func:`decode` checks by the first byte and the row count. When the batch
has a bad record, DuckDB looks at every value on its own to say which records are bad and
why, and the fast path runs again on the good ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from trunkline._json_blocks import block_size
from trunkline.contracts._model import Contract
from trunkline.contracts._rules import ARROW_TYPES, Mask, _connection, _quote
from trunkline.errors import InvalidRecord

#: Confluent's wire format: magic byte 0, then the schema id as 4 big-endian bytes.
MAGIC = b"\x00"
HEADER_BYTES = 5

_JSON_KINDS: dict[str, tuple[str, ...]] = {
    "string": ("VARCHAR",),
    "integer": ("BIGINT", "UBIGINT"),
    "number": ("BIGINT", "UBIGINT", "DOUBLE"),
    "boolean": ("BOOLEAN",),
    "date": ("VARCHAR",),
    "timestamp": ("VARCHAR",),
    "time": ("VARCHAR",),
    "object": ("OBJECT",),
    "array": ("ARRAY",),
}
_EXPECTED = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "date": "a date (YYYY-MM-DD)",
    "timestamp": "an ISO-8601 timestamp",
    "time": "a time (HH:MM:SS)",
    "object": "an object",
    "array": "an array",
}
_TIME_PATTERN = r"^\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$"
#: Arrow's reader parses these as text; the columns are converted after.
_AS_TEXT = {"date": pa.string(), "time": pa.string()}


@dataclass(frozen=True, slots=True)
class Layout:
    """How a contract's records are read: names and logical types, in property order."""

    names: tuple[str, ...]
    logical: tuple[str | None, ...]
    schema: pa.Schema  # the decoded columns
    parse_schema: pa.Schema  # what Arrow's JSON reader is told

    @classmethod
    def of(cls, contract: Contract) -> Layout:
        props = contract.object.properties
        columns, parse = [], []
        for prop in props:
            kind = ARROW_TYPES.get(prop.logical_type or "")
            columns.append(pa.field(prop.name, kind if kind is not None else pa.null()))
            if kind is not None:
                parse.append(pa.field(prop.name, _AS_TEXT.get(prop.logical_type or "", kind)))
        return cls(
            tuple(p.name for p in props),
            tuple(p.logical_type for p in props),
            pa.schema(columns),
            pa.schema(parse),
        )


@dataclass(frozen=True, slots=True)
class Decoded:
    """Decoded records: typed columns (null where a record is bad) and why bad ones are bad.

    ``field`` and ``reason`` are string arrays with one entry per bad record, in order.
    """

    table: pa.Table
    bad: Mask
    field: pa.Array
    reason: pa.Array


class _Refused(Exception):
    """The fast path cannot vouch for this batch."""


_NONE = pa.array([], pa.string())


def decode(payload: pa.Array, layout: Layout) -> Decoded:
    """Decode JSON ``payload`` values (binary, no nulls) into the layout's columns."""
    n = len(payload)
    if n == 0:
        return Decoded(layout.schema.empty_table(), np.zeros(0, np.bool_), _NONE, _NONE)
    try:
        return _fast(payload, layout)
    except _Refused:
        pass
    bad, fields, reasons = _careful(payload, layout)
    good = np.flatnonzero(~bad)
    if not len(good):
        return Decoded(_nulls(layout, n), bad, fields, reasons)
    try:
        subset = _fast(payload.take(pa.array(good)), layout)
    except _Refused as exc:
        raise InvalidRecord(f"records could not be decoded: {exc}") from None
    if subset.bad.any():
        # Conversions only Arrow checks (dates, times): merge them in, in record order.
        first = np.flatnonzero(bad)
        extra = good[subset.bad]
        bad[extra] = True
        order = np.argsort(np.concatenate([first, extra]), kind="stable")
        fields = pa.concat_arrays([fields, subset.field]).take(pa.array(order))
        reasons = pa.concat_arrays([reasons, subset.reason]).take(pa.array(order))
    index = np.full(n, -1, dtype=np.int64)
    index[good] = np.arange(len(good))
    table = subset.table.take(pa.array(index, mask=index < 0))
    return Decoded(table, bad, fields, reasons)


def _nulls(layout: Layout, n: int) -> pa.Table:
    return pa.table({f.name: pa.nulls(n, f.type) for f in layout.schema}, schema=layout.schema)


def json_lines(payload: pa.Array) -> tuple[pa.Buffer, int]:
    """``payload`` values (binary, no nulls) joined into JSON lines, and the longest line."""
    n = len(payload)
    lines = pc.binary_join_element_wise(payload, pa.scalar(b"\n"), b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + n])
    longest = int(np.diff(offsets[lines.offset : lines.offset + n + 1]).max())
    return lines.buffers()[2][start:end], longest


def read_lines(data: pa.Buffer, longest: int, layout: Layout) -> pa.Table:
    """Arrow's JSON reader on :func:`json_lines` output, told the layout's types (Arrow's
    errors propagate)."""
    return pj.read_json(
        pa.BufferReader(data),
        read_options=pj.ReadOptions(block_size=block_size(data.size, longest)),
        parse_options=pj.ParseOptions(
            explicit_schema=layout.parse_schema, unexpected_field_behavior="infer"
        ),
    )


def _fast(payload: pa.Array, layout: Layout) -> Decoded:
    n = len(payload)
    if not pc.all(pc.starts_with(payload, b"{")).as_py():
        raise _Refused("a value does not start with '{'")
    try:
        parsed = read_lines(*json_lines(payload), layout)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _Refused(str(exc)) from None
    if parsed.num_rows != n:
        raise _Refused(f"{n} values held {parsed.num_rows} JSON objects")
    # Per record, the first problem found: an index into `labels` (-1: none).
    code = np.full(n, -1, dtype=np.int32)
    labels: list[tuple[str, str]] = []

    def flag(mask: Mask, field: str, reason: str) -> None:
        fresh = mask & (code < 0)
        if fresh.any():
            code[fresh] = len(labels)
            labels.append((field, reason))

    columns = []
    for name, logical, target in zip(layout.names, layout.logical, layout.schema, strict=True):
        if name not in parsed.column_names:
            columns.append(pa.nulls(n, target.type))
            continue
        column = parsed.column(name)
        if logical == "date":
            dates = pc.strptime(column, format="%Y-%m-%d", unit="s", error_is_null=True)
            # strptime rolls 2024-02-30 over to March: only a date that prints back is one.
            same = pc.equal(pc.strftime(dates, format="%Y-%m-%d"), column)
            flag(_np(pc.and_(pc.is_valid(column), pc.invert(pc.fill_null(same, False)))), name,
                 _wrong(name, logical))  # fmt: skip
            column = dates.cast(pa.date32())
        elif logical == "time":
            ok = pc.match_substring_regex(column, _TIME_PATTERN)
            flag(_np(pc.invert(pc.fill_null(ok, True))), name, _wrong(name, logical))
        elif logical in ("object", "array"):
            fits = pa.types.is_struct if logical == "object" else pa.types.is_list
            if not (fits(column.type) or pa.types.is_null(column.type)):
                flag(_np(pc.is_valid(column)), name, _wrong(name, logical))
                column = pa.nulls(n, column.type)
        columns.append(column)
    for name in parsed.column_names:
        if name not in layout.names:
            flag(_np(pc.is_valid(parsed.column(name))), name, f"unknown field {name!r}")
    table = pa.table(columns, names=list(layout.names))
    bad = code >= 0
    if not labels:
        return Decoded(table, bad, _NONE, _NONE)
    picked = pa.array(code[bad])
    fields = pa.array([f for f, _ in labels], pa.string()).take(picked)
    reasons = pa.array([r for _, r in labels], pa.string()).take(picked)
    return Decoded(table, bad, fields, reasons)


def _np(mask: pa.Array | pa.ChunkedArray) -> Mask:
    filled = pc.fill_null(mask, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _wrong(name: str, logical: str | None) -> str:
    return f"field {name!r}: expected {_EXPECTED.get(logical or '', 'a value')}"


def _careful(payload: pa.Array, layout: Layout) -> tuple[Mask, pa.Array, pa.Array]:
    """Per value (in DuckDB, vectorised): is it UTF-8, JSON, an object, of the right types?"""
    checks: list[tuple[str, str, str]] = []  # (condition, field, reason) in order
    for name, logical in zip(layout.names, layout.logical, strict=True):
        if logical is None:
            continue
        path = "'$." + _quote(name).replace("'", "''") + "'"
        kind = f"coalesce(json_type(s, {path}), 'NULL')"
        allowed = ", ".join(f"'{k}'" for k in ("NULL", *_JSON_KINDS[logical]))
        condition = f"{kind} NOT IN ({allowed})"
        text = f"json_extract_string(s, {path})"
        if logical == "integer":  # unsigned above 2**63-1 does not fit
            condition += f" OR ({kind} = 'UBIGINT' AND TRY_CAST({text} AS BIGINT) IS NULL)"
        elif logical == "timestamp":
            condition += f" OR ({kind} = 'VARCHAR' AND TRY_CAST({text} AS TIMESTAMPTZ) IS NULL)"
        elif logical == "date":
            condition += f" OR ({kind} = 'VARCHAR' AND try_strptime({text}, '%Y-%m-%d') IS NULL)"
        elif logical == "time":
            condition += (
                f" OR ({kind} = 'VARCHAR' AND NOT regexp_full_match({text}, "
                f"'{_TIME_PATTERN[1:-1]}'))"
            )
        checks.append((condition, name, _wrong(name, logical)))
    known = "[" + ", ".join("'" + n.replace("'", "''") + "'" for n in layout.names) + "]"
    unknown = f"list_filter(json_keys(s), k -> NOT list_contains({known}, k))[1]"
    reason_cases = [
        "WHEN s IS NULL THEN 'not UTF-8 text'",
        "WHEN NOT json_valid(s) THEN 'not valid JSON'",
        "WHEN json_type(s) <> 'OBJECT' THEN 'expected a JSON object, found ' || "
        "lower(json_type(s))",
    ]
    field_cases = ["WHEN s IS NULL OR NOT json_valid(s) OR json_type(s) <> 'OBJECT' THEN NULL"]
    for condition, name, reason in checks:
        reason_cases.append(f"WHEN {condition} THEN '{reason.replace(chr(39), chr(39) * 2)}'")
        field_cases.append(f"WHEN {condition} THEN '{name.replace(chr(39), chr(39) * 2)}'")
    reason_cases.append(f"WHEN {unknown} IS NOT NULL THEN 'unknown field ''' || {unknown} || ''''")
    field_cases.append(f"WHEN {unknown} IS NOT NULL THEN {unknown}")
    # Names and reasons are quoted above; the values themselves are data, never SQL text.
    reason_sql, field_sql = " ".join(reason_cases), " ".join(field_cases)
    query = (
        f"SELECT CASE {reason_sql} END AS reason, CASE {field_sql} END AS field "  # noqa: S608
        "FROM (SELECT __row, try(decode(v)) AS s FROM batch) ORDER BY __row"
    )
    batch = pa.table({"v": payload, "__row": pa.array(np.arange(len(payload), dtype=np.int64))})
    con = _connection()
    try:
        result = con.from_arrow(batch).query("batch", query).to_arrow_table()
    except duckdb.Error as exc:  # pragma: no cover - a bug in the query above
        raise InvalidRecord(f"records could not be checked: {exc}") from None
    reason = result.column("reason").combine_chunks()
    bad = _np(pc.is_valid(reason))
    keep = pa.array(bad)
    fields = pc.filter(result.column("field").combine_chunks(), keep).cast(pa.string())
    return bad, fields, pc.filter(reason, keep).cast(pa.string())


def encode(table: pa.Table, layout: Layout) -> pa.Array:
    """JSON values (binary) for rows of typed columns, in DuckDB (timestamps as ISO-8601 UTC)."""
    parts = []
    for name, logical in zip(layout.names, layout.logical, strict=True):
        if name not in table.column_names:
            continue
        column = _quote(name)
        if logical == "timestamp":
            column = f"strftime({column} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')"
        parts.append(f"{_quote(name)} := {column}")
    if not parts:
        return pa.repeat(pa.scalar(b"{}", pa.binary()), table.num_rows)
    expression = duckdb.SQLExpression(f"to_json(struct_pack({', '.join(parts)}))::BLOB")
    result = _connection().from_arrow(table).select(expression.alias("v")).to_arrow_table()
    return result.column("v").combine_chunks().cast(pa.binary())


def frame(payload: pa.Array, schema_id: int) -> pa.Array:
    """``payload`` values in Confluent's wire format for ``schema_id`` (nulls stay null)."""
    prefix = MAGIC + int(schema_id).to_bytes(4, "big")
    return pc.binary_join_element_wise(pa.scalar(prefix), payload, b"")


def unframe(values: pa.Array) -> tuple[pa.Array, Mask, np.ndarray]:
    """Split values that are already in the wire format: (payloads, framed mask, their ids)."""
    framed = _np(pc.starts_with(values, MAGIC))
    if not framed.any():
        return values, framed, np.zeros(0, dtype=np.uint32)
    heads = pc.binary_slice(pc.filter(values, pa.array(framed)), 1, HEADER_BYTES)
    complete = _np(pc.equal(pc.binary_length(heads), 4))
    if not complete.all():
        short = np.flatnonzero(framed)[np.flatnonzero(~complete)[0]]
        raise InvalidRecord(
            f"record {short}: starts with the wire format's magic byte 0 but has no 4-byte "
            "schema id"
        )
    ids = np.frombuffer(heads.cast(pa.binary(4)).buffers()[1], dtype=">u4").astype(np.uint32)
    rest = pc.binary_slice(values, HEADER_BYTES, 2**31 - 1)
    payload = pc.if_else(pa.array(framed), rest, values)
    return payload, framed, ids
