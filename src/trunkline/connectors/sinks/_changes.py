"""From fetched records to changes a table sink applies: upserts, deletes and truncates.

Values are JSON objects (decoded a batch at a time by :func:`~trunkline.connectors._json.
decode_json`). Two shapes are understood:

* plain rows: each value is a row; a tombstone (null value) deletes the row whose key is
  the record key (one key column's text, or a JSON object of the key columns);
* Debezium change events (``before``, ``after``, ``op``, ``source``; also wrapped in
  ``{"schema": ..., "payload": ...}``): ``c``, ``r`` and ``u`` upsert ``after``; ``d``
  deletes by the key in ``before`` (or the record key); ``t`` empties the table.

Events a hub holds as templates (:mod:`trunkline.hub._template`: the Postgres source's
snapshot reads) are read from their fragments when they are creates or reads whose
``after`` fields are each one fragment: no rendering, and JSON parsed only for columns whose
type only pyarrow's inference can tell (timestamps without fractions of a second, floats,
arrays, text with escapes). The changes are exactly those the JSON path reads from the
rendered bytes; anything else (other shapes, bytes among the templates, parts that disagree
on a column's type) takes the JSON path.

The result keeps the order of the records (``seq``) so that the sink can apply the last
change per key. A Debezium placeholder for an unchanged TOASTed value
(:data:`UNAVAILABLE`) is left in place: the sink must keep the value it has.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from trunkline.connectors._bytes import byte_ranges, needs_json_escape
from trunkline.connectors._json import _parse, concat_tables, decode_json, promote_timestamps
from trunkline.connectors._sql import quote_identifier, quote_literal
from trunkline.hub import FetchedBatch
from trunkline.hub._template import fragments, is_template, literals

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
    if value_format != "json" and batch.templated:
        quick = _from_templates(batch.batches, key)
        if quick is not None:
            return quick
    records = batch.records
    # One contiguous binary array for every step below (each would otherwise combine the
    # fetched chunks, a copy of the whole batch, on its own).
    values = _binary(records.column("value"))
    bad: list[tuple[int, str]] = []
    envelope = False
    parts: list[pa.Table] = []
    if value_format != "json":
        quick_text = _upserts_by_text(values)
        if quick_text is not None:
            # Creates, reads and updates without a before image: only "after" is parsed.
            positions, afters, rest = quick_text
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
    return _finish(parts, bad, envelope, records.column("key"), tombstone_rows, key)


def _finish(
    parts: list[pa.Table],
    bad: list[tuple[int, str]],
    envelope: bool,
    keys: pa.ChunkedArray,
    tombstone_rows: np.ndarray,
    key: tuple[str, ...],
) -> Changes:
    """The changes from the rows read so far, with the tombstones' deletes, in order."""
    if len(tombstone_rows) and key:
        key_rows, bad_keys = _keys_of(keys, tombstone_rows, key)
        bad += bad_keys
        if key_rows.num_rows:
            parts.append(key_rows)
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


# -- template values (read without rendering) -------------------------------------------------

#: Marker digits standing for fragment ``i`` in a template's sample rendering: a number in
#: JSON's number context and plain text inside a JSON string.
_MARK = "739"
#: A date at the start of a text: pyarrow may read such a string as a timestamp, and
#: :func:`promote_timestamps` may promote it: those columns are read by the JSON machinery.
_DATE_LIKE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_INTEGER = r"^(?:0|-?[1-9][0-9]{0,17}|null)$"
_LITERALS = pa.array(["true", "false", "null"], pa.string())


@dataclass(frozen=True)
class _Field:
    """Where an ``after`` field's value is in a template: fragment ``index``, inside a JSON
    string between ``prefix`` and ``suffix`` (``quoted``), or a whole JSON value."""

    name: str
    index: int
    quoted: bool
    prefix: str = ""
    suffix: str = ""


