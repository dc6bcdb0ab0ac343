"""From fetched records to changes a table sink applies: upserts, deletes and truncates.

Values are JSON objects (decoded a batch at a time by :func:`~trunkline.connectors._json.
decode_json`). Two shapes are understood:

* plain rows: each value is a row; a tombstone (null value) deletes the row whose key is
  the record key (one key column's text, or a JSON object of the key columns);
* Debezium change events (``before``, ``after``, ``op``, ``source``; also wrapped in
  ``{"schema": ..., "payload": ...}``): ``c``, ``r`` and ``u`` upsert ``after``; ``d``
  deletes by the key in ``before`` (or the record key); ``t`` empties the table.

The result keeps the order of the records (``seq``) so that the sink can apply the last
change per key. A Debezium placeholder for an unchanged TOASTed value
(:data:`UNAVAILABLE`) is left in place: the sink must keep the value it has.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.connectors._bytes import byte_ranges
from trunkline.connectors._json import concat_tables, decode_json
from trunkline.connectors._sql import quote_identifier, quote_literal
from trunkline.hub import FetchedBatch

__all__ = ["UNAVAILABLE", "Changes", "Collapsed", "ValueFormat", "collapse", "read_changes"]

#: What Debezium writes for a TOASTed value that did not change (PostgreSQL).
UNAVAILABLE = "__debezium_unavailable_value"

ValueFormat = Literal["auto", "json", "debezium"]

#: Column names the sinks add to the rows they stage; data columns must not use them.
SEQ = "__trunkline_seq"
OP = "__trunkline_op"


@dataclass
class Changes:
    """The changes in a fetched batch, in record order.

    ``rows`` has the data columns plus :data:`SEQ` (the record's position in the batch) and
    :data:`OP`: ``u`` (insert or replace), ``d`` (delete: only key columns are meaningful)
    or ``t`` (truncate: no columns). ``bad`` lists record positions that could not be read,
    with why. ``envelope`` says whether the values were Debezium events.
    """

    rows: pa.Table
    bad: list[tuple[int, str]] = field(default_factory=list)
    envelope: bool = False
    tombstones: int = 0


def read_changes(
    batch: FetchedBatch, value_format: ValueFormat = "auto", key: tuple[str, ...] = ()
) -> Changes:
    """The changes of ``batch``; see the module docstring for what values may be.

    ``key`` names the key columns; a record key that is not a JSON object is the value of
    the one key column. Without ``key``, tombstones are counted and skipped.

    Example:
        >>> import pyarrow as pa
        >>> from trunkline.hub import FETCH_SCHEMA
        >>> records = pa.table({
        ...     "offset": [0, 1], "timestamp": pa.array([0, 0], FETCH_SCHEMA.field(1).type),
        ...     "key": [b"1", b"1"], "value": [b'{"id": 1, "a": "x"}', None],
        ...     "headers": pa.array([[], []], FETCH_SCHEMA.field(4).type)}, schema=FETCH_SCHEMA)
        >>> read_changes(FetchedBatch("t", 0, records, 2), key=("id",)).rows.to_pylist()
        [{'id': 1, 'a': 'x', '__trunkline_seq': 0, '__trunkline_op': 'u'}, \
{'id': 1, 'a': None, '__trunkline_seq': 1, '__trunkline_op': 'd'}]
    """
    records = batch.records
    # One contiguous binary array for every step below (each would otherwise combine the
    # fetched chunks, a copy of the whole batch, on its own).
    values = _binary(records.column("value"))
    bad: list[tuple[int, str]] = []
    envelope = False
    parts: list[pa.Table] = []
    if value_format != "json":
        quick = _upserts_by_text(values)
        if quick is not None:
            # Creates, reads and updates without a before image: only "after" is parsed.
            positions, afters, rest = quick
            decoded_after = decode_json(afters)
            if decoded_after.bad:
                # Not cut right (or not JSON at all): those take the usual way.
                back = np.zeros(len(rest), dtype=bool)
                back[positions[[i for i, _ in decoded_after.bad]]] = True
                rest = pc.if_else(pa.array(back), values, rest)
            values = rest
            if decoded_after.table.num_rows:
                parts.append(_with(decoded_after.table, positions[decoded_after.rows], "u"))
            envelope = True
    decoded = decode_json(values)
    table, rows = decoded.table, decoded.rows
    bad += decoded.bad
    if table.num_rows:
        table = _unwrap_payload(table)
        is_envelope = value_format == "debezium" or (
            value_format == "auto" and _looks_like_envelope(table)
        )
        envelope = envelope or is_envelope
        if is_envelope:
            more, bad_rows = _from_envelopes(table, rows, records.column("key"), key)
            parts += more
            bad += bad_rows
        else:
            parts.append(_with(table, rows, "u"))
    tombstone_rows = np.flatnonzero(np.asarray(records.column("value").is_null()))
    if len(tombstone_rows) and key:
        keys, bad_keys = _keys_of(records.column("key"), tombstone_rows, key)
        bad += bad_keys
        if keys.num_rows:
            parts.append(keys)
    rows_table = concat_tables(_aligned([p for p in parts if p.num_rows])) if parts else _empty()
    if rows_table.num_columns == 0:
        rows_table = _empty()
    elif rows_table.num_rows > 1:
        seq = rows_table.column(SEQ).to_numpy()
        # One kind of change (a snapshot, a run of inserts) is in order already: a sort
        # would copy every column for nothing.
        if not (np.diff(seq) > 0).all():
            rows_table = rows_table.take(pc.sort_indices(rows_table.column(SEQ)))
    return Changes(rows_table, sorted(bad), envelope, len(tombstone_rows))


_UPSERT_HEAD = b'{"before":null,"after":{'
_SOURCE = b',"source":{'


def _binary(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``values`` as one binary array (no copy when they are one binary chunk already)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    if not pa.types.is_binary(values.type):
        values = values.cast(pa.binary())
    return values


def _upserts_by_text(values: pa.Array) -> tuple[np.ndarray, pa.Array, pa.Array] | None:
    """Debezium events without a before image (creates, snapshot reads, updates of tables
    with the default replica identity), found by their text: ``{"before":null,"after":
    {...},"source":{...},...}``. Their ``after`` object is cut out, so that only it is
    parsed: a third of an event's bytes. It ends where the last ``,"source":{`` starts (a
    quote inside a JSON string is always escaped, and what follows the envelope's source
    holds no object). ``values`` is one binary array. Returns their positions, their
    ``after`` texts, and ``values`` with them taken out (null); None when there are none.
    """
    starts = pc.fill_null(pc.starts_with(values, _UPSERT_HEAD), False)
    if not pc.any(starts).as_py():
        return None
    # Split once at the last ",\"source\":{": the head is '{"before":null,"after":{...}'.
    split = pc.split_pattern(values, pattern=_SOURCE, max_splits=1, reverse=True)
    lists = np.frombuffer(split.buffers()[1], dtype=np.int32)[split.offset :][: len(split) + 1]
    parts = split.values
    part_ends = np.frombuffer(parts.buffers()[1], dtype=np.int32)[parts.offset :]
    heads = lists[:-1]
    head_length = part_ends[np.minimum(heads + 1, len(parts))] - part_ends[heads]
    cut = np.asarray(starts) & (np.diff(lists) == 2)
    positions = np.flatnonzero(cut)
    if not len(positions):
        return None
    # The after object runs from its brace (the head's last byte) to the head's end.
    first = len(_UPSERT_HEAD) - 1
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset :]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    afters = byte_ranges(data, offsets[positions] + first, head_length[positions] - first)
    if len(positions) == len(values):
        return positions, afters, pa.nulls(len(values), pa.binary())
    rest = pc.if_else(pa.array(cut), pa.scalar(None, pa.binary()), values)
    return positions, afters, rest


def _aligned(parts: list[pa.Table]) -> list[pa.Table]:
    """Key text from record keys cast to the type the rows have for that column, if it fits."""
    types: dict[str, pa.DataType] = {}
    for part in parts:
        for f in part.schema:
            if not pa.types.is_string(f.type) and not pa.types.is_null(f.type):
                types.setdefault(f.name, f.type)
    out = []
    for part in parts:
        for i, f in enumerate(part.schema):
            wanted = types.get(f.name)
            if wanted is not None and pa.types.is_string(f.type):
                with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    part = part.set_column(i, pa.field(f.name, wanted), part.column(i).cast(wanted))
        out.append(part)
    return out


def _empty() -> pa.Table:
    return pa.table({SEQ: pa.array([], pa.int64()), OP: pa.array([], pa.string())})


def _with(table: pa.Table, seq: np.ndarray, op: str | pa.Array) -> pa.Table:
    ops = op if isinstance(op, pa.Array) else pa.repeat(pa.scalar(op, pa.string()), len(seq))
    return table.append_column(SEQ, pa.array(seq, pa.int64())).append_column(OP, ops)


def _unwrap_payload(table: pa.Table) -> pa.Table:
    """Debezium's JSON converter with schemas on: ``{"schema": ..., "payload": {...}}``."""
    names = set(table.column_names)
    if "payload" in names and names <= {"schema", "payload"}:
        payload = table.column("payload")
        if pa.types.is_struct(payload.type):
            return pa.Table.from_batches(
                [pa.RecordBatch.from_struct_array(payload.combine_chunks())]
            )
    return table


