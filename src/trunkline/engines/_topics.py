"""What a topic's values hold as typed columns, and decoding them in bulk.

A topic with a data contract, or with a JSON Schema registered under ``<topic>-value``, reads
as typed columns: the contract's ``physicalType`` when it is a SQL type
(``decimal(15,2)``), else its ``logicalType``; a registry schema's JSON types and formats.
Values in Confluent's wire format are unframed first. Decoding is one pass of Arrow's JSON
reader over the newline-joined values, with only the needed fields in its schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from trunkline.contracts import unframe
from trunkline.engines._types import arrow_type
from trunkline.errors import EngineError

#: Columns every topic has beside its values' fields.
RECORD_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("_partition", pa.int32()),
    ("_offset", pa.int64()),
    ("_timestamp", pa.timestamp("ms", tz="UTC")),
    ("_key", pa.binary()),
)
#: The one value column of a topic whose values have no schema.
RAW_VALUE = ("value", pa.binary())
#: The fields of a Debezium change event.
ENVELOPE_FIELDS = frozenset({"before", "after", "op", "source"})

_LOGICAL: dict[str, pa.DataType] = {
    "string": pa.large_string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "time": pa.large_string(),
    "object": pa.large_string(),
    "array": pa.large_string(),
}
_JSON_FORMATS = {"date": pa.date32(), "date-time": pa.timestamp("us", tz="UTC")}


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """The typed fields of a topic's values (empty: raw bytes) and where they came from."""

    fields: tuple[tuple[str, pa.DataType], ...]
    origin: str  # "contract contracts/orders.yaml", "registry orders-value v2", "none"
    envelope: tuple[tuple[str, pa.DataType], ...] = ()  # Debezium ``after`` fields

    @property
    def columns(self) -> tuple[tuple[str, pa.DataType], ...]:
        """The columns a scan of the topic offers, values first."""
        return (self.fields or (RAW_VALUE,)) + RECORD_COLUMNS

    @property
    def state_columns(self) -> tuple[tuple[str, pa.DataType], ...]:
        """The columns of ``state(topic)``: the row images of the envelope."""
        return self.envelope


RAW = TopicLayout((), "none")


def contract_fields(properties: Sequence[Any]) -> tuple[tuple[str, pa.DataType], ...]:
    """Typed fields of a contract's properties (``name``, ``logical_type``, ``physical_type``)."""
    fields = []
    for prop in properties:
        kind = None
        if prop.physical_type:
            parsed = arrow_type(prop.physical_type)
            if not pa.types.is_large_string(parsed) or prop.physical_type.lower() in (
                "varchar",
                "text",
                "string",
            ):
                kind = parsed
        if kind is None:
            kind = _LOGICAL.get(prop.logical_type or "string", pa.large_string())
        fields.append((prop.name, kind))
    return tuple(fields)


def json_schema_fields(text: str) -> tuple[tuple[str, pa.DataType], ...]:
    """Typed fields of a JSON Schema's top-level object properties."""
    document = json.loads(text)
    properties = document.get("properties") if isinstance(document, dict) else None
    if not isinstance(properties, dict):
        return ()
    return tuple((name, _json_type(spec)) for name, spec in properties.items())


def _json_type(spec: Any) -> pa.DataType:
    if not isinstance(spec, dict):
        return pa.large_string()
    kind = spec.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind == "string":
        return _JSON_FORMATS.get(spec.get("format", ""), pa.large_string())
    if kind == "object" and isinstance(spec.get("properties"), dict):
        return pa.struct([(n, _json_type(s)) for n, s in spec["properties"].items()])
    return _LOGICAL.get(kind or "", pa.large_string()) if kind != "object" else pa.large_string()


def envelope_of(fields: tuple[tuple[str, pa.DataType], ...]) -> tuple[tuple[str, pa.DataType], ...]:
    """The row fields of a Debezium envelope (its ``after`` struct), else ()."""
    names = {name for name, _ in fields}
    if not names >= ENVELOPE_FIELDS:
        return ()
    after = dict(fields)["after"]
    if not pa.types.is_struct(after):
        return ()
    return tuple((f.name, f.type) for f in after)


#: Looks a topic's layout up (contract, registry); see ``trunkline.planner.session``.
LayoutLookup = Callable[[str], TopicLayout]


def decode(values: pa.Array, fields: Sequence[tuple[str, pa.DataType]], topic: str) -> pa.Table:
    """Decode JSON ``values`` (binary, framed or not, no nulls) into ``fields``.

    Raises:
        EngineError: a value is not a JSON object of the declared types.
    """
    schema = pa.schema(list(fields))
    if len(values) == 0:
        return schema.empty_table()
    payload, _, _ = unframe(values)
    # Parse dates from text after reading: the JSON reader only turns numbers into them.
    parse = pa.schema([_as_read(f) for f in schema])
    lines = pc.binary_join_element_wise(payload.cast(pa.binary()), pa.scalar(b"\n"), b"")
    data = _joined_buffer(lines)
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(block_size=1 << 24),
            parse_options=pj.ParseOptions(
                explicit_schema=parse, unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowInvalid as exc:
        raise EngineError(
            f"topic {topic!r}: values do not decode as JSON objects of the declared types: {exc}",
            engine="hub",
        ) from exc
    if table.num_rows != len(payload):
        raise EngineError(
            f"topic {topic!r}: {len(payload)} values decoded to {table.num_rows} rows; "
            "values must be one JSON object each, on one line",
            engine="hub",
        )
    return _convert(table.select(schema.names), schema)


def _as_read(field: pa.Field) -> pa.Field:
    if pa.types.is_date(field.type):
        return pa.field(field.name, pa.string())
    if pa.types.is_struct(field.type):
        return pa.field(field.name, pa.struct([_as_read(f) for f in field.type]))
    return field


def _convert(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for index, field in enumerate(schema):
        column = table.column(index)
        if column.type != field.type:
            column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _joined_buffer(lines: pa.Array) -> pa.Buffer:
    """The data buffer of a binary array: its values end to end."""
    lines = lines.cast(pa.large_binary()) if pa.types.is_binary(lines.type) else lines
    offsets = lines.buffers()[1]
    data = lines.buffers()[2]
    assert offsets is not None and data is not None
    first = pa.Array.from_buffers(pa.int64(), 2, [None, offsets], offset=lines.offset)
    start = first[0].as_py()
    end_index = lines.offset + len(lines)
    end = pa.Array.from_buffers(pa.int64(), end_index + 1, [None, offsets])[end_index].as_py()
    return data.slice(start, end - start)
