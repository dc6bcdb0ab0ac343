"""The parts of the ``postgres_cdc`` source that need no server: pgoutput decoding (one
message at a time and vectorised), values to JSON, settings."""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from trunkline.connectors.sinks._pgtypes import Fit, column_type, fit
from trunkline.connectors.sources._pgconfig import PostgresCdcConfig, split_table
from trunkline.connectors.sources._pgoutput import (
    Begin,
    Change,
    Commit,
    Decoder,
    LogicalMessage,
    MalformedMessage,
    Relation,
    Truncate,
    format_lsn,
    parse_lsn,
)
from trunkline.connectors.sources._pgtuples import TupleError, parse_changes
from trunkline.connectors.sources._pgvalues import (
    UNCHANGED,
    json_part,
    json_values,
    parse_array,
    pg_type,
)

# -- building pgoutput messages -------------------------------------------------------------


def tuple_data(values: list[bytes | None]) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == UNCHANGED:
            out += b"u"
        else:
            out += b"t" + struct.pack(">i", len(value)) + value
    return out


def insert(relation: int, values: list[bytes | None]) -> bytes:
    return b"I" + struct.pack(">I", relation) + b"N" + tuple_data(values)


def update(
    relation: int,
    new: list[bytes | None],
    old: list[bytes | None] | None = None,
    kind: bytes = b"O",
) -> bytes:
    head = b"U" + struct.pack(">I", relation)
    if old is not None:
        head += kind + tuple_data(old)
    return head + b"N" + tuple_data(new)


def delete(relation: int, old: list[bytes | None], kind: bytes = b"K") -> bytes:
    return b"D" + struct.pack(">I", relation) + kind + tuple_data(old)


def xlog(payload: bytes, lsn: int) -> bytes:
    return b"w" + struct.pack(">QQq", lsn, lsn + 100, 0) + payload


def relation_message(oid: int, columns: list[tuple[str, int, bool]]) -> bytes:
    out = b"R" + struct.pack(">I", oid) + b"public\x00orders\x00" + b"d"
    out += struct.pack(">h", len(columns))
    for name, type_oid, key in columns:
        out += bytes([1 if key else 0]) + name.encode() + b"\x00" + struct.pack(">Ii", type_oid, -1)
    return out


# -- LSNs and single messages --------------------------------------------------------------


def test_lsn_text_round_trips() -> None:
    for lsn in (0, 1, 0xFFFFFFFF, 0x1_0000_0000, 97500059720, 2**63 + 5):
        assert parse_lsn(format_lsn(lsn)) == lsn


def test_decoder_reads_every_message_kind() -> None:
    decoder = Decoder()
    relation = decoder.decode(relation_message(16384, [("id", 20, True), ("name", 25, False)]), 1)
    assert relation == Relation(
        16384, "public", "orders", "d", ("id", "name"), (20, 25), (True, False)
    )
    begin = decoder.decode(b"B" + struct.pack(">QqI", 500, 0, 42), 2)
    assert begin == Begin(500, 946_684_800_000, 42)
    assert decoder.decode(insert(16384, [b"1", None]), 3) == Change(
        "c", 16384, "", None, [b"1", None]
    )
    assert decoder.decode(update(16384, [b"1", UNCHANGED], [b"1", b"x"]), 4) == Change(
        "u", 16384, "O", [b"1", b"x"], [b"1", UNCHANGED]
    )
    assert decoder.decode(update(16384, [b"2", b"y"]), 5).old is None  # type: ignore[union-attr]
    assert decoder.decode(delete(16384, [b"1", None]), 6) == Change(
        "d", 16384, "K", [b"1", None], None
    )
    commit = decoder.decode(b"C" + struct.pack(">BQQq", 0, 500, 520, 1_000_000), 7)
    assert commit == Commit(500, 520, 946_684_801_000)
    truncate = decoder.decode(b"T" + struct.pack(">iBII", 2, 3, 16384, 16385), 8)
    assert truncate == Truncate((16384, 16385), True, True)
    message = decoder.decode(
        b"M"
        + bytes([0])
        + struct.pack(">Q", 900)
        + b"trunkline.heartbeat\x00"
        + struct.pack(">i", 3)
        + b"src",
        9,
    )
    assert message == LogicalMessage(False, 900, "trunkline.heartbeat", b"src")
    assert decoder.decode(b"Y" + b"\x00" * 10, 10) is None


