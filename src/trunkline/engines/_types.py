"""Column types between the catalog's text, sqlglot, Arrow and each engine's results."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp
from sqlglot.errors import ParseError

T = exp.DataType.Type

_SIMPLE: dict[Any, pa.DataType] = {
    T.BOOLEAN: pa.bool_(),
    T.TINYINT: pa.int8(),
    T.SMALLINT: pa.int16(),
    T.INT: pa.int32(),
    T.BIGINT: pa.int64(),
    T.UTINYINT: pa.uint8(),
    T.USMALLINT: pa.uint16(),
    T.UINT: pa.uint32(),
    T.UBIGINT: pa.uint64(),
    T.FLOAT: pa.float32(),
    T.DOUBLE: pa.float64(),
    T.DATE: pa.date32(),
    T.TIMESTAMP: pa.timestamp("us"),
    # DuckDB's TIMESTAMP (no time zone) builds as TIMESTAMPNTZ in sqlglot.
    T.TIMESTAMPNTZ: pa.timestamp("us"),
    T.DATETIME: pa.timestamp("us"),
    T.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    T.TIMESTAMPLTZ: pa.timestamp("us", tz="UTC"),
    T.TIME: pa.time64("us"),
    T.VARCHAR: pa.string(),
    T.CHAR: pa.string(),
    T.NCHAR: pa.string(),
    T.NVARCHAR: pa.string(),
    T.TEXT: pa.string(),
    T.UUID: pa.string(),
    T.JSON: pa.string(),
    T.JSONB: pa.string(),
    T.BINARY: pa.binary(),
    T.VARBINARY: pa.binary(),
    T.BLOB: pa.binary(),
    T.INTERVAL: pa.month_day_nano_interval(),
}


def arrow_type(text: str, dialect: str = "duckdb") -> pa.DataType:
    """The Arrow type of a column type as a system writes it (``numeric(15,2)``, ``VARCHAR``).

    Unknown types read as text: the value still arrives, the planner only loses precision in
    its estimates.

    Example:
        >>> arrow_type("numeric(15,2)", "postgres")
        Decimal128Type(decimal128(15, 2))
        >>> arrow_type("character varying", "postgres")
        DataType(large_string)
    """
    try:
        built = exp.DataType.build(text, dialect=dialect)
    except (ParseError, ValueError):
        return pa.large_string()
    return _from_sqlglot(built)


def _from_sqlglot(built: exp.DataType) -> pa.DataType:
    kind = built.this
    if kind in (T.DECIMAL, T.BIGDECIMAL):
        params = [int(p.name) for p in built.expressions if p.name.isdigit()]
        precision = params[0] if params else 38
        scale = params[1] if len(params) > 1 else 0
        if not params:
            return pa.float64()  # an unconstrained numeric: no fixed scale to keep
        return pa.decimal128(min(precision, 38), scale)
    if kind in (T.VARCHAR, T.TEXT, T.CHAR, T.NCHAR, T.NVARCHAR):
        return pa.large_string()
    if kind == T.ARRAY and built.expressions:
        return pa.list_(_from_sqlglot(built.expressions[0]))
    return _SIMPLE.get(kind, pa.large_string())


def sql_type(kind: pa.DataType) -> str:
    """The type as DuckDB (trunkline's SQL) writes it; what the catalog stores for files
    and topics.

    Example:
        >>> sql_type(pa.decimal128(15, 2)), sql_type(pa.large_string())
        ('DECIMAL(15,2)', 'VARCHAR')
    """
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision},{kind.scale})"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "VARCHAR"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"{sql_type(kind.value_type)}[]"
    if pa.types.is_struct(kind):
        inner = ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in kind)
        return f"STRUCT({inner})"
    names = {
        pa.bool_(): "BOOLEAN",
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT",
        pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER",
        pa.uint64(): "UBIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.date32(): "DATE",
        pa.binary(): "BLOB",
        pa.large_binary(): "BLOB",
    }
    return names.get(kind, "VARCHAR")


def same_kind(left: pa.DataType, right: pa.DataType) -> bool:
    """Whether two column types hold the same values (string widths and units aside)."""
    if left == right:
        return True
    text = (pa.types.is_string, pa.types.is_large_string)
    if any(f(left) for f in text) and any(f(right) for f in text):
        return True
    if pa.types.is_integer(left) and pa.types.is_integer(right):
        return True
    if pa.types.is_timestamp(left) and pa.types.is_timestamp(right):
        return bool(left.tz) == bool(right.tz)
    return False


def width(kind: pa.DataType) -> float:
    """Typical bytes per value, for estimates when no statistic says better."""
    if pa.types.is_decimal(kind):
        return 16.0
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return 24.0
    try:
        return max(1.0, float(kind.bit_width) / 8)
    except ValueError:
        return 24.0


def decode_numeric(table: pa.Table) -> pa.Table:
    """Turn PostgreSQL numerics that arrive as text (ADBC's opaque type) into decimals.

    The precision and scale come from the column's ``POSTGRESQL:typmod`` metadata; a
    numeric without a declared scale becomes a float64.
    """
    columns, fields = [], []
    for index, column_field in enumerate(table.schema):
        column = table.column(index)
        meta = column_field.metadata or {}
        if meta.get(b"POSTGRESQL:type") == b"numeric" and not pa.types.is_decimal(
            column_field.type
        ):
            storage = column.cast(pa.string()) if _is_extension(column.type) else column
            typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1") or -1)
            if typmod >= 4:
                precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
                kind: pa.DataType = pa.decimal128(min(precision, 38), scale)
            else:
                kind = pa.float64()
            column = pc.cast(_storage(storage), kind)
            column_field = pa.field(column_field.name, kind)
        else:
            column_field = pa.field(column_field.name, column_field.type)
        columns.append(column)
        fields.append(column_field)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _is_extension(kind: pa.DataType) -> bool:
    return isinstance(kind, pa.ExtensionType) or hasattr(kind, "storage_type")


def _storage(column: pa.ChunkedArray) -> pa.ChunkedArray:
    chunks = [c.storage if hasattr(c, "storage") else c for c in column.chunks]
    return pa.chunked_array(chunks, type=chunks[0].type if chunks else pa.string())