def _from_templates(batches: Sequence[pa.RecordBatch], key: tuple[str, ...]) -> Changes | None:
    """The changes of stored batches whose values are Debezium events held as templates
    (:mod:`trunkline.hub._template`) of creates and reads, read from their fragments without
    rendering them or parsing JSON (except columns whose inference only pyarrow can tell).

    The result is exactly what the JSON path makes of the rendered bytes (which cuts the
    ``after`` object out of each event by its text and decodes it): each template is
    checked to be of that shape, each fragment to read as that JSON would. None (the JSON
    path must read the batch) when anything is not certain.
    """
    names: list[str] | None = None
    columns: list[list[pa.Array]] = []
    seqs: list[np.ndarray] = []
    tombstones: list[np.ndarray] = []
    start = 0
    for piece in batches:
        count = piece.num_rows
        value = piece.column(3)
        if count and is_template(value.type):
            read = _read_template(value)
            if read is None:
                return None
            piece_names, arrays = read
            if names is None:
                names, columns = piece_names, [[] for _ in piece_names]
            elif piece_names != names:
                return None
            for chunks, array in zip(columns, arrays, strict=True):
                chunks += array.chunks if isinstance(array, pa.ChunkedArray) else [array]
            valid = np.asarray(value.is_valid()) if value.null_count else None
            if valid is None:
                seqs.append(np.arange(start, start + count, dtype=np.int64))
            else:
                seqs.append(start + np.flatnonzero(valid))
                tombstones.append(start + np.flatnonzero(~valid))
        elif count and value.null_count == count:
            tombstones.append(np.arange(start, start + count, dtype=np.int64))
        elif count:
            return None  # bytes among templates: the JSON path reads them all together
        start += count
    seq = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    if names is None or not len(seq):
        return None
    chunked = []
    for chunks in columns:
        kinds = {a.type for a in chunks if not pa.types.is_null(a.type)}
        if len(kinds) > 1:
            return None  # parts disagree: the JSON path's inference over all of them decides
        kind = kinds.pop() if kinds else pa.null()
        chunks = [a if a.type == kind else pa.nulls(len(a), kind) for a in chunks]
        chunked.append(pa.chunked_array(chunks, kind))
    after = pa.Table.from_arrays(chunked, names=names)
    keys = pa.chunked_array([b.column(2) for b in batches], pa.binary())
    tombstone_rows = np.concatenate(tombstones) if tombstones else np.zeros(0, np.int64)
    return _finish([_with(after, seq, "u")], [], True, keys, tombstone_rows, key)


def _read_template(
    values: pa.StructArray,
) -> tuple[list[str], list[pa.Array | pa.ChunkedArray]] | None:
    """The ``after`` columns of a template's present rows (names and arrays), or None."""
    layout = _layout(values.type)
    if layout is None:
        return None
    pieces = fragments(values)
    if values.null_count:
        present = values.is_valid()
        pieces = [piece.filter(present) for piece in pieces]
    if any(piece.null_count for piece in pieces):
        return None  # renders as a null value: left to the JSON path
    arrays: list[pa.Array | pa.ChunkedArray] = []
    for spec in layout:
        piece = pieces[spec.index]
        array = _quoted(piece, spec) if spec.quoted else _bare(piece)
        if array is None:
            return None
        arrays.append(array)
    return [spec.name for spec in layout], arrays


@functools.lru_cache(maxsize=64)
def _layout(kind: pa.DataType) -> tuple[_Field, ...] | None:
    """Where each field of the ``after`` object is, from one sample rendering of a template
    type with a marker for each fragment; None unless every event is a create or read the
    JSON path would cut by text and each ``after`` field is exactly one fragment."""
    texts = literals(kind)
    count = len(texts) - 1
    head, closing = texts[0].encode(), texts[-1].encode()
    end = closing.rfind(_SOURCE)
    if not count or not head.startswith(_UPSERT_HEAD) or end < 0:
        return None
    markers = [f"{_MARK}{i:07d}" for i in range(count)]
    sample = "".join(t + m for t, m in zip(texts, markers, strict=False)) + texts[-1]
    if any(sample.count(m) != 1 for m in markers):
        return None
    raw = sample.encode()
    # What the JSON path cuts out: from the after object's brace to the last ',"source":{'
    # (in the closing text, so at the same place from the end of every value).
    cut = raw[len(_UPSERT_HEAD) - 1 : len(raw) - len(closing) + end]
    if b"\n" in cut or b"\r" in cut:
        return None
    pairs: list[list[tuple[str, object]]] = []

    def keep(found: list[tuple[str, object]]) -> dict[str, object]:
        pairs.append(found)
        return dict(found)

    try:
        after = json.loads(cut, object_pairs_hook=keep)
    except ValueError:
        return None
    # One object (no nested ones, where pyarrow's field order could differ) whose names are
    # all different: pyarrow's reader makes the same columns, in the same order.
    if not isinstance(after, dict) or len(pairs) != 1 or len(after) != count:
        return None
    where = {m: i for i, m in enumerate(markers)}
    layout: list[_Field] = []
    for name, value in after.items():
        if any(m in name for m in markers):
            return None
        if type(value) is int and str(value) in where:
            layout.append(_Field(name, where[str(value)], quoted=False))
            continue
        if not isinstance(value, str):
            return None
        found = [m for m in markers if m in value]
        if len(found) != 1 or value.count(found[0]) != 1:
            return None
        prefix, suffix = value.split(found[0])
        layout.append(_Field(name, where[found[0]], True, prefix, suffix))
    if sorted(f.index for f in layout) != list(range(count)):
        return None
    return tuple(layout)


