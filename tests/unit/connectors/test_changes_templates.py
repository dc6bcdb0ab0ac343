"""Sinks read Debezium events held as templates (the Postgres source's snapshot) from their
fragments: the changes must be exactly those the JSON path reads from the rendered bytes."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pytest

from trunkline.connectors.sinks import _changes
from trunkline.connectors.sinks._changes import Changes, read_changes
from trunkline.connectors.sources._pgcatalog import Column, Table
from trunkline.connectors.sources._pgevents import EventBuilder
from trunkline.connectors.sources._pgvalues import PgType, pg_type
from trunkline.hub import FETCH_SCHEMA, FetchedBatch
from trunkline.hub._template import fragments, literals, template

Texts = Callable[[random.Random, int], str | None]


def _pick(*choices: str | None) -> Texts:
    return lambda rng, i: rng.choice(choices)


def _stamp(zone: str, fraction: bool) -> Texts:
    def make(rng: random.Random, i: int) -> str:
        text = f"20{rng.randint(10, 29)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} "
        text += f"{rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}"
        if fraction and rng.random() < 0.7:
            text += "." + str(rng.randint(1, 999999)).rjust(6, "0").rstrip("0")
        return text + zone

    return make


def _with_nulls(make: Texts, share: float = 0.3) -> Texts:
    return lambda rng, i: None if rng.random() < share else make(rng, i)


#: Columns of many types: (name, type, how to make a value's text as PostgreSQL writes it).
COLUMNS: list[tuple[str, PgType, Texts]] = [
    ("id", pg_type(20, "bigint"), lambda rng, i: str(i * 7 - 50)),
    ("qty", pg_type(23, "integer"), lambda rng, i: str(rng.randint(-(2**31), 2**31 - 1))),
    ("small", pg_type(21, "smallint"), _with_nulls(lambda rng, i: str(rng.randint(0, 9)))),
    (
        "amount",
        pg_type(1700, "numeric(12,2)"),
        lambda rng, i: f"{rng.randint(0, 10**6)}.{i % 100:02d}",
    ),
    ("customer", pg_type(25, "text"), lambda rng, i: rng.choice(["Ada", "Grace", "Zoë 🚀", ""])),
    (
        "quoted",
        pg_type(25, "text"),
        _pick('say "hi"', "back\\slash", "two\nlines", "tab\there", "plain"),
    ),
    ("maybe", pg_type(25, "text"), _with_nulls(_pick("x", "y z", "ünï"))),
    ("created", pg_type(1184, "timestamptz"), _stamp("+00", fraction=True)),
    ("whole", pg_type(1184, "timestamptz"), _stamp("+00", fraction=False)),
    ("local", pg_type(1114, "timestamp"), _stamp("", fraction=True)),
    (
        "day",
        pg_type(1082, "date"),
        lambda rng, i: f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
    ),
    ("flag", pg_type(16, "boolean"), _pick("t", "f")),
    ("maybe_flag", pg_type(16, "boolean"), _with_nulls(_pick("true", "false"))),
    ("doc", pg_type(3802, "jsonb"), _pick('{"a": 1}', '{"b": [1, 2]}', "[]", '"s"', "3")),
    ("ints", pg_type(1007, "integer[]", element_oid=23), _pick("{1,2,3}", "{}", "{4,NULL}")),
    ("tags", pg_type(1009, "text[]", element_oid=25), _pick('{a,"b c"}', "{}", '{"q\\"x"}')),
    (
        "uid",
        pg_type(2950, "uuid"),
        lambda rng, i: str(__import__("uuid").UUID(int=rng.getrandbits(128))),
    ),
    ("raw", pg_type(17, "bytea"), lambda rng, i: "\\x" + rng.randbytes(rng.randint(0, 8)).hex()),
    ("mood", pg_type(90001, "mood"), _pick("happy", "sad", "so-so")),
    ("ratio", pg_type(701, "double precision"), _pick("1.5", "-2", "3e+20", "0.1")),
    ("maybe_ratio", pg_type(700, "real"), _with_nulls(_pick("1.25", "7"))),
    ("nothing", pg_type(25, "text"), lambda rng, i: None),
    ("hex", pg_type(25, "text"), lambda rng, i: rng.randbytes(32).hex()),
]


def _table(columns: Sequence[tuple[str, PgType, Texts]]) -> Table:
    return Table(
        "public",
        "orders",
        16384,
        tuple(Column(name, kind) for name, kind, _ in columns),
        ("id",),
        "d",
    )


def _events(
    columns: Sequence[tuple[str, PgType, Texts]], rows: int, seed: int, first: int = 0
) -> pa.Table:
    """Snapshot events (key, value as a template, timestamp) as the source makes them."""
    rng = random.Random(seed)
    texts = [
        pa.array([make(rng, first + i) for i in range(rows)], pa.string()) for _, _, make in columns
    ]
    builder = EventBuilder(_table(columns), "server", "db")
    events, _ = builder.snapshot(texts, lsn=123, ts_ms=1_700_000_000_000)
    return events


def _batch(events: pa.Table, first_offset: int, valid: np.ndarray | None = None) -> pa.RecordBatch:
    """One stored batch in the hub's fetch layout (value a template, or bytes)."""
    n = events.num_rows
    value = events.column("value").combine_chunks()
    if valid is not None and pa.types.is_struct(value.type):
        pieces = fragments(value)
        # What a tombstone's fragments hold is unspecified: make some of them null.
        pieces = [p if i % 2 else _null_where(p, ~valid) for i, p in enumerate(pieces)]
        value = template(literals(value.type), pieces, pa.array(valid))
    elif valid is not None:
        value = _null_where(value, ~valid)
    key = events.column("key").combine_chunks() if "key" in events.column_names else None
    schema = FETCH_SCHEMA.set(3, pa.field("value", value.type))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.arange(first_offset, first_offset + n), pa.int64()),
            pa.array(np.full(n, 1_700_000_000_000), pa.int64()).cast(FETCH_SCHEMA.field(1).type),
            key if key is not None else pa.nulls(n, pa.binary()),
            value,
            pa.array([[] for _ in range(n)], FETCH_SCHEMA.field(4).type),
        ],
        schema=schema,
    )