def _looks_like_envelope(table: pa.Table) -> bool:
    names = set(table.column_names)
    if "op" not in names or not ({"after", "before"} & names):
        return False
    return all(
        pa.types.is_struct(table.schema.field(n).type)
        or pa.types.is_null(table.schema.field(n).type)
        for n in ("after", "before")
        if n in names
    )


def _taken(table: pa.Table, name: str, rows: np.ndarray) -> pa.Array | None:
    """The column ``name`` of ``table`` at ``rows`` (None when there is no such column)."""
    if name not in table.column_names or not len(rows):
        return None
    column = table.column(name)
    whole = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return whole.take(pa.array(rows))


def _flatten(column: pa.Array | None) -> pa.Table:
    """A struct column (from :func:`_taken`) as a table of its fields."""
    if column is None or pa.types.is_null(column.type):
        return pa.table({})
    return pa.Table.from_batches([pa.RecordBatch.from_struct_array(column)])


def _from_envelopes(
    table: pa.Table, seq: np.ndarray, keys: pa.ChunkedArray, key: tuple[str, ...]
) -> tuple[list[pa.Table], list[tuple[int, str]]]:
    op = table.column("op").combine_chunks()
    if not pa.types.is_string(op.type):
        op = op.cast(pa.string())
    op = op.fill_null("")

    def where(*kinds: str) -> np.ndarray:
        """Positions of the events whose op is one of ``kinds`` (an Arrow kernel, no rows
        in Python)."""
        found = pc.is_in(op, value_set=pa.array(kinds, pa.string()))
        return np.flatnonzero(found.to_numpy(zero_copy_only=False))

    bad: list[tuple[int, str]] = []
    parts: list[pa.Table] = []
    upserts = where("c", "r", "u")
    if len(upserts):
        after_column = _taken(table, "after", upserts)
        after = _flatten(after_column)
        if after_column is None or after.num_columns == 0:
            bad += [(int(seq[i]), "a create/update event without 'after'") for i in upserts]
        else:
            valid = np.asarray(after_column.is_valid())
            bad += [
                (int(seq[i]), f"an {op[int(i)].as_py()!r} event with a null 'after'")
                for i in upserts[~valid]
            ]
            parts.append(_with(after.filter(pa.array(valid)), seq[upserts[valid]], "u"))
    deletes = where("d")
    if len(deletes):
        before_column = _taken(table, "before", deletes)
        before = _flatten(before_column)
        has_before = (
            np.asarray(before_column.is_valid())
            if before_column is not None and before.num_columns
            else np.zeros(len(deletes), dtype=bool)
        )
        if has_before.any():
            parts.append(_with(before.filter(pa.array(has_before)), seq[deletes[has_before]], "d"))
        if (~has_before).any():
            # No before image (REPLICA IDENTITY NOTHING): the record key says which row.
            key_rows, bad_keys = _keys_of(keys, seq[deletes[~has_before]], key)
            bad += bad_keys
            parts.append(key_rows)
    truncates = where("t")
    if len(truncates):
        parts.append(_truncates(seq[truncates]))
    known = np.zeros(len(op), dtype=bool)
    known[np.concatenate([upserts, deletes, truncates])] = True
    bad += [
        (int(seq[i]), f"unknown Debezium op {op[int(i)].as_py()!r} (expected c, r, u, d or t)")
        for i in np.flatnonzero(~known)
    ]
    return parts, bad