@pytest.mark.parametrize(
    "data",
    [
        b"Z\x00\x00",  # unknown message type
        insert(1, [b"abc"])[:-2],  # a value cut short
        b"I" + struct.pack(">I", 1) + b"X" + tuple_data([b"1"]),  # not 'N'
        b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"b",  # binary column
        b"D" + struct.pack(">I", 1) + b"N" + tuple_data([b"1"]),  # delete without K/O
        b"B\x00\x01",  # begin cut short
    ],
)
def test_malformed_messages_stop_the_source_with_the_lsn(data: bytes) -> None:
    with pytest.raises(MalformedMessage, match="0/2A") as raised:
        Decoder().decode(data, 42)
    assert raised.value.retryable is False


# -- vectorised decoding ------------------------------------------------------------------


def _random_value(rng: random.Random) -> bytes | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.2:
        return UNCHANGED
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))).replace(b"\x00", b"")


def test_vectorised_decoding_matches_the_decoder() -> None:
    rng = random.Random(3)
    width = 4
    messages, expected = [], []
    decoder = Decoder()
    for i in range(500):
        row = [str(i).encode()] + [_random_value(rng) for _ in range(width - 1)]
        old = [str(i).encode()] + [_random_value(rng) for _ in range(width - 1)]
        kind = rng.choice(["I", "U", "UO", "UK", "D", "DO"])
        if kind == "I":
            payload = insert(7, row)
        elif kind == "U":
            payload = update(7, row)
        elif kind in ("UO", "UK"):
            payload = update(7, row, old, kind[1].encode())
        else:
            payload = delete(7, old, b"O" if kind == "DO" else b"K")
        messages.append(xlog(payload, 1000 + i))
        expected.append(decoder.decode(payload, 1000 + i))
    sizes = np.array([len(m) for m in messages])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    buf = np.frombuffer(b"".join(messages), dtype=np.uint8)
    parsed = parse_changes(buf, starts, width)
    for i, change in enumerate(expected):
        assert isinstance(change, Change)
        assert parsed.op[i] == change.op
        for image, values in ((parsed.old, change.old), (parsed.new, change.new)):
            assert bool(image.present[i]) == (values is not None)
            if values is None:
                continue
            for column in range(width):
                unchanged = image.unchanged[column]
                got = (
                    UNCHANGED
                    if unchanged is not None and unchanged[i]
                    else image.values[column][i].as_py()
                )
                assert got == values[column], (i, column)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (insert(7, [b"1", b"2"]), "relation has 3"),
        (insert(7, [b"1", b"2", b"3"])[:-1], "past the end"),
        (b"I" + struct.pack(">I", 7) + b"N" + struct.pack(">h", 3) + b"tzzzz", "past the end"),
        (update(7, [b"1", b"2", b"3"], [b"1", b"2", b"3"])[:-25] + b"X" * 25, "past the end"),
    ],
)
def test_vectorised_decoding_refuses_malformed_changes(payload: bytes, error: str) -> None:
    message = xlog(payload, 5)
    buf = np.frombuffer(message, dtype=np.uint8)
    with pytest.raises((TupleError, IndexError), match=error):
        parse_changes(buf, np.array([0]), 3)