def _null_where(values: pa.Array, mask: np.ndarray) -> pa.Array:
    import pyarrow.compute as pc

    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


def _fetched(batches: Sequence[pa.RecordBatch]) -> FetchedBatch:
    return FetchedBatch("t", 0, batches=batches, next_offset=sum(b.num_rows for b in batches))


def _rendered(batch: FetchedBatch) -> FetchedBatch:
    """The same records with their values as bytes (what Kafka, or an old hub, returns)."""
    return FetchedBatch(batch.topic, 0, batch.records, batch.next_offset)


def _assert_same(changes: Changes, expected: Changes) -> None:
    assert changes.rows.schema == expected.rows.schema
    assert changes.rows.equals(expected.rows)
    assert changes.bad == expected.bad
    assert changes.envelope == expected.envelope
    assert changes.tombstones == expected.tombstones


@pytest.fixture
def no_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail when anything asks for the rendered bytes: the fast path must not need them."""

    def refuse(self: FetchedBatch) -> pa.Table:
        raise AssertionError("the values were rendered: the template fast path was not taken")

    monkeypatch.setattr(FetchedBatch, "records", property(refuse))


def _both(batches: Sequence[pa.RecordBatch], *args: object) -> tuple[Changes, Changes]:
    fast = read_changes(_fetched(batches), *args)  # type: ignore[arg-type]
    expected = read_changes(_rendered(_fetched(batches)), *args)  # type: ignore[arg-type]
    return fast, expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_templates_read_like_their_rendered_bytes(seed: int) -> None:
    events = _events(COLUMNS, 300, seed)
    batch = _fetched([_batch(events, 0)])
    assert batch.templated
    fast = read_changes(batch, "auto", ("id",))
    expected = read_changes(_rendered(batch), "auto", ("id",))
    _assert_same(fast, expected)
    assert fast.rows.num_rows == 300 and fast.envelope
    # The types the JSON path gives these columns (the reason some take pyarrow's reader).
    schema = fast.rows.schema
    assert schema.field("id").type == pa.int64()
    assert schema.field("customer").type == pa.string()
    assert schema.field("whole").type == pa.timestamp("s")
    assert schema.field("created").type == pa.timestamp("us", tz="UTC")
    assert schema.field("nothing").type == pa.null()


def test_the_fast_path_does_not_render(no_rendering: None) -> None:
    # Every column here is read from its fragments (no NaN, which only the JSON path reads).
    events = _events(COLUMNS, 200, 5)
    pieces = [_batch(events.slice(0, 80), 10), _batch(events.slice(80), 90)]
    fast = read_changes(_fetched(pieces), "auto", ("id",))
    assert fast.rows.num_rows == 200
    assert fast.rows.column(_changes.SEQ).to_pylist() == list(range(200))
    with pytest.raises(AssertionError, match="not taken"):
        read_changes(_fetched(pieces), "json", ("id",))


@pytest.mark.parametrize("value_format", ["auto", "debezium", "json"])
def test_value_formats(value_format: str) -> None:
    events = _events(COLUMNS[:8], 50, 7)
    fast, expected = _both([_batch(events, 0)], value_format, ("id",))
    _assert_same(fast, expected)


def test_several_stored_batches_continue_the_sequence() -> None:
    # Pieces whose columns differ in shape: nulls in one (whole JSON values), none in the
    # other (quotes in the literal text), a column null in one piece and not in the other.
    wide = [
        ("id", pg_type(20, "bigint"), lambda rng, i: str(i)),
        ("name", pg_type(25, "text"), lambda rng, i: f"n{i}"),
        ("late", pg_type(20, "bigint"), lambda rng, i: None if i < 40 else str(i)),
        ("when", pg_type(1184, "timestamptz"), _stamp("+00", fraction=True)),
    ]
    nullable = [(n, k, _with_nulls(f)) if n == "name" else (n, k, f) for n, k, f in wide]
    first = _events(wide, 40, 1)
    second = _events(nullable, 30, 2, first=40)
    third = _events(wide, 25, 3, first=70)
    pieces = [_batch(first, 0), _batch(second, 40), _batch(third.slice(5, 20), 70)]
    fast, expected = _both(pieces, "auto", ("id",))
    _assert_same(fast, expected)
    assert fast.rows.column(_changes.SEQ).to_pylist() == list(range(90))
    assert fast.rows.schema.field("late").type == pa.int64()


def test_several_batches_taken_fast(no_rendering: None) -> None:
    wide = [
        ("id", pg_type(20, "bigint"), lambda rng, i: str(i)),
        ("late", pg_type(20, "bigint"), lambda rng, i: None if i < 40 else str(i)),
    ]
    pieces = [_batch(_events(wide, 40, 1), 0), _batch(_events(wide, 30, 2, first=40), 40)]
    fast = read_changes(_fetched(pieces), "auto", ("id",))
    assert fast.rows.column("late").type == pa.int64()
    assert fast.rows.column("late").null_count == 40


@pytest.mark.parametrize("key", [("id",), ()])
def test_tombstones(key: tuple[str, ...]) -> None:
    events = _events(COLUMNS, 120, 11)
    rng = np.random.default_rng(3)
    valid = rng.random(120) > 0.25
    only_nulls = pa.table({"key": events.column("key"), "value": pa.nulls(120, pa.binary())})
    pieces = [
        _batch(events.slice(0, 60), 0, valid[:60]),
        _batch(only_nulls.slice(0, 7), 60),  # bytes, but every value a tombstone
        _batch(events.slice(60), 67, valid[60:]),
    ]
    fast, expected = _both(pieces, "auto", key)
    _assert_same(fast, expected)
    assert fast.tombstones == int((~valid).sum()) + 7
    if key:
        assert "d" in fast.rows.column(_changes.OP).to_pylist()


def test_tombstones_taken_fast(no_rendering: None) -> None:
    events = _events(COLUMNS[:6], 10, 12)
    valid = np.array([True, False] * 5)
    fast = read_changes(_fetched([_batch(events, 0, valid)]), "auto", ("id",))
    assert fast.tombstones == 5
    assert fast.rows.column(_changes.OP).to_pylist() == ["u", "d"] * 5


def test_templates_among_bytes() -> None:
    events = _events(COLUMNS, 60, 13)
    rendered = _fetched([_batch(events.slice(20, 20), 20)]).records
    as_bytes = pa.table(
        {"key": rendered.column("key"), "value": rendered.column("value")}
    ).combine_chunks()
    pieces = [_batch(events.slice(0, 20), 0), _batch(as_bytes, 20), _batch(events.slice(40), 40)]
    fast, expected = _both(pieces, "auto", ("id",))
    _assert_same(fast, expected)
    assert fast.rows.num_rows == 60


@pytest.mark.parametrize(
    ("texts", "values", "fast"),
    [
        # Plain rows, not events.
        (['{"id":', ',"name":"', '"}'], [["1", "2"], ["Ada", "Grace"]], False),
        # An event with a before image.
        (['{"before":{"id":1},"after":{"id":', '},"source":{},"op":"u"}'], [["1", "2"]], False),
        # A fragment outside after (its op), or one after field made of two fragments.
        (
            ['{"before":null,"after":{"id":', '},"source":{},"op":"', '"}'],
            [["1", "2"], ["c", "r"]],
            False,
        ),
        (
            ['{"before":null,"after":{"id":"', "-", '"},"source":{},"op":"c"}'],
            [["1", "2"], ["a", "b"]],
            False,
        ),
        # A constant after field; no source to cut at.
        (['{"before":null,"after":{"k":0,"id":', '},"source":{},"op":"c"}'], [["1", "2"]], False),
        (['{"before":null,"after":{"id":', '},"op":"c"}'], [["1", "2"]], False),
        # Fragments that are not what they seem: a number that is not one, JSON text that
        # adds a field, a quote or a newline in a string, a floating point NaN.
        (['{"before":null,"after":{"id":', '},"source":{},"op":"c"}'], [["1", "x"]], False),
        (['{"before":null,"after":{"id":', '},"source":{},"op":"c"}'], [["1", '2,"b":3']], False),
        (['{"before":null,"after":{"id":"', '"},"source":{},"op":"c"}'], [["1", 'a"b']], False),
        (['{"before":null,"after":{"id":', '},"source":{},"op":"c"}'], [["1", "2\n"]], False),
        (['{"before":null,"after":{"id":', '},"source":{},"op":"c"}'], [["1.5", '"NaN"']], False),
        # Dates in text, a mix of kinds, nested objects.
        (
            ['{"before":null,"after":{"id":"', '"},"source":{},"op":"c"}'],
            [["2024-01-01", "x"]],
            True,
        ),
        (['{"before":null,"after":{"id":', '},"source":{},"op":"c"}'], [["true", "1"]], False),
        (
            ['{"before":null,"after":{"id":', '},"source":{},"op":"c"}'],
            [['{"a":1}', '{"b":2}']],
            False,
        ),
        (['{"before":null,"after":{"id":', '},"source":{},"op":"c"}'], [["[1]", "[2.5]"]], True),
    ],
)
def test_other_templates_read_like_their_bytes(
    texts: list[str], values: list[list[str]], fast: bool
) -> None:
    value = template(texts, [pa.array(v, pa.string()) for v in values])
    events = pa.table({"key": pa.array([b"1", b"2"]), "value": value})
    # Read from the fragments, or left to the JSON path (what this test is about).
    taken = _changes._from_templates(_fetched([_batch(events, 0)]).batches, ("id",))
    assert (taken is not None) == fast
    for value_format in ("auto", "json", "debezium"):
        try:
            expected = read_changes(_rendered(_fetched([_batch(events, 0)])), value_format, ("id",))
        except KeyError as exc:  # plain rows read as Debezium events: no "op" (as before)
            with pytest.raises(type(exc)):
                read_changes(_fetched([_batch(events, 0)]), value_format, ("id",))
            continue
        _assert_same(read_changes(_fetched([_batch(events, 0)]), value_format, ("id",)), expected)


def test_nan_takes_the_json_path() -> None:
    columns = [
        ("id", pg_type(20, "bigint"), lambda rng, i: str(i)),
        ("ratio", pg_type(701, "double precision"), _pick("1.5", "NaN", "Infinity")),
    ]
    fast, expected = _both([_batch(_events(columns, 20, 1), 0)], "auto", ("id",))
    _assert_same(fast, expected)


def test_integers_are_recognised_exactly() -> None:
    import re

    import pyarrow.compute as pc

    rng = random.Random(4)
    alphabet = "0123456789-null+. e"
    texts = [
        "0",
        "-0",
        "7",
        "-7",
        "007",
        "-",
        "",
        "null",
        "nul",
        "1" * 18,
        "1" * 19,
        "-" + "9" * 18,
    ]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5))) for _ in range(3000)]
    pattern = re.compile(_changes._INTEGER)
    for text in texts:
        for others in (["1"], ["null"], ["-5", "null"]):
            array = pa.array([*others, text], pa.string()).slice(len(others) - 1)
            expected = all(pattern.match(t) for t in array.to_pylist())
            found = _changes._all_integers(array, pc.equal(array, "null"))
            assert found == expected, array.to_pylist()


def test_whole_second_timestamps_and_plain_columns_need_no_json_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The columns of a typical table (integers, text, timestamptz without fractions of a
    second) are read from their fragments alone: no column goes through pyarrow's reader."""
    columns = [c for c in COLUMNS if c[0] in ("id", "qty", "customer", "whole", "hex", "mood")]
    events = _events(columns, 400, 9)
    batches = [_batch(events, 0)]
    expected = read_changes(_rendered(_fetched(batches)), "auto", ("id",))

    def refuse(lines: pa.Array) -> None:
        raise AssertionError("a column was parsed by pyarrow's JSON reader")

    monkeypatch.setattr(_changes, "_json_column", refuse)
    fast = read_changes(_fetched(batches), "auto", ("id",))
    _assert_same(fast, expected)
    assert fast.rows.schema.field("whole").type == pa.timestamp("s")
