"""PostgreSQL values, as the server writes them in text, turned into JSON a column at a time.

Both halves of the ``postgres_cdc`` source see each value in PostgreSQL's text format: the
snapshot reads ``column::text`` (straight into Arrow), and pgoutput sends text. One converter
for both means a row reads the same whether it came from the snapshot or from the stream.
Every connection of the source sets the same output settings (:data:`SESSION_SETTINGS`), so
the text itself is the same too.

Types map to JSON as Debezium's JSON converter writes them with ``decimal.handling.mode=
string``, ``binary.handling.mode=hex`` and ISO-8601 times:

============================  ==========================================================
integers, ``oid``             numbers
``real``, ``double``          numbers; ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` as text
``numeric``, ``money``        text, exactly as stored (``"12.50"``): JSON numbers would be
                              read back as binary floating point
``boolean``                   ``true`` / ``false``
``timestamptz``               ``"2024-05-01T12:00:00.123456Z"`` (UTC)
``timestamp``                 ``"2024-05-01T12:00:00.123456"``
``bytea``                     hex digits, ``"deadbeef"``
``json``, ``jsonb``           the JSON document as text (Debezium's ``io.debezium.data.Json``)
arrays                        JSON arrays of their elements, converted the same way
everything else               its text: ``uuid``, enums, ``date``, ``time``, ``interval``...
============================  ==========================================================

Per-value Python runs only for array columns; every other column is converted with
vectorised Arrow kernels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.connectors._bytes import needs_json_escape
from trunkline.connectors.sinks._changes import UNAVAILABLE

__all__ = [
    "SESSION_SETTINGS",
    "UNCHANGED",
    "Kind",
    "Part",
    "PgType",
    "json_part",
    "json_values",
    "parse_array",
    "pg_type",
    "quote_json",
]

#: Output settings every connection of the source uses, so that text is the same everywhere.
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}

#: Stands for an unchanged TOASTed value in text from pgoutput (PostgreSQL text never
#: holds a NUL byte, so this cannot be a real value).
UNCHANGED = b"\x00u"


class Kind(StrEnum):
    """How a column's text becomes JSON."""

    NUMBER = "number"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    TIMESTAMPTZ = "timestamptz"
    TIMESTAMP = "timestamp"
    BYTEA = "bytea"
    ARRAY = "array"


@dataclass(frozen=True, slots=True)
class PgType:
    """A column type: its name (``format_type``) and how its values become JSON."""

    oid: int
    name: str
    kind: Kind
    element: Kind | None = None
    delimiter: str = ","
    #: Whether its text may hold characters JSON escapes (quotes, backslashes, controls).
    escapes: bool = True


_SCALARS: dict[int, Kind] = {
    20: Kind.NUMBER,  # int8
    21: Kind.NUMBER,  # int2
    23: Kind.NUMBER,  # int4
    26: Kind.NUMBER,  # oid
    700: Kind.FLOAT,
    701: Kind.FLOAT,
    16: Kind.BOOL,
    1184: Kind.TIMESTAMPTZ,
    1114: Kind.TIMESTAMP,
    17: Kind.BYTEA,
}
#: Types whose text never needs JSON escaping: numeric, money, uuid, date, time, timetz,
#: interval, inet, cidr, macaddr, macaddr8, bit, varbit, timestamps, bytea (hex), pg_lsn.
_PLAIN_TEXT = {1700, 790, 2950, 1082, 1083, 1266, 1186, 869, 650, 829, 774, 1560, 1562}
_PLAIN_TEXT |= {1114, 1184, 17, 3220, 20, 21, 23, 26, 700, 701, 16}


def pg_type(
    oid: int,
    name: str,
    *,
    base_oid: int | None = None,
    element_oid: int | None = None,
    delimiter: str = ",",
) -> PgType:
    """The :class:`PgType` of a column, from ``pg_type`` facts.

    ``base_oid`` is a domain's base type; ``element_oid`` an array's element type (already
    resolved through domains).

    Example:
        >>> pg_type(1007, "integer[]", element_oid=23)
        PgType(oid=1007, name='integer[]', kind=<Kind.ARRAY: 'array'>, element=<Kind.NUMBER: \
'number'>, delimiter=',')
    """
    if element_oid:
        element = _SCALARS.get(element_oid, Kind.STRING)
        return PgType(oid, name, Kind.ARRAY, element, delimiter)
    base = base_oid or oid
    return PgType(oid, name, _SCALARS.get(base, Kind.STRING), escapes=base not in _PLAIN_TEXT)


# Scalars ------------------------------------------------------------------------------

_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_NEEDS_ESCAPE = r'[\\"\x00-\x1f]'
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_QUOTE = pa.scalar('"', pa.string())
_NULL = pa.scalar("null", pa.string())
_NON_FINITE = pa.array(["NaN", "Infinity", "-Infinity"], pa.string())
_TIMESTAMPTZ = r"^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)\+00$"
_TIMESTAMP = r"^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)$"


