"""Request bodies of the http source: what is accepted, and where a bad one goes wrong."""

from __future__ import annotations

import duckdb
import pytest

from trunkline.connectors.sources._body import BadBody, parse_body


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@pytest.mark.parametrize(
    ("body", "key", "values", "keys"),
    [
        (
            b'[{"id": 1, "a": "x"}, {"id": 2}]',
            "id",
            [b'{"id":1,"a":"x"}', b'{"id":2}'],
            [b"1", b"2"],
        ),
        (b'{"id": "a"}\r\n\n  {"id": "b"}\n', "id", [b'{"id":"a"}', b'{"id":"b"}'], [b"a", b"b"]),
        (b'\xef\xbb\xbf[{"n": 1}]', None, [b'{"n":1}'], None),
        (b"[]", "id", [], []),
        (b'{"my key": {"x": 1}}', "my key", [b'{"my key":{"x":1}}'], [b'{"x":1}']),
    ],
)
def test_accepted(
    con: duckdb.DuckDBPyConnection,
    body: bytes,
    key: str | None,
    values: list[bytes],
    keys: list[bytes] | None,
) -> None:
    records = parse_body(body, key, con)
    assert records.column("value").to_pylist() == values
    assert (records.column("key").to_pylist() if "key" in records.column_names else None) == keys


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is empty"),
        (b"\xff", "not UTF-8: byte 0"),
        (b'{"id": 1}\n{"id": 2,, }', "line 2, column 10: invalid JSON: Expecting property name"),
        (b'{"id": 1}\n"text"\n', "line 2: expected a JSON object, found a string"),
        (b'[{"id": 1}, [1]]', "element 2: expected a JSON object, found an array"),
        (b'[{"id": 1},\n {"id": tru}]', "element 2 (line 2, column 9): invalid JSON"),
        (b'[{"id": 1} {"id": 2}]', "after element 1 (line 1, column 12)"),
        (b'[{"id": 1}] x', "after the array (line 1, column 13): invalid JSON: Extra data"),
        (b'[{"id": 1}, {"x": 1}, {"x": 2}]', "element 2: no value for 'id', the field that keys"),
        (b'[{"id": null}]', "element 1: no value for 'id'"),
    ],
)
def test_refused_with_where_and_what(
    con: duckdb.DuckDBPyConnection, body: bytes, message: str
) -> None:
    with pytest.raises(BadBody) as caught:
        parse_body(body, "id", con)
    assert message in str(caught.value)