# -- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("oid", "texts", "expected"),
    [
        (23, ["1", None, "-7"], ["1", "null", "-7"]),
        (701, ["0.1", "NaN", "-Infinity", "1e+300"], ["0.1", '"NaN"', '"-Infinity"', "1e+300"]),
        (1700, ["12.50", "NaN"], ['"12.50"', '"NaN"']),
        (16, ["t", "f", "true", None], ["true", "false", "true", "null"]),
        (
            1184,
            ["2024-05-01 12:00:00+00", "2024-05-01 12:00:00.123456+00", "infinity"],
            ['"2024-05-01T12:00:00Z"', '"2024-05-01T12:00:00.123456Z"', '"infinity"'],
        ),
        (1114, ["1999-12-31 23:59:59.5"], ['"1999-12-31T23:59:59.5"']),
        (17, ["\\xdeadbeef", "\\x"], ['"deadbeef"', '""']),
        (3802, ['{"a": "b\\"c"}'], ['"{\\"a\\": \\"b\\\\\\"c\\"}"']),
        (25, ['say "q" \\ ✓'], ['"say \\"q\\" \\\\ ✓"']),
    ],
)
def test_json_values_by_type(oid: int, texts: list[str | None], expected: list[str]) -> None:
    kind = pg_type(oid, "t")
    assert json_values(pa.array(texts, pa.string()), kind).to_pylist() == expected


def test_text_of_any_character_is_valid_json() -> None:
    texts = ["plain", 'tab\t "q" \\ ✓ 𝄞', "bell\x07 and \x1f", "", None]
    out = json_values(pa.array(texts, pa.string()), pg_type(25, "text")).to_pylist()
    assert [None if o == "null" else json.loads(o) for o in out] == texts


def test_json_part_leaves_quotes_to_the_surrounding_text_when_it_can() -> None:
    plain = json_part(pa.array(["a", "b"]), pg_type(25, "text"))
    assert (plain.left, plain.right, plain.values.to_pylist()) == ('"', '"', ["a", "b"])
    zoned = json_part(pa.array(["2024-05-01 12:00:00+00"]), pg_type(1184, "timestamptz"))
    assert zoned.left + zoned.values[0].as_py() + zoned.right == '"2024-05-01T12:00:00Z"'
    quoted = json_part(pa.array(['say "x"']), pg_type(25, "text"))
    assert (quoted.left, quoted.values.to_pylist()) == ("", ['"say \\"x\\""'])
    nulls = json_part(pa.array(["a", None]), pg_type(25, "text"))
    assert nulls.values.to_pylist() == ['"a"', "null"]
    toast = json_part(pa.array([b"a", None]), pg_type(25, "text"), np.array([False, True]))
    assert toast.values.to_pylist() == ['"a"', '"__debezium_unavailable_value"']


def test_arrays_become_json_arrays() -> None:
    assert parse_array('{1,NULL,"NULL","a \\"b\\"",{x,y},""}') == [
        "1",
        None,
        "NULL",
        'a "b"',
        ["x", "y"],
        "",
    ]
    assert parse_array("[0:1]={7,8}") == ["7", "8"]
    assert parse_array("{(1,2);(3,4)}", delimiter=";") == ["(1,2)", "(3,4)"]
    ints = pg_type(1007, "integer[]", element_oid=23)
    texts = pa.array(["{1,NULL,3}", "{}", None, "{{1,2},{3,4}}"])
    assert json_values(texts, ints).to_pylist() == ["[1,null,3]", "[]", "null", "[[1,2],[3,4]]"]
    stamps = pg_type(1185, "timestamptz[]", element_oid=1184)
    assert json.loads(json_values(pa.array(['{"2024-01-01 00:00:00+00"}']), stamps)[0].as_py()) == [
        "2024-01-01T00:00:00Z"
    ]
    with pytest.raises(ValueError, match="not an array literal"):
        parse_array("1,2")


# -- settings --------------------------------------------------------------------------------