def quote_json(texts: pa.Array) -> pa.Array:
    """Each text as a JSON string literal (nulls stay null).

    Example:
        >>> quote_json(pa.array(['a"b', None, "c\\nd"])).to_pylist()
        ['"a\\\\"b"', None, '"c\\\\nd"']
    """
    if len(texts) and pc.any(pc.match_substring_regex(texts, _NEEDS_ESCAPE)).as_py():
        if pc.any(pc.match_substring_regex(texts, _CONTROL)).as_py():
            # Rare control characters: the standard library spells them as \\u escapes.
            return pa.array(
                [
                    None if t is None else json.dumps(t, ensure_ascii=False)
                    for t in texts.to_pylist()
                ],
                pa.string(),
            )
        for raw, escaped in _ESCAPES:
            texts = pc.replace_substring(texts, raw, escaped)
    return pc.binary_join_element_wise(_QUOTE, texts, _QUOTE, "")


def _as_is(texts: pa.Array) -> pa.Array:
    return texts


def _float(texts: pa.Array) -> pa.Array:
    special = pc.is_in(texts, value_set=_NON_FINITE)
    if not pc.any(special).as_py():
        return texts
    return pc.if_else(special, quote_json(texts), texts)


def _bool(texts: pa.Array) -> pa.Array:
    # The output function writes t/f, a ::text cast true/false; NULL stays NULL.
    return pc.if_else(pc.or_(pc.equal(texts, "t"), pc.equal(texts, "true")), "true", "false")


def _timestamptz(texts: pa.Array) -> pa.Array:
    return quote_json(pc.replace_substring_regex(texts, _TIMESTAMPTZ, r"\1T\2Z"))


def _timestamp(texts: pa.Array) -> pa.Array:
    return quote_json(pc.replace_substring_regex(texts, _TIMESTAMP, r"\1T\2"))


def _bytea(texts: pa.Array) -> pa.Array:
    return quote_json(pc.utf8_slice_codeunits(texts, 2))  # without the leading \x


_CONVERTERS: dict[Kind, Callable[[pa.Array], pa.Array]] = {
    Kind.NUMBER: _as_is,
    Kind.FLOAT: _float,
    Kind.BOOL: _bool,
    Kind.STRING: quote_json,
    Kind.TIMESTAMPTZ: _timestamptz,
    Kind.TIMESTAMP: _timestamp,
    Kind.BYTEA: _bytea,
}


def json_values(texts: pa.Array, kind: PgType) -> pa.Array:
    """The JSON of each value of a column given as text; SQL NULL becomes ``null``.

    Example:
        >>> t = pg_type(1184, "timestamp with time zone")
        >>> json_values(pa.array(["2024-05-01 12:00:00.5+00", None]), t).to_pylist()
        ['"2024-05-01T12:00:00.5Z"', 'null']
    """
    if not pa.types.is_string(texts.type):
        texts = texts.cast(pa.string())
    if kind.kind is Kind.ARRAY:
        out = _arrays(texts, kind.element or Kind.STRING, kind.delimiter)
    else:
        out = _CONVERTERS[kind.kind](texts)
    return pc.fill_null(out, _NULL) if out.null_count else out


@dataclass(frozen=True, slots=True)
class Part:
    """A column's share of a JSON object: ``left + value + right`` per row, where ``left``
    and ``right`` are the same for every row and go into the literal text around it."""

    values: pa.Array
    left: str = ""
    right: str = ""


_PLACEHOLDER = pa.scalar(json.dumps(UNAVAILABLE), pa.string())
_STRINGY = (Kind.STRING, Kind.BYTEA, Kind.TIMESTAMP, Kind.TIMESTAMPTZ)


def json_part(texts: pa.Array, kind: PgType, unchanged: np.ndarray | None = None) -> Part:
    """Like :func:`json_values`, but leaves constant quotes to the surrounding text when a
    column allows it (no nulls, nothing to escape), saving a pass over its values.
    ``unchanged`` marks unchanged TOASTed values, which become Debezium's placeholder.

    Example:
        >>> part = json_part(pa.array(["a", "b"]), pg_type(25, "text"))
        >>> part.left, part.values.to_pylist(), part.right
        ('"', ['a', 'b'], '"')
    """
    if not pa.types.is_string(texts.type):
        texts = texts.cast(pa.string())
    if unchanged is not None:
        mask = pa.array(unchanged)
        kept = pc.if_else(mask, pa.scalar(None, pa.string()), texts)
        return Part(pc.if_else(mask, _PLACEHOLDER, json_values(kept, kind)))
    if kind.kind is Kind.NUMBER:
        return Part(pc.fill_null(texts, _NULL) if texts.null_count else texts)
    if kind.kind not in _STRINGY or texts.null_count:
        return Part(json_values(texts, kind))
    right = '"'
    if kind.kind is Kind.TIMESTAMPTZ:
        texts, right = _utc_fast(texts)
    elif kind.kind is Kind.TIMESTAMP:
        texts = _local_fast(texts)
    elif kind.kind is Kind.BYTEA:
        texts = pc.utf8_slice_codeunits(texts, 2)
    if kind.escapes and needs_json_escape(texts):
        if right != '"':
            texts = pc.binary_join_element_wise(texts, right[:-1], "")
        return Part(quote_json(texts))
    return Part(texts, '"', right)