def _quoted(piece: pa.Array, spec: _Field) -> pa.Array | pa.ChunkedArray | None:
    """The text of a fragment inside a JSON string: as it is, when it holds nothing JSON
    escapes (else the rendered value would not even parse: None)."""
    if needs_json_escape(piece):
        return None
    text = piece
    if spec.prefix or spec.suffix:
        text = pc.binary_join_element_wise(spec.prefix, piece, spec.suffix, "")
    if _any_date_like(text):
        seconds = _utc_seconds(text)
        if seconds is not None:
            return seconds
        # Maybe a timestamp: pyarrow's reader makes a column of them timestamp[s] when it
        # can read every value as one, else text, which promote_timestamps looks at. One
        # value it reads as text (times with fractions of a second are) settles the first.
        fraction = _first_with(text, b".")
        if fraction is not None and _read_as_text(text[fraction].as_py()):
            return promote_timestamps(pa.table({"v": text})).column(0)
        before = '{"v":' + json.dumps(spec.prefix)[:-1]
        after = json.dumps(spec.suffix)[1:] + "}"
        return _json_column(pc.binary_join_element_wise(before, piece, after, ""))
    return text


def _utc_seconds(texts: pa.Array) -> pa.Array | None:
    """Texts that are all ``YYYY-MM-DDTHH:MM:SSZ`` (what the source writes for a
    timestamptz without fractions of a second) as pyarrow's JSON reader reads such a
    column: timestamp[s] without a zone. None for anything else."""
    if not pa.types.is_string(texts.type) or texts.null_count or not len(texts):
        return None
    _, offsets, data = texts.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1]
    if data is None or not (np.diff(bounds) == 20).all():
        return None
    raw = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]].reshape(-1, 20)
    digits = raw[:, [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]]
    if ((digits - 0x30) >= 10).any():  # below "0" wraps around
        return None
    marks = raw[:, [4, 7, 10, 13, 16, 19]]
    if not (marks == np.frombuffer(b"--T::Z", dtype=np.uint8)).all():
        return None
    try:
        return pc.strptime(texts, format="%Y-%m-%dT%H:%M:%SZ", unit="s")
    except pa.ArrowInvalid:
        return None  # not a date (a 13th month...): the reader decides


def _any_date_like(texts: pa.Array) -> bool:
    """Whether any text starts with a date (``^[0-9]{4}-[0-9]{2}-[0-9]{2}``), looking at
    the first ten bytes of each in place."""
    if not len(texts):
        return False
    if not pa.types.is_string(texts.type):
        return bool(pc.any(pc.match_substring_regex(texts, _DATE_LIKE)).as_py())
    _, offsets, data = texts.buffers()
    if data is None:
        return False
    bounds = np.frombuffer(offsets, dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1]
    starts = bounds[:-1][np.diff(bounds) >= 10]
    if not len(starts):
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    starts = starts[raw[starts + 4] == 0x2D]
    starts = starts[raw[starts + 7] == 0x2D]
    for at in (0, 1, 2, 3, 5, 6, 8, 9):
        starts = starts[(raw[starts + at] - 0x30) < 10]  # a digit (below "0" wraps around)
    return bool(len(starts))