def test_table_names() -> None:
    assert split_table("orders") == ("public", "orders")
    assert split_table("sales.orders") == ("sales", "orders")
    assert split_table('"My Schema"."Order.Lines"') == ("My Schema", "Order.Lines")
    with pytest.raises(ValueError):
        split_table("a.b.c")


def test_settings_are_strict() -> None:
    good = {"dsn": "postgresql://h/db", "tables": "orders"}
    assert PostgresCdcConfig.model_validate(good).tables == ("orders",)
    with pytest.raises(ValidationError, match="slot"):
        PostgresCdcConfig.model_validate({**good, "slot": "Bad-Name"})
    with pytest.raises(ValidationError, match="listed twice"):
        PostgresCdcConfig.model_validate({**good, "tables": ["orders", "public.orders"]})
    with pytest.raises(ValidationError, match=r"schema\.table"):
        PostgresCdcConfig.model_validate({**good, "tables": ["a.b.c"]})
    with pytest.raises(ValidationError, match="snapshto"):
        PostgresCdcConfig.model_validate({**good, "snapshto": "never"})
    assert "secret" not in repr(
        PostgresCdcConfig.model_validate({**good, "dsn": "postgresql://u:secret@h/db"})
    )


# -- the postgres sink's types ------------------------------------------------------------------


def test_sink_column_types_and_fits() -> None:
    assert column_type(pa.int32()) == "bigint"
    assert column_type(pa.timestamp("us", tz="UTC")) == "timestamp with time zone"
    assert column_type(pa.list_(pa.string())) == "text[]"
    assert column_type(pa.list_(pa.list_(pa.int64()))) == "jsonb"
    assert column_type(pa.null()) is None
    assert fit(pa.int64(), "bigint") is Fit.AS_IS
    assert fit(pa.float64(), "bigint") is Fit.WIDEN
    assert fit(pa.string(), "timestamp with time zone") is Fit.CHECK
    assert fit(pa.struct([("a", pa.int8())]), "jsonb") is Fit.AS_IS  # written as JSON text
    assert fit(pa.struct([("a", pa.int8())]), "bigint") is Fit.NO
    assert fit(pa.bool_(), "date") is Fit.NO
    assert fit(pa.int64(), "text") is Fit.TEXT


# -- sinks read events the quick way ---------------------------------------------------------


def test_sinks_cut_after_objects_out_of_events_without_changing_them() -> None:
    from trunkline.connectors.sinks._changes import read_changes
    from trunkline.testing.connectors import fetched

    def event(op: str, before: object, after: object) -> bytes:
        source = {"version": "x", "lsn": 1, "schema": "public", "table": "t"}
        body = {"before": before, "after": after, "source": source, "op": op, "ts_ms": 1}
        return json.dumps(body, separators=(",", ":")).encode()

    values: list[bytes | None] = [
        event("r", None, {"id": 1, "source": {"nested": ',"source":{'}, "v": "a"}),
        event("c", None, {"id": 2, "source": None, "v": 'q"uote'}),
        event("u", {"id": 2, "source": None, "v": "x"}, {"id": 2, "source": None, "v": "b"}),
        event("d", {"id": 1, "source": None, "v": None}, None),
        None,
        b'{"before":null,"after":{"id":3,"source":{"broken"}},"source":{},"op":"c"}',
    ]
    keys = [b'{"id":1}', b'{"id":2}', b'{"id":2}', b'{"id":1}', b'{"id":1}', b'{"id":3}']
    changes = read_changes(fetched("t", 0, 0, values, keys), "auto", ("id",))
    rows = changes.rows.to_pylist()
    assert [(r["id"], r["__trunkline_op"], r["v"]) for r in rows] == [
        (1, "u", "a"),
        (2, "u", 'q"uote'),
        (2, "u", "b"),
        (1, "d", None),
        (1, "d", None),
    ]
    assert rows[0]["source"] == {"nested": ',"source":{'}
    assert [position for position, _ in changes.bad] == [5]
