"""Turn what a producer hands us into Arrow, place records on partitions, cut stored batches.

Everything after :func:`to_table` works on whole columns: partitioning hashes the key column
at once, grouping by partition is one stable argsort and one ``take``, and stored batches are
zero-copy slices cut at byte boundaries computed from the value/key offset buffers.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.errors import InvalidRecord, PartitionNotFound
from trunkline.hub import _template
from trunkline.hub._murmur2 import partitions_for_keys
from trunkline.hub._segment import store_schema
from trunkline.hub._types import HEADER_TYPE, TIMESTAMP_TYPE, Record, check_record_value

#: Records per stored batch are cut so that one batch holds about this many bytes.
BATCH_TARGET_BYTES = 4 << 20
_COLUMNS = ("key", "value", "timestamp", "headers", "partition")


def to_table(
    records: Sequence[Record] | pa.RecordBatch | pa.Table, now_ms: int, *, templates: bool = False
) -> pa.Table:
    """Normalise producer input to a table of key, value, timestamp, headers, partition.

    A template value column (:mod:`trunkline.hub._template`) is kept as it is with
    ``templates`` (a hub that stores templates), else rendered to bytes.
    """
    if isinstance(records, pa.RecordBatch):
        records = pa.Table.from_batches([records])
    if isinstance(records, pa.Table):
        return _from_arrow(records, now_ms, templates)
    if isinstance(records, str | bytes) or not isinstance(records, Sequence):
        raise InvalidRecord(
            "expected a sequence of Record objects (or mappings with a 'value'), an Arrow "
            f"RecordBatch or an Arrow Table, found {type(records).__name__}"
        )
    return _from_python(records, now_ms)


def _from_python(records: Sequence[Any], now_ms: int) -> pa.Table:
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    stamps: list[int] = []
    headers: list[list[dict[str, Any]]] = []
    parts: list[int | None] = []
    for i, item in enumerate(records):
        if isinstance(item, Mapping):
            unknown = set(item) - set(_COLUMNS)
            if unknown or "value" not in item:
                problem = (
                    f"unknown field(s) {', '.join(sorted(map(str, unknown)))}"
                    if unknown
                    else "no 'value' field"
                )
                raise InvalidRecord(
                    f"record {i}: {problem}; a record mapping has 'value' and optionally "
                    "'key', 'timestamp', 'headers', 'partition'"
                )
            item = Record(
                value=item["value"],
                key=item.get("key"),
                headers=tuple(_header_pairs(item.get("headers") or (), i)),
                timestamp=item.get("timestamp"),
                partition=item.get("partition"),
            )
        elif not isinstance(item, Record):
            raise InvalidRecord(
                f"record {i}: expected a Record or a mapping with a 'value', "
                f"found {type(item).__name__}"
            )
        keys.append(check_record_value(item.key, f"record {i} key"))
        values.append(check_record_value(item.value, f"record {i} value"))
        if item.timestamp is not None and (
            not isinstance(item.timestamp, int) or isinstance(item.timestamp, bool)
        ):
            raise InvalidRecord(
                f"record {i} timestamp: expected milliseconds since the epoch as an int, "
                f"found {type(item.timestamp).__name__}"
            )
        stamps.append(now_ms if item.timestamp is None else item.timestamp)
        headers.append(
            [
                {"key": k, "value": check_record_value(v, f"record {i} header {k!r}")}
                for k, v in item.headers
            ]
        )
        if item.partition is not None and (
            not isinstance(item.partition, int) or isinstance(item.partition, bool)
        ):
            raise InvalidRecord(
                f"record {i} partition: expected an int, found {type(item.partition).__name__}"
            )
        parts.append(item.partition)
    return pa.table(
        {
            "key": pa.array(keys, pa.binary()),
            "value": pa.array(values, pa.binary()),
            "timestamp": pa.array(stamps, pa.int64()).cast(TIMESTAMP_TYPE),
            "headers": pa.array(headers, HEADER_TYPE),
            "partition": pa.array(parts, pa.int32()),
        }
    )


def _header_pairs(headers: Any, i: int) -> list[tuple[str, Any]]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise InvalidRecord(
                f"record {i} headers: expected (str, bytes) pairs or a mapping, found {pair!r}"
            )
        out.append((pair[0], pair[1]))
    return out


def _binary_column(table: pa.Table, name: str) -> pa.ChunkedArray:
    column = table.column(name)
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_null(kind):
        return pa.chunked_array([pa.nulls(len(table), pa.binary())])
    if not (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary_view(kind)
        or pa.types.is_string_view(kind)
    ):
        raise InvalidRecord(f"column {name!r}: expected binary or string, found {kind}")
    return column if kind == pa.binary() else column.cast(pa.binary())


def _value_column(table: pa.Table, templates: bool) -> pa.ChunkedArray | pa.Array:
    column = table.column("value")
    if pa.types.is_struct(column.type):
        _template.check(column)
        return column if templates else _template.render(column)
    return _binary_column(table, "value")


def _from_arrow(table: pa.Table, now_ms: int, templates: bool = False) -> pa.Table:
    unknown = [c for c in table.column_names if c not in _COLUMNS]
    if unknown or "value" not in table.column_names:
        problem = f"unexpected column(s) {', '.join(unknown)}" if unknown else "no 'value' column"
        raise InvalidRecord(
            f"{problem}; an Arrow batch to produce has a 'value' column and optionally "
            "'key', 'timestamp', 'headers', 'partition'"
        )
    n = len(table)
    names = table.column_names
    key = _binary_column(table, "key") if "key" in names else pa.nulls(n, pa.binary())
    now = pa.scalar(now_ms, pa.int64()).cast(TIMESTAMP_TYPE)
    if "timestamp" in names:
        stamps = table.column("timestamp")
        if pa.types.is_integer(stamps.type):
            stamps = stamps.cast(pa.int64()).cast(TIMESTAMP_TYPE)
        elif pa.types.is_timestamp(stamps.type):
            stamps = stamps.cast(pa.timestamp("ms", tz=stamps.type.tz)).cast(TIMESTAMP_TYPE)
        else:
            raise InvalidRecord(
                f"column 'timestamp': expected int64 milliseconds or a timestamp, "
                f"found {stamps.type}"
            )
        stamps = pc.fill_null(stamps, now)
    else:
        stamps = pa.repeat(now, n) if n else pa.array([], TIMESTAMP_TYPE)
    if "headers" in names:
        headers = _headers_column(table.column("headers"))
    else:
        headers = _no_headers(n)
    if "partition" in names:
        parts = table.column("partition")
        if not pa.types.is_integer(parts.type):
            raise InvalidRecord(f"column 'partition': expected integers, found {parts.type}")
        parts = parts.cast(pa.int32())
    else:
        parts = pa.nulls(n, pa.int32())
    return pa.table(
        {
            "key": key,
            "value": _value_column(table, templates),
            "timestamp": stamps,
            "headers": headers,
            "partition": parts,
        }
    )


def _no_headers(n: int) -> pa.Array:
    """``n`` empty header lists: one zeroed offsets buffer, no child rows."""
    return pa.ListArray.from_arrays(
        pa.array(np.zeros(n + 1, dtype=np.int32)),
        pa.array([], HEADER_TYPE.value_type),
        type=HEADER_TYPE,
    )


def _headers_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if kind == HEADER_TYPE:
        return column
    chunks = []
    for chunk in column.chunks:
        if pa.types.is_map(kind):
            entries = pa.StructArray.from_arrays(
                [chunk.keys.cast(pa.string()), chunk.items.cast(pa.binary())], ["key", "value"]
            )
            chunk = pa.ListArray.from_arrays(chunk.offsets, entries, mask=chunk.is_null())
        try:
            chunks.append(chunk.cast(HEADER_TYPE))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidRecord(
                "column 'headers': expected list<struct<key: string, value: binary>> or "
                f"map<string, binary>, found {kind}"
            ) from None
    return pa.chunked_array(chunks, HEADER_TYPE)


@dataclass(frozen=True, slots=True)
class PartitionSlice:
    """The rows of a produce that go to one partition, in input order."""

    partition: int
    rows: pa.Table
    positions: npt.NDArray[np.int64]  # where these rows were in the input


def assign_partitions(
    table: pa.Table, partitions: int, explicit: int | None, sticky: int
) -> list[PartitionSlice]:
    """Split rows by partition: explicit, then the partition column, then murmur2(key),
    then the sticky partition for keyless rows."""
    n = len(table)
    if explicit is not None:
        _check_partition(explicit, partitions)
        return [PartitionSlice(explicit, table, np.arange(n, dtype=np.int64))]
    chosen = table.column("partition")
    keys = table.column("key")
    if chosen.null_count == n and (keys.null_count == n or partitions == 1):
        return [PartitionSlice(sticky, table, np.arange(n, dtype=np.int64))]
    target = partitions_for_keys(keys.combine_chunks(), partitions)
    target[target < 0] = sticky
    if chosen.null_count < n:
        pinned = chosen.combine_chunks()
        given = pinned.to_numpy(zero_copy_only=False)
        mask = np.asarray(pinned.is_valid())
        bad = mask & ((given < 0) | (given >= partitions))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _check_partition(int(given[i]), partitions, f"record {i}: ")
        target[mask] = given[mask].astype(np.int32)
    order = np.argsort(target, kind="stable")
    ordered = target[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [n]])
    if len(starts) == 1:
        return [PartitionSlice(int(ordered[0]), table, np.arange(n, dtype=np.int64))]
    taken = table.take(pa.array(order))
    return [
        PartitionSlice(int(ordered[s]), taken.slice(s, e - s), order[s:e].astype(np.int64))
        for s, e in zip(starts, ends, strict=True)
    ]


def _check_partition(partition: int, partitions: int, where: str = "") -> None:
    if not 0 <= partition < partitions:
        raise PartitionNotFound(
            f"{where}the topic has {partitions} partition(s) (0-{partitions - 1}); "
            f"partition {partition} does not exist"
        )


def _data_bytes(column: pa.Array) -> int:
    """Bytes of key or value data in a (single-chunk) binary column, from its offsets."""
    if len(column) == 0 or column.null_count == len(column):
        return 0
    if _template.is_template(column.type):
        # From the fragments' offsets, no per-row pass; tombstones count their texts too,
        # so this is an upper bound: enough to tell whether the rows need cutting.
        texts = sum(len(t.encode()) for t in _template.literals(column.type))
        return texts * len(column) + sum(_data_bytes(f) for f in _template.fragments(column))
    offsets = column.buffers()[1]
    first, last = np.frombuffer(offsets, dtype=np.int32)[
        [column.offset, column.offset + len(column)]
    ]
    return int(last - first)


def _lengths(column: pa.Array) -> npt.NDArray[np.int64]:
    if _template.is_template(column.type):
        return _template.rendered_lengths(column)
    lengths: npt.NDArray[np.int64] = pc.fill_null(pc.binary_length(column), 0).to_numpy()
    return lengths.astype(np.int64)


def stored_batches(rows: pa.Table, max_message_bytes: int) -> list[pa.RecordBatch]:
    """Cut a partition's rows into store-schema batches of about BATCH_TARGET_BYTES each."""
    n = len(rows)
    if n == 0:
        return []
    combined = rows.select(["timestamp", "key", "value", "headers"]).combine_chunks()
    columns = [column.chunk(0) for column in combined.columns]
    schema = store_schema(columns[2].type)
    target = min(BATCH_TARGET_BYTES, max_message_bytes)
    total = _data_bytes(columns[1]) + _data_bytes(columns[2])
    if total + 16 * n <= target:
        # The common case, one batch that fits: no per-row sizes needed.
        deltas = pa.array(np.arange(n, dtype=np.int32))
        return [pa.RecordBatch.from_arrays([deltas, *columns], schema=schema)]
    sizes = _lengths(columns[2]) + _lengths(columns[1]) + 16
    too_big = np.flatnonzero(sizes - 16 > max_message_bytes)
    if len(too_big):
        i = int(too_big[0])
        raise InvalidRecord(
            f"a record of {int(sizes[i] - 16)} bytes (key + value) exceeds the topic's "
            f"max_message_bytes ({max_message_bytes})"
        )
    cumulative = np.cumsum(sizes)
    cuts = [0]
    while cuts[-1] < n:
        done = cumulative[cuts[-1] - 1] if cuts[-1] else 0
        nxt = int(np.searchsorted(cumulative, done + target, side="right"))
        cuts.append(max(nxt, cuts[-1] + 1))
    cuts[-1] = n
    out = []
    for start, end in itertools.pairwise(cuts):
        deltas = pa.array(np.arange(end - start, dtype=np.int32))
        part = [column.slice(start, end - start) for column in columns]
        out.append(pa.RecordBatch.from_arrays([deltas, *part], schema=schema))
    return out