def _first_with(texts: pa.Array, byte: bytes) -> int | None:
    """The position of the first text that holds ``byte`` (an ASCII character), if any."""
    if not pa.types.is_string(texts.type):
        found = pc.index(pc.match_substring(texts, byte.decode()), True).as_py()
        return None if found < 0 else int(found)
    _, offsets, data = texts.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1]
    if data is None or not len(texts):
        return None
    raw = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]
    hits = np.flatnonzero(raw == ord(byte))
    if not len(hits):
        return None
    return int(np.searchsorted(bounds, bounds[0] + hits[0], side="right")) - 1


def _read_as_text(value: str) -> bool:
    """Whether pyarrow's JSON reader reads ``value`` as text (not as a timestamp)."""
    line = json.dumps({"v": value}).encode()
    return bool(pj.read_json(pa.BufferReader(line)).schema.field(0).type == pa.string())


def _bare(piece: pa.Array) -> pa.Array | pa.ChunkedArray | None:
    """A fragment that is a whole JSON value: integers and booleans (or null) here, other
    values by pyarrow's JSON reader, one column on its own."""
    if not len(piece):
        return pa.nulls(0, pa.null())
    nulls = pc.equal(piece, "null")
    if pc.all(nulls).as_py():
        return pa.nulls(len(piece), pa.null())
    no_value = pa.scalar(None, pa.string())
    if _all_integers(piece, nulls):
        return pc.if_else(nulls, no_value, piece).cast(pa.int64())
    if pc.all(pc.is_in(piece, value_set=_LITERALS)).as_py():
        return pc.equal(pc.if_else(nulls, no_value, piece), "true")
    if pc.any(pc.match_substring_regex(piece, r"[\r\n]")).as_py():
        return None
    return _json_column(pc.binary_join_element_wise('{"v":', piece, "}", ""))


def _all_integers(texts: pa.Array, nulls: pa.Array) -> bool:
    """Whether every text is ``null`` (``nulls``) or an integer as JSON writes it that
    int64 holds: what :data:`_INTEGER` says, looking at the bytes in place."""
    if not pa.types.is_string(texts.type) or texts.null_count:
        return bool(pc.all(pc.match_substring_regex(texts, _INTEGER)).as_py())
    _, offsets, data = texts.buffers()
    if data is None:
        return False  # all empty
    bounds = np.frombuffer(offsets, dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1]
    raw = np.frombuffer(data, dtype=np.uint8)
    is_null = nulls.to_numpy(zero_copy_only=False)
    starts, lengths = bounds[:-1][~is_null], np.diff(bounds)[~is_null]
    if not len(starts):
        return True
    if (lengths == 0).any():
        return False
    minus = raw[starts] == 0x2D
    digits = lengths - minus
    if ((digits < 1) | (digits > 18)).any():
        return False
    if ((raw[starts + minus] == 0x30) & ((digits > 1) | minus)).any():
        return False  # a leading zero, or -0
    # Past that, every byte is a digit but the minus signs and the letters of each null.
    others = np.count_nonzero((raw[bounds[0] : bounds[-1]] - 0x30) >= 10)
    return bool(others == 4 * int(is_null.sum()) + int(minus.sum()))


def _json_column(lines: pa.Array) -> pa.ChunkedArray | None:
    """The one column of ``{"v": ...}`` lines as the JSON path decodes a column: pyarrow's
    inference, then :func:`promote_timestamps`. None unless it parses in one go to one
    column of one row per line (what the JSON path would do differently otherwise depends
    on the other columns), or when the type holds a struct (whose fields' order pyarrow
    may find differently among other columns)."""
    try:
        table = _parse(lines.cast(pa.binary()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(lines) or table.column_names != ["v"]:
        return None
    column = promote_timestamps(table).column(0)
    try:
        # pyarrow's reader can make a list array that is not valid (a block whose first
        # list starts with a null): which block does depends on the other columns.
        column.validate()
    except pa.ArrowInvalid:
        return None
    return None if _has_struct(column.type) else column


def _has_struct(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind) or pa.types.is_map(kind) or pa.types.is_union(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_struct(kind.value_type)
    return False


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
