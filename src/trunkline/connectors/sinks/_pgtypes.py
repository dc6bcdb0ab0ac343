"""Arrow types as PostgreSQL column types, and what fits into a column that exists already.

Tables the ``postgres`` sink creates take their column types from the Arrow types of the
decoded records; a column that exists keeps its type, and :func:`fit` says how values of an
incoming Arrow type go into it: as they are, cast client-side to text, checked value by
value, by widening the column, or not at all.
"""

from __future__ import annotations

from enum import Enum

import pyarrow as pa

__all__ = ["Fit", "column_type", "duckdb_type", "fit", "is_array", "staged_type"]

_LIST_ELEMENTS = {
    "bigint": "bigint[]",
    "double precision": "double precision[]",
    "boolean": "boolean[]",
    "text": "text[]",
    "timestamp with time zone": "timestamp with time zone[]",
    "timestamp without time zone": "timestamp without time zone[]",
    "date": "date[]",
}
_INTEGERS = ("smallint", "integer", "bigint")
_FLOATS = ("real", "double precision")
_TEXT = ("text", "character varying", "character", "name", "citext")
_JSON = ("json", "jsonb")


def column_type(kind: pa.DataType) -> str | None:
    """The PostgreSQL type of a new column for values of ``kind``; None for nulls only.

    Example:
        >>> column_type(pa.list_(pa.int64())), column_type(pa.struct([("a", pa.int8())]))
        ('bigint[]', 'jsonb')
    """
    if pa.types.is_null(kind):
        return None
    if pa.types.is_integer(kind):
        return "bigint"
    if pa.types.is_floating(kind):
        return "double precision"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    if pa.types.is_timestamp(kind):
        return "timestamp with time zone" if kind.tz else "timestamp without time zone"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_time(kind):
        return "time without time zone"
    if pa.types.is_decimal(kind):
        return f"numeric({kind.precision},{kind.scale})"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "bytea"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        element = column_type(kind.value_type)
        return _LIST_ELEMENTS.get(element or "text", "jsonb")
    return "jsonb"


def is_array(pg_type: str) -> bool:
    return pg_type.endswith("[]")


def staged_type(pg_type: str) -> str:
    """The staging table's type for a target column: arrays travel as JSON (their element
    text is taken apart in the merge), everything else as itself."""
    return "jsonb" if is_array(pg_type) else pg_type


def duckdb_type(pg_type: str) -> str | None:
    """A DuckDB type that accepts the same text as ``pg_type``, to check values before
    PostgreSQL sees them (None: not checked here)."""
    base = pg_type.split("(")[0].strip()
    if base in _INTEGERS:
        return "BIGINT"
    if base in _FLOATS or base == "numeric":
        return "DOUBLE"
    return {
        "boolean": "BOOLEAN",
        "timestamp with time zone": "TIMESTAMPTZ",
        "timestamp without time zone": "TIMESTAMP",
        "date": "DATE",
        "uuid": "UUID",
    }.get(base)


class Fit(Enum):
    """How incoming values go into an existing column."""

    AS_IS = "as is"
    TEXT = "as text"  # cast to text (JSON for lists and structs) before staging
    CHECK = "checked"  # text that must parse as the column's type: checked value by value
    WIDEN = "widen"  # an integer column that now receives decimals: becomes double
    NO = "incompatible"


def fit(incoming: pa.DataType, pg_type: str) -> Fit:
    """How values of ``incoming`` go into a column of ``pg_type``.

    Example:
        >>> fit(pa.float64(), "bigint"), fit(pa.string(), "date"), fit(pa.int64(), "text")
        (<Fit.WIDEN: 'widen'>, <Fit.CHECK: 'checked'>, <Fit.TEXT: 'as text'>)
    """
    base = pg_type.split("(")[0].strip()
    created = column_type(incoming)
    if created is None or created == pg_type or (created == "text" and base in _TEXT):
        return Fit.AS_IS
    nested = pa.types.is_list(incoming) or pa.types.is_struct(incoming)
    if base in _TEXT:
        return Fit.TEXT
    if base in _JSON:
        return Fit.TEXT if nested else Fit.CHECK
    if is_array(pg_type):
        return Fit.AS_IS if pa.types.is_list(incoming) else Fit.NO
    if nested:
        return Fit.NO
    if pa.types.is_string(incoming) or pa.types.is_large_string(incoming):
        return Fit.CHECK
    if pa.types.is_integer(incoming):
        return Fit.AS_IS if base in (*_INTEGERS, *_FLOATS, "numeric") else Fit.NO
    if pa.types.is_floating(incoming):
        if base in _INTEGERS:
            return Fit.WIDEN
        return Fit.AS_IS if base in (*_FLOATS, "numeric") else Fit.NO
    if pa.types.is_timestamp(incoming):
        return Fit.AS_IS if base.startswith("timestamp") or base == "date" else Fit.NO
    if pa.types.is_decimal(incoming):
        return Fit.AS_IS if base in (*_FLOATS, "numeric") else Fit.NO
    if pa.types.is_boolean(incoming):
        return Fit.AS_IS if base == "boolean" else Fit.NO
    return Fit.CHECK