def _truncates(seq: np.ndarray) -> pa.Table:
    return pa.table({SEQ: pa.array(seq, pa.int64()), OP: pa.array(["t"] * len(seq), pa.string())})


def _keys_of(
    keys: pa.ChunkedArray, rows: np.ndarray, key: tuple[str, ...]
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Delete rows from record keys at ``rows``: JSON objects, or one column's text."""
    taken = keys.combine_chunks().take(pa.array(rows)) if len(rows) else pa.array([], pa.binary())
    missing = np.asarray(taken.is_null())
    bad = [
        (int(r), "a tombstone without a key: nothing says which row to delete")
        for r in rows[missing]
    ]
    rows, taken = rows[~missing], taken.filter(pa.array(~missing))
    if not len(rows):
        return _empty(), bad
    if not pa.types.is_binary(taken.type):
        taken = taken.cast(pa.binary())
    is_object = np.asarray(pc.starts_with(taken.cast(pa.string()), "{").fill_null(False))
    parts = []
    if is_object.any():
        decoded = decode_json(taken.filter(pa.array(is_object)))
        object_rows = rows[is_object]
        bad += [(int(object_rows[i]), f"key: {error}") for i, error in decoded.bad]
        if decoded.table.num_rows:
            parts.append(_with(decoded.table, object_rows[decoded.rows], "d"))
    if (~is_object).any():
        plain_rows = rows[~is_object]
        if len(key) == 1:
            # One key column: its text; the sink casts it to the column's type.
            text = taken.filter(pa.array(~is_object)).cast(pa.string())
            parts.append(_with(pa.table({key[0]: text}), plain_rows, "d"))
        else:
            bad += [
                (int(r), f"the key of a delete must be a JSON object of {', '.join(key)}")
                for r in plain_rows
            ]
    return (concat_tables(parts) if parts else _empty()), bad


@dataclass
class Collapsed:
    """The net effect of a run of changes on a table keyed by ``key`` (see :func:`collapse`).

    Apply it as: empty the table if ``truncated``; delete the rows of every key in
    ``touched``; insert ``rows``. ``rows`` holds, per key still present, its last values;
    ``missing`` names, per text column, the rows whose value was only ever Debezium's
    placeholder for an unchanged TOASTed value since the key's last delete: those must keep
    the value the target has (``missing`` is None when no value was a placeholder).
    """

    truncated: bool
    touched: pa.Table
    rows: pa.Table
    missing: dict[str, pa.Array] | None = None


def collapse(changes: pa.Table, key: tuple[str, ...]) -> Collapsed:
    """The last change per key of ``changes`` (as :func:`read_changes` gives them; ``SEQ``
    orders them), with truncates and deletes resolved, in one DuckDB query per part.

    Example:
        >>> changes = pa.table({"id": [1, 1, 2, 2], "a": ["x", UNAVAILABLE, "y", None],
        ...     SEQ: [0, 1, 2, 3], OP: ["u", "u", "u", "d"]})
        >>> out = collapse(changes, ("id",))
        >>> out.touched.to_pylist(), out.rows.to_pylist()
        ([{'id': 1}, {'id': 2}], [{'id': 1, 'a': 'x'}])
    """
    q = quote_identifier
    seq, op = q(SEQ), q(OP)
    data = [c for c in changes.column_names if c not in (SEQ, OP)]
    truncates = pc.equal(changes.column(OP), "t")
    truncated = bool(pc.any(truncates).as_py())
    if truncated:
        last = pc.max(pc.filter(changes.column(SEQ), truncates)).as_py()
        changes = changes.filter(pc.greater(changes.column(SEQ), last))
    keys = ", ".join(q(k) for k in key)
    text = [
        c
        for c in data
        if c not in key
        and (
            pa.types.is_string(changes.schema.field(c).type)
            or pa.types.is_large_string(changes.schema.field(c).type)
        )
        and pc.any(pc.equal(changes.column(c), UNAVAILABLE)).as_py()
    ]
    placeholder = quote_literal(UNAVAILABLE)
    parts = [q(k) for k in key]
    for i, c in enumerate(c for c in data if c not in key):
        if c in text:
            real = f"{q(c)} IS DISTINCT FROM {placeholder}"
            parts.append(f"arg_max_null({q(c)}, {seq}) FILTER (WHERE {real}) AS {q(c)}")
            parts.append(
                f"count(*) FILTER (WHERE {real}) = 0 AND NOT bool_or(__del IS NOT NULL) AS __m{i}"
            )
        else:
            parts.append(f"arg_max_null({q(c)}, {seq}) AS {q(c)}")
    con = duckdb.connect()
    try:
        con.register("__changes", changes)
        query = f"SELECT DISTINCT {keys} FROM __changes ORDER BY ALL"  # noqa: S608 (quoted)
        touched = con.sql(query).to_arrow_table()
        # Per key, only what follows its last delete is still there.
        query = (
            f"SELECT {', '.join(parts)} FROM (SELECT *, max(CASE WHEN {op} = 'd' THEN {seq} END) "  # noqa: S608 (quoted names)
            f"OVER (PARTITION BY {keys}) AS __del FROM __changes) "
            f"WHERE __del IS NULL OR {seq} > __del GROUP BY {keys} ORDER BY {keys}"
        )
        rows = con.sql(query).to_arrow_table()
    finally:
        con.close()
    missing = None
    if text:
        names = [c for c in data if c not in key]
        missing = {c: rows.column(f"__m{names.index(c)}").combine_chunks() for c in text}
        rows = rows.drop_columns([f"__m{names.index(c)}" for c in text])
    return Collapsed(truncated, touched, rows, missing)
