"""Request bodies of the ``http`` source: a JSON array of objects, or JSON lines, to records.

Both shapes are read by DuckDB a whole body at a time (``CAST(body AS JSON[])`` for an
array; one JSON value per line for JSON lines), which also extracts the key field and
writes each object back as compact JSON. Only when something is wrong is the body read
again with Python's ``json``, to say exactly where: which element or line, at which
column, and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["BadBody", "parse_body"]

#: How DuckDB's ``json_type`` names what a value is, as people say it.
_KINDS: Mapping[str, str] = {
    "ARRAY": "an array",
    "VARCHAR": "a string",
    "BIGINT": "a number",
    "UBIGINT": "a number",
    "DOUBLE": "a number",
    "BOOLEAN": "true or false",
    "NULL": "null",
}


class BadBody(Exception):
    """The body cannot be written; the message says where and what was expected."""


def parse_body(body: bytes, key: str | None, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The records of a request body: ``value`` (compact JSON) and, with ``key``, ``key``.

    Raises:
        BadBody: the body is empty, not UTF-8, not JSON, or not objects; or an object has
            no ``key`` field. Nothing of such a body is written.

    Example:
        >>> con = duckdb.connect()
        >>> parse_body(b'[{"id": 1}, {"id": 2}]', "id", con).to_pylist()
        [{'value': b'{"id":1}', 'key': b'1'}, {'value': b'{"id":2}', 'key': b'2'}]
        >>> parse_body(b'{"id": 1}\\n{id: 2}\\n', None, con)
        Traceback (most recent call last):
        ...
        trunkline.connectors.sources._body.BadBody: line 2, column 2: invalid JSON: \
Expecting property name enclosed in double quotes
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the body is not UTF-8: byte {exc.start} cannot be decoded") from None
    text = text.removeprefix("\ufeff")
    stripped = text.lstrip()
    if not stripped:
        raise BadBody("the body is empty: expected a JSON array of objects, or JSON lines")
    if stripped.startswith("["):
        return _array(text, key, con)
    return _lines(body, key, con)


def _key_path(key: str | None) -> str:
    # Without a key field the path names nothing (and its result is never read).
    return "$." + json.dumps(key) if key else "$.__trunkline_no_key"


def _array(text: str, key: str | None, con: duckdb.DuckDBPyConnection) -> pa.Table:
    try:
        found = con.execute(
            "SELECT CAST(e AS VARCHAR) AS value, json_type(e) AS kind, "
            "json_extract_string(e, $path) AS key "
            "FROM (SELECT unnest(CAST($body::VARCHAR AS JSON[])) AS e)",
            {"body": text, "path": _key_path(key)},
        ).to_arrow_table()
    except duckdb.Error:
        raise BadBody(_array_problem(text)) from None
    _check(found, key, "element {}")
    return _records(found, key)


def _lines(body: bytes, key: str | None, con: duckdb.DuckDBPyConnection) -> pa.Table:
    lines = pc.list_flatten(pc.split_pattern(pa.array([body], pa.binary()), b"\n"))
    lines = pc.utf8_trim_whitespace(lines.cast(pa.string()))
    numbers = np.flatnonzero(np.asarray(pc.not_equal(lines, "").fill_null(False))) + 1
    lines = pc.filter(lines, pc.not_equal(lines, ""))
    con.register("__lines", pa.table({"l": lines}))
    try:
        # A plain projection keeps the lines' order.
        found = con.execute(
            "SELECT CASE WHEN json_valid(l) THEN CAST(json(l) AS VARCHAR) END AS value, "
            "CASE WHEN json_valid(l) THEN json_type(l) END AS kind, "
            "CASE WHEN json_valid(l) THEN json_extract_string(l, $path) END AS key "
            "FROM __lines",
            {"path": _key_path(key)},
        ).to_arrow_table()
    finally:
        con.unregister("__lines")
    invalid = np.flatnonzero(np.asarray(found.column("value").is_null()))
    if len(invalid):
        first = int(invalid[0])
        raise BadBody(_line_problem(str(lines[first].as_py()), int(numbers[first])))
    _check(found, key, "line {}", numbers)
    return _records(found, key)


def _check(found: pa.Table, key: str | None, where: str, numbers: np.ndarray | None = None) -> None:
    """Every value an object, every object with its key: else the first one that is not."""

    def place(i: int) -> str:
        return where.format(int(numbers[i]) if numbers is not None else i + 1)

    kinds = found.column("kind")
    not_objects = np.flatnonzero(np.asarray(pc.not_equal(kinds, "OBJECT").fill_null(True)))
    if len(not_objects):
        i = int(not_objects[0])
        kind = _KINDS.get(str(kinds[i].as_py()), str(kinds[i].as_py()).lower())
        more = f" ({len(not_objects)} values are not objects)" if len(not_objects) > 1 else ""
        raise BadBody(f"{place(i)}: expected a JSON object, found {kind}{more}")
    if key is not None:
        missing = np.flatnonzero(np.asarray(found.column("key").is_null()))
        if len(missing):
            i = int(missing[0])
            more = f" ({len(missing)} objects lack it)" if len(missing) > 1 else ""
            raise BadBody(
                f"{place(i)}: no value for {key!r}, the field that keys the records{more}"
            )


def _records(found: pa.Table, key: str | None) -> pa.Table:
    columns = {"value": found.column("value").cast(pa.binary())}
    if key is not None:
        columns["key"] = found.column("key").cast(pa.binary())
    return pa.table(columns)


def _array_problem(text: str) -> str:
    """Where a JSON array body goes wrong, worded for the client (the slow path)."""
    decoder = json.JSONDecoder()
    position = len(text) - len(text.lstrip()) + 1
    element = 0
    where = "element 1"

    def skip_space() -> None:
        nonlocal position
        while position < len(text) and text[position].isspace():
            position += 1

    try:
        skip_space()
        if text.startswith("]", position):
            position += 1
        else:
            while True:
                element += 1
                where = f"element {element}"
                _, position = decoder.raw_decode(text, position)
                where = f"after element {element}"
                skip_space()
                if text.startswith(",", position):
                    position += 1
                    skip_space()
                    continue
                if text.startswith("]", position):
                    position += 1
                    break
                raise json.JSONDecodeError("Expecting ',' delimiter or ']'", text, position)
        where = "after the array"
        skip_space()
        if position < len(text):
            raise json.JSONDecodeError("Extra data", text, position)
    except json.JSONDecodeError as exc:
        return f"{where} (line {exc.lineno}, column {exc.colno}): invalid JSON: {exc.msg}"
    return "invalid JSON array"


def _line_problem(line: str, number: int) -> str:
    try:
        json.loads(line)
    except json.JSONDecodeError as exc:
        return f"line {number}, column {exc.colno}: invalid JSON: {exc.msg}"
    return f"line {number}: invalid JSON"