def _utc_fast(texts: pa.Array) -> tuple[pa.Array, str]:
    """``2024-05-01 12:00:00.5+00`` as ``2024-05-01T12:00:00.5`` with ``Z"`` to follow,
    when every value has that shape (four-digit years, UTC); else the regular way."""
    lengths = pc.binary_length(texts)
    regular = pc.and_(
        pc.ends_with(texts, "+00"),
        pc.and_(
            pc.equal(
                pc.binary_slice(texts.view(pa.binary()), 10, 11), pa.scalar(b" ", pa.binary())
            ),
            pc.greater_equal(lengths, 22),
        ),
    )
    if pc.all(regular).as_py():
        body = pc.binary_replace_slice(pc.utf8_slice_codeunits(texts, 0, -3), 10, 11, "T")
        return body, 'Z"'
    # Unusual values (infinity, BC, years past 9999): the regular expression.
    return pc.replace_substring_regex(texts, _TIMESTAMPTZ, r"\1T\2Z"), '"'


def _local_fast(texts: pa.Array) -> pa.Array:
    regular = pc.equal(
        pc.binary_slice(texts.view(pa.binary()), 10, 11), pa.scalar(b" ", pa.binary())
    )
    if pc.all(regular).as_py():
        return pc.binary_replace_slice(texts, 10, 11, "T")
    return pc.replace_substring_regex(texts, _TIMESTAMP, r"\1T\2")


# Arrays -------------------------------------------------------------------------------

_SCALAR_JSON: dict[Kind, Callable[[str], str]] = {
    Kind.NUMBER: lambda s: s,
    Kind.FLOAT: lambda s: json.dumps(s) if s in ("NaN", "Infinity", "-Infinity") else s,
    Kind.BOOL: lambda s: "true" if s in ("t", "true") else "false",
    Kind.STRING: json.dumps,
    Kind.TIMESTAMPTZ: lambda s: json.dumps(re.sub(_TIMESTAMPTZ, r"\1T\2Z", s)),
    Kind.TIMESTAMP: lambda s: json.dumps(re.sub(_TIMESTAMP, r"\1T\2", s)),
    Kind.BYTEA: lambda s: json.dumps(s[2:]),
}


def _arrays(texts: pa.Array, element: Kind, delimiter: str) -> pa.Array:
    convert = _SCALAR_JSON[element]

    def to_json(value: list[object]) -> str:
        parts = [
            "null" if v is None else to_json(v) if isinstance(v, list) else convert(str(v))
            for v in value
        ]
        return "[" + ",".join(parts) + "]"

    return pa.array(
        [None if t is None else to_json(parse_array(t, delimiter)) for t in texts.to_pylist()],
        pa.string(),
    )


def parse_array(text: str, delimiter: str = ",") -> list[object]:
    """A PostgreSQL array literal as nested lists of element texts (None for NULL).

    Example:
        >>> parse_array('{1,NULL,"a \\\\"b\\\\"",{x,y}}')
        ['1', None, 'a "b"', ['x', 'y']]
    """
    if text.startswith("["):  # explicit bounds: [0:2]={...}
        text = text[text.index("=") + 1 :]
    if not text.startswith("{"):
        raise ValueError(f"not an array literal: {text[:40]!r}")
    value, end = _parse_level(text, 0, delimiter)
    if text[end:].strip():
        raise ValueError(f"unexpected text after the array: {text[end : end + 20]!r}")
    return value


def _parse_level(text: str, pos: int, delimiter: str) -> tuple[list[object], int]:
    items: list[object] = []
    pos += 1  # the opening brace
    if text[pos] == "}":
        return items, pos + 1
    while True:
        char = text[pos]
        item: object
        if char == "{":
            item, pos = _parse_level(text, pos, delimiter)
        elif char == '"':
            chars = []
            pos += 1
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                chars.append(text[pos])
                pos += 1
            item = "".join(chars)
            pos += 1
        else:
            start = pos
            chars = []
            while text[pos] not in (delimiter, "}"):
                if text[pos] == "\\":
                    pos += 1
                chars.append(text[pos])
                pos += 1
            raw = "".join(chars).strip()
            item = None if raw.upper() == "NULL" and "\\" not in text[start:pos] else raw
        items.append(item)
        char = text[pos]
        pos += 1
        if char == "}":
            return items, pos
        if char != delimiter:
            raise ValueError(f"expected {delimiter!r} or '}}' at {pos - 1} of {text[:40]!r}")
