"""The DuckDB and Parquet sinks beyond the conformance suite: change events, TOAST
placeholders, schema changes, identifiers, partitioning, files left by a crash."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trunkline.config import ProjectFileError, load_project
from trunkline.connectors.base import ConnectorContext
from trunkline.connectors.sinks._changes import UNAVAILABLE, read_changes
from trunkline.connectors.sinks.duckdb import (
    DuckDBConfig,
    DuckDBSink,
    _in_row_groups,
    default_threads,
    table_name,
)
from trunkline.connectors.sinks.parquet import ParquetConfig, ParquetSink, PartitionExpr
from trunkline.errors import IncompatibleChange
from trunkline.hub import FetchedBatch, TopicPartition
from trunkline.meta import MetaStore
from trunkline.runtime._lineage import record_lineage
from trunkline.testing.connectors import (
    RecordingDeadLetters,
    RecordingMetrics,
    fetched,
    make_context,
)

TP = TopicPartition("t", 0)


def event(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> bytes:
    envelope = {"before": before, "after": after, "op": op, "source": {"lsn": 1, "table": "t"}}
    return json.dumps(envelope).encode()


def test_changes_from_debezium_envelopes() -> None:
    values: list[bytes | None] = [
        event("r", None, {"id": 1, "v": "a"}),
        event("u", {"id": 1}, {"id": 1, "v": "b"}),
        event("d", {"id": 1, "v": "b"}, None),
        json.dumps(
            {"schema": {}, "payload": json.loads(event("c", None, {"id": 2, "v": "c"}))}
        ).encode(),
        event("t", None, None),
        event("x", None, None),
        None,
    ]
    keys: list[bytes | None] = [b'{"id": 1}'] * 6 + [b'{"id": 2}']
    changes = read_changes(fetched("t", 0, 0, values, keys), "auto", ("id",))
    rows = changes.rows.to_pylist()
    assert [(r["__trunkline_op"], r.get("id")) for r in rows] == [
        ("u", 1),
        ("u", 1),
        ("d", 1),
        ("t", None),
        ("d", 2),
    ]
    # The payload-wrapped event is a row too (a separate envelope shape in the same batch
    # is decoded on its own): its position is reported bad only if it cannot be read.
    assert [row for row, _ in changes.bad] == [3, 5]
    assert "unknown Debezium op" in changes.bad[1][1]


def rechunked(batch: FetchedBatch, size: int, value_type: pa.DataType) -> FetchedBatch:
    """``batch`` as a hub returns it: in several record batches (here of ``size`` rows)."""
    records = batch.records.set_column(
        3, pa.field("value", value_type), batch.records.column("value").cast(value_type)
    )
    parts = records.to_batches(max_chunksize=size)
    return FetchedBatch(batch.topic, batch.partition, pa.Table.from_batches(parts), len(batch))


@pytest.mark.parametrize("value_type", [pa.binary(), pa.string()])
def test_changes_are_the_same_from_chunked_values(value_type: pa.DataType) -> None:
    values: list[bytes | None] = [
        *(event("r", None, {"id": i, "v": f"x{i}"}) for i in range(5)),  # cut out by text
        event("u", {"id": 1}, {"id": 1, "v": "y"}),  # with a before image: parsed whole
        None,
        b'{"before":null,"after":{"id": 7, "v": "z"},"source":{},"op":"c"}',
        event("d", {"id": 2}, None),
        b"not json",
    ]
    keys: list[bytes | None] = [b'{"id": 1}'] * 6 + [b'{"id": 4}'] + [b'{"id": 7}'] * 3
    whole = fetched("t", 0, 0, values, keys)
    expected = read_changes(whole, "auto", ("id",))
    for size in (1, 3, 4):
        changes = read_changes(rechunked(whole, size, value_type), "auto", ("id",))
        assert changes.rows.to_pylist() == expected.rows.to_pylist()
        assert changes.bad == expected.bad == [(9, changes.bad[0][1])]
        assert changes.envelope and changes.tombstones == expected.tombstones == 1


def test_plain_rows_are_the_same_from_chunked_values() -> None:
    values: list[bytes | None] = [json.dumps({"id": i, "n": i * 1.5}).encode() for i in range(9)]
    whole = fetched("t", 0, 0, [*values, None])
    expected = read_changes(whole)
    changes = read_changes(rechunked(whole, 4, pa.binary()))
    assert changes.rows.to_pylist() == expected.rows.to_pylist()
    assert [r["id"] for r in changes.rows.to_pylist()] == list(range(9))
    assert not changes.envelope and changes.tombstones == 1


@pytest.fixture
def context(tmp_path: Path) -> ConnectorContext:
    return make_context(tmp_path, "wh")


def duck(tmp_path: Path, **settings: Any) -> DuckDBSink:
    config = DuckDBConfig.model_validate(
        {"topics": ["t"], "path": str(tmp_path / "w.duckdb"), **settings}
    )
    return DuckDBSink("wh", config)


def rows(tmp_path: Path, table: str = "t", schema: str = "main") -> list[dict[str, Any]]:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        query = f"SELECT * FROM {schema}.{table} ORDER BY 1"
        return con.sql(query).to_arrow_table().to_pylist()


def write(
    sink: DuckDBSink,
    context: ConnectorContext,
    *batches: list[bytes | None],
    keys: list[bytes | None] | None = None,
) -> None:
    sink.open(context)
    sink.assign([TP])
    offset = 0
    for values in batches:
        sink.write_batch(
            "t",
            fetched("t", 0, offset, values, keys[offset : offset + len(values)] if keys else None),
        )
        offset += len(values)
    sink.snapshot()
    sink.close()


def test_upsert_applies_change_events_in_order(tmp_path: Path, context: ConnectorContext) -> None:
    sink = duck(tmp_path, mode="upsert", key=["id"])
    write(
        sink,
        context,
        [
            event("r", None, {"id": 1, "v": "a"}),
            event("r", None, {"id": 2, "v": "b"}),
            event("u", {"id": 1}, {"id": 1, "v": "a2"}),
            event("d", {"id": 2}, None),
            event("c", None, {"id": 2, "v": "b again"}),
            event("c", None, {"id": 3, "v": "c"}),
            event("d", {"id": 3}, None),
        ],
    )
    assert rows(tmp_path) == [{"id": 1, "v": "a2"}, {"id": 2, "v": "b again"}]


def test_truncate_empties_the_table_first(tmp_path: Path, context: ConnectorContext) -> None:
    sink = duck(tmp_path, mode="upsert", key=["id"])
    first = [event("c", None, {"id": i, "v": "x"}) for i in range(5)]
    second = [event("t", None, None), event("c", None, {"id": 9, "v": "y"})]
    write(sink, context, first, second)
    assert rows(tmp_path) == [{"id": 9, "v": "y"}]


def test_toast_placeholder_keeps_the_old_value(tmp_path: Path, context: ConnectorContext) -> None:
    sink = duck(tmp_path, mode="upsert", key=["id"])
    big = "x" * 5000
    write(
        sink,
        context,
        [
            event("c", None, {"id": 1, "doc": big, "n": 1}),
            event("c", None, {"id": 2, "doc": "old", "n": 1}),
        ],
        [
            # Unchanged TOASTed value: keep what the table has.
            event("u", None, {"id": 1, "doc": UNAVAILABLE, "n": 2}),
            # Changed in this batch, then unchanged: keep the batch's newer value.
            event("u", None, {"id": 2, "doc": "new", "n": 2}),
            event("u", None, {"id": 2, "doc": UNAVAILABLE, "n": 3}),
            # Deleted and re-created: nothing to keep.
            event("d", {"id": 3}, None),
            event("c", None, {"id": 3, "doc": UNAVAILABLE, "n": 1}),
        ],
    )
    assert rows(tmp_path) == [
        {"id": 1, "doc": big, "n": 2},
        {"id": 2, "doc": "new", "n": 3},
        {"id": 3, "doc": None, "n": 1},
    ]


def test_a_delete_in_a_batch_with_toast_placeholders_deletes(
    tmp_path: Path, context: ConnectorContext
) -> None:
    sink = duck(tmp_path, mode="upsert", key=["id"])
    first = [event("c", None, {"id": i, "doc": f"d{i}", "n": 1}) for i in (1, 2, 3)]
    second = [
        event("u", None, {"id": 1, "doc": UNAVAILABLE, "n": 2}),
        event("d", {"id": 2}, None),
        event("u", None, {"id": 3, "doc": "d3b", "n": 2}),
        event("d", {"id": 3}, None),
    ]
    write(sink, context, first, second)
    assert rows(tmp_path) == [{"id": 1, "doc": "d1", "n": 2}]


def test_a_batch_of_only_a_truncate_empties_the_table(
    tmp_path: Path, context: ConnectorContext
) -> None:
    sink = duck(tmp_path, mode="upsert", key=["id"])
    write(sink, context, [event("c", None, {"id": 1, "v": "x"})], [event("t", None, None)])
    assert rows(tmp_path) == []
    assert not context.dead_letters.records  # type: ignore[attr-defined]


def test_tombstones_delete_by_record_key(tmp_path: Path, context: ConnectorContext) -> None:
    sink = duck(tmp_path, mode="upsert", key=["id"])
    values: list[bytes | None] = [b'{"id": 1, "v": 1}', b'{"id": 2, "v": 2}', None, None]
    keys: list[bytes | None] = [b"1", b"2", b"1", None]
    write(sink, context, values, keys=keys)
    assert rows(tmp_path) == [{"id": 2, "v": 2}]
    dead = context.dead_letters
    assert isinstance(dead, RecordingDeadLetters)
    assert [(o, "without a key" in e) for _, _, o, e in dead.records] == [(3, True)]


def test_columns_are_added_and_widened(tmp_path: Path, context: ConnectorContext) -> None:
    sink = duck(tmp_path)
    write(
        sink,
        context,
        [b'{"id": 1, "amount": 2}'],
        [b'{"id": 2, "amount": 2.5, "note": "new"}'],
    )
    assert rows(tmp_path) == [
        {"id": 1, "amount": 2.0, "note": None},
        {"id": 2, "amount": 2.5, "note": "new"},
    ]


def test_values_that_do_not_fit_go_to_dead_letters(
    tmp_path: Path, context: ConnectorContext
) -> None:
    sink = duck(tmp_path)
    write(sink, context, [b'{"id": 1, "n": 1}'], [b'{"id": 2, "n": 2}', b'{"id": 3, "n": "three"}'])
    assert [r["id"] for r in rows(tmp_path)] == [1, 2]
    dead = context.dead_letters
    assert isinstance(dead, RecordingDeadLetters)
    assert [(o, "'three' is not a BIGINT" in e) for _, _, o, e in dead.records] == [(2, True)]


def test_a_type_change_stops_the_sink(tmp_path: Path, context: ConnectorContext) -> None:
    sink = duck(tmp_path)
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", fetched("t", 0, 0, [b'{"id": 1, "n": 1}']))
    sink.write_batch("t", fetched("t", 0, 1, [b'{"id": 2, "n": "two"}', b'{"id": 3, "n": "x"}']))
    with pytest.raises(IncompatibleChange, match="column 'n' of table 't' is BIGINT"):
        sink.snapshot()
    sink.close()
    # The failed batch left nothing behind, its offsets included.
    again = duck(tmp_path)
    again.open(context)
    assert again.assign([TP]) == {TP: 1}
    again.close()


def test_small_upsert_batches_into_a_large_table_replace_rows(
    tmp_path: Path, context: ConnectorContext
) -> None:
    # A table 100x the batch is not scanned for the batch's keys (INSERT OR REPLACE at
    # once); a batch of new keys into a small table takes the plain INSERT.
    sink = duck(tmp_path, mode="upsert", key=["id"], db_schema="wh")
    first = [event("c", None, {"id": i, "v": "a"}) for i in range(500)]
    later = [
        [event("u", None, {"id": 7, "v": "b"})],
        [event("c", None, {"id": 900, "v": "new"}), event("u", None, {"id": 8, "v": "c"})],
        [event("d", {"id": 9}, None), event("c", None, {"id": 9, "v": "again"})],
    ]
    write(sink, context, first, *later)
    table = {r["id"]: r["v"] for r in rows(tmp_path, "t", schema="wh")}
    assert len(table) == 501
    assert (table[7], table[8], table[9], table[900], table[10]) == ("b", "c", "again", "new", "a")


def test_durable_reports_applied_batches_and_raises_what_a_failed_one_raised(
    tmp_path: Path, context: ConnectorContext
) -> None:
    # The runtime asks durable() instead of waiting on snapshot(); a batch that failed in
    # the background must not leave the sink looking merely slow.
    sink = duck(tmp_path)
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", fetched("t", 0, 0, [b'{"id": 1, "n": 1}']))
    deadline = time.monotonic() + 10
    seen: dict[TopicPartition, int] = {}
    while not seen and time.monotonic() < deadline:
        seen = sink.durable()
    assert seen == {TP: 1}
    assert sink.durable() == {}  # each reported once
    # The batch's transaction (which stores its offsets) is the checkpoint status shows.
    assert context.metrics.gauges["checkpoint_seconds"] > 0  # type: ignore[attr-defined]
    sink.write_batch("t", fetched("t", 0, 1, [b'{"id": 2, "n": "two"}']))
    with pytest.raises(IncompatibleChange, match="column 'n' of table 't' is BIGINT"):
        while time.monotonic() < deadline:
            assert sink.durable() == {}
    sink.close()


def test_append_mode_ignores_deletes_and_counts_them(
    tmp_path: Path, context: ConnectorContext
) -> None:
    sink = duck(tmp_path)
    write(
        sink,
        context,
        [event("c", None, {"id": 1, "v": "a"}), event("c", None, {"id": 2, "v": "b"})],
        [
            event("d", {"id": 1}, None),
            event("c", None, {"id": 3, "v": "c"}),
            event("t", None, None),
        ],
    )
    assert rows(tmp_path) == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]
    assert isinstance(context.metrics, RecordingMetrics)
    assert context.metrics.counters.get("deletes_ignored") == 2


def test_inserts_only_count_no_ignored_deletes(tmp_path: Path, context: ConnectorContext) -> None:
    sink = duck(tmp_path)
    write(sink, context, [b'{"id": 1}', b'{"id": 2}'])
    assert isinstance(context.metrics, RecordingMetrics)
    assert "deletes_ignored" not in context.metrics.counters


def test_rows_go_to_duckdb_in_batches_of_a_row_group() -> None:
    table = pa.table({"i": list(range(300_000))})
    table = pa.Table.from_batches(table.to_batches(max_chunksize=29_000))
    table = table.append_column("s", pa.array([str(i) for i in range(300_000)]))
    out = _in_row_groups(table)
    assert [len(b) for b in out.to_batches()] == [122_880, 122_880, 54_240]
    assert out.equals(table)
    small = pa.table({"i": [1, 2]})
    assert _in_row_groups(small) is small


def test_a_batch_of_several_row_groups_is_appended_in_order(
    tmp_path: Path, context: ConnectorContext
) -> None:
    values: list[bytes | None] = [b'{"id": %d, "v": "r%d"}' % (i, i) for i in range(130_000)]
    sink = duck(tmp_path)
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", rechunked(fetched("t", 0, 0, values), 20_000, pa.binary()))
    sink.snapshot()
    sink.close()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        got = con.sql("SELECT count(*), min(id), max(id), max(v) FROM main.t").fetchone()
        # Insertion order is kept: rowid follows the record offsets.
        order = con.sql("SELECT bool_and(id = rowid) FROM main.t").fetchone()
    assert got == (130_000, 0, 129_999, "r99999")
    assert order == (True,)


def test_odd_names_are_quoted(tmp_path: Path, context: ConnectorContext) -> None:
    sink = duck(tmp_path, table='my "table"; drop', db_schema="we ird")
    write(sink, context, [json.dumps({'a "b"': 1, "select": "x", "é ü": True}).encode()])
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        got = con.sql('SELECT * FROM "we ird"."my ""table""; drop"').fetchall()
    assert got == [(1, "x", True)]
    assert table_name("shop.public.orders-v2") == "shop_public_orders_v2"


def test_lineage_and_catalog(tmp_path: Path) -> None:
    with MetaStore.open(f"sqlite:///{tmp_path / 'meta.db'}") as meta:
        meta.upsert_system("hub", "hub", str(tmp_path / "hub"))
        meta.upsert_dataset("hub", "t", "topic")
        base = make_context(tmp_path, "wh")
        context = ConnectorContext(**{**base.__dict__, "meta": meta})
        sink = duck(tmp_path)
        write(sink, context, [b'{"id": 1, "name": "a"}'])
        dataset = meta.get_dataset("wh", "main.t")
        assert [c.name for c in dataset.columns or ()] == ["id", "name"]
        assert meta.upstream("wh.main.t") == [], "writing records no edge: the runtime does"
        assert record_lineage(context, sink.lineage()) == 1
        assert [str(e.source) for e in meta.upstream("wh.main.t")] == ["hub.t"]
        assert meta.get_system("wh").kind == "duckdb"


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        (
            "{type: duckdb, path: w.db, topics: [t], mode: upsert}",
            "mode 'upsert' needs the primary key",
        ),
        (
            "{type: duckdb, path: w.db, topics: [t], key: [id]}",
            "'key' only applies to mode 'upsert'",
        ),
        (
            "{type: duckdb, path: w.db, topics: [a, b], table: x}",
            "'table' names the table of one topic",
        ),
        ("{type: duckdb, path: w.db, topics: [a], tables: {b: x}}", "'tables' names topic 'b'"),
        ("{type: duckdb, path: w.db, topics: [t], mdoe: upsert}", "unknown key 'mdoe'"),
        (
            "{type: parquet, path: lake, topics: [t], partition_by: ['date(']}",
            "expected a column name",
        ),
        ("{type: parquet, path: lake, topics: []}", "topics"),
    ],
)
def test_impossible_settings_are_placed(tmp_path: Path, sink: str, problem: str) -> None:
    (tmp_path / "trunkline.yaml").write_text(f"sinks:\n  w: {sink}\n")
    with pytest.raises(ProjectFileError) as caught:
        load_project(tmp_path, env={})
    text = str(caught.value)
    assert problem in text
    assert "trunkline.yaml:2:" in text


# Parquet -------------------------------------------------------------------------------


def lake(tmp_path: Path, **settings: Any) -> ParquetSink:
    config = ParquetConfig.model_validate(
        {"topics": ["t"], "path": str(tmp_path / "lake"), **settings}
    )
    return ParquetSink("lake", config)


def test_partition_expressions() -> None:
    assert PartitionExpr.parse(" day( ts ) ") == PartitionExpr("day", "ts")
    assert PartitionExpr.parse("country") == PartitionExpr(None, "country")
    with pytest.raises(ValueError):
        PartitionExpr.parse("date(ts")


def test_partitioned_files_named_by_offsets(tmp_path: Path, context: ConnectorContext) -> None:
    sink = lake(tmp_path, partition_by=["date(ts)", "country"], roll_interval="0s")
    values = [
        json.dumps({"ts": f"2026-11-0{1 + i % 2} 10:00:00+00", "country": c, "n": i}).encode()
        for i, c in enumerate(["DE", "FR/x", "DE", None])
    ]
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", fetched("t", 0, 100, values))
    assert sink.snapshot() == {TP: 104}
    sink.close()
    found = sorted(
        p.relative_to(tmp_path / "lake" / "t").as_posix()
        for p in (tmp_path / "lake" / "t").rglob("*.parquet")
    )
    assert found == [
        "date=2026-11-01/country=DE/p0-00000000000000000100-00000000000000000103.parquet",
        "date=2026-11-02/country=FR%2Fx/p0-00000000000000000101-00000000000000000102.parquet",
        "date=2026-11-02/country=__HIVE_DEFAULT_PARTITION__/p0-00000000000000000103-00000000000000000104.parquet",
    ]
    first = pq.read_table(tmp_path / "lake" / "t" / found[0])
    assert first.column("n").to_pylist() == [0, 2]


def test_uncommitted_files_are_removed_on_assign(tmp_path: Path, context: ConnectorContext) -> None:
    sink = lake(tmp_path, roll_interval="0s", target_file_size="1KiB")
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", fetched("t", 0, 0, [json.dumps({"n": i}).encode() for i in range(10)]))
    assert sink.snapshot() == {TP: 10}
    # Written and rolled into place (size reached) but never snapshotted, then a crash.
    many = [json.dumps({"n": i, "pad": os.urandom(200).hex()}).encode() for i in range(10, 30)]
    sink.write_batch("t", fetched("t", 0, 10, many))
    sink.write_batch("t", fetched("t", 0, 30, [json.dumps({"n": 30}).encode()]))
    folder = tmp_path / "lake" / "t"
    assert any(p.name.endswith(".inprogress") for p in folder.iterdir())
    assert len(list(folder.glob("p0-*.parquet"))) == 2
    # No close(): the process died. The next owner starts from the stored offset.
    again = lake(tmp_path, roll_interval="0s")
    again.open(context)
    assert again.assign([TP]) == {TP: 10}
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["p0-00000000000000000000-00000000000000000010.parquet"]
    again.close()


def test_schema_change_starts_a_new_file(tmp_path: Path, context: ConnectorContext) -> None:
    sink = lake(tmp_path, roll_interval="1h")
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", fetched("t", 0, 0, [b'{"a": 1}']))
    sink.write_batch("t", fetched("t", 0, 1, [b'{"a": 2, "b": "new"}']))
    # The first file is in place, the second still open: only the first counts.
    assert sink.snapshot() == {TP: 1}
    sink.drain()
    assert sink.snapshot() == {TP: 2}
    sink.close()
    assert len(list((tmp_path / "lake" / "t").glob("*.parquet"))) == 2


def test_parquet_files_are_registered_and_their_edges_left_to_the_runtime(
    tmp_path: Path,
) -> None:
    with MetaStore.open(f"sqlite:///{tmp_path / 'meta.db'}") as meta:
        meta.upsert_system("hub", "hub", str(tmp_path / "hub"))
        meta.upsert_dataset("hub", "t", "topic")
        base = make_context(tmp_path, "lake")
        context = ConnectorContext(**{**base.__dict__, "meta": meta})
        sink = lake(tmp_path, roll_interval="0s")
        sink.open(context)
        sink.assign([TP])
        sink.write_batch("t", fetched("t", 0, 0, [b'{"n": 1}']))
        sink.snapshot()
        sink.close()
        dataset = meta.get_dataset("lake", "t")
        assert (dataset.kind, dataset.description) == ("fileset", "Parquet files of t")
        assert meta.upstream("lake.t") == [], "writing records no edge: the runtime does"
        assert record_lineage(context, sink.lineage()) == 1
        assert [str(e.source) for e in meta.upstream("lake.t")] == ["hub.t"]
        assert meta.get_dataset("lake", "t").description == "Parquet files of t"


def _model_batches(seed: int) -> tuple[list[list[bytes]], dict[tuple[int, str], int]]:
    """Random change events over a small key space (composite key), and the table they
    leave: batches of new keys only, of updates to existing keys, of several changes to
    one key, deletes only, and truncates, so every way the sink applies a batch is taken."""
    rng = random.Random(seed)
    # The first batch creates the table.
    state: dict[tuple[int, str], int] = {(-1, "z"): 0}
    batches = [[event("c", None, {"id": -1, "part": "z", "v": 0})]]
    next_id = 0
    for shape in rng.choices(["new", "update", "mixed", "deletes", "truncate"], k=12):
        batch: list[bytes] = []
        if shape == "new":
            for _ in range(rng.randint(1, 30)):
                key, next_id = (next_id, rng.choice("ab")), next_id + 1
                state[key] = rng.randint(0, 999)
                batch.append(event("c", None, {"id": key[0], "part": key[1], "v": state[key]}))
        elif shape == "update" and state:
            for key in rng.sample(sorted(state), min(len(state), rng.randint(1, 20))):
                state[key] = rng.randint(0, 999)
                batch.append(event("u", None, {"id": key[0], "part": key[1], "v": state[key]}))
        elif shape in ("mixed", "deletes", "update"):
            for _ in range(rng.randint(1, 40)):
                key = (rng.randint(0, max(next_id, 1) + 3), rng.choice("ab"))
                if shape == "deletes" or rng.random() < 0.3:
                    state.pop(key, None)
                    batch.append(event("d", {"id": key[0], "part": key[1]}, None))
                else:
                    state[key] = rng.randint(0, 999)
                    batch.append(event("u", None, {"id": key[0], "part": key[1], "v": state[key]}))
        else:
            state.clear()
            batch.append(event("t", None, None))
            for _ in range(rng.randint(0, 5)):
                key, next_id = (next_id, "a"), next_id + 1
                state[key] = rng.randint(0, 999)
                batch.append(event("c", None, {"id": key[0], "part": key[1], "v": state[key]}))
        if batch:
            batches.append(batch)
    return batches, state


@pytest.mark.parametrize("seed", range(8))
def test_upserts_leave_the_table_the_changes_describe(tmp_path: Path, seed: int) -> None:
    batches, expected = _model_batches(seed)
    sink = duck(tmp_path, mode="upsert", key=["id", "part"])
    write(sink, make_context(tmp_path, "wh"), *batches)
    table = rows(tmp_path)
    found = {(r["id"], r["part"]): r["v"] for r in table}
    assert len(found) == len(table)  # no key twice
    assert found == expected


def test_duckdb_uses_the_threads_it_is_given(tmp_path: Path, context: ConnectorContext) -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_threads() == max(1, cores - 1)
    for settings, threads in (({}, default_threads()), ({"threads": 1}, 1), ({"threads": 3}, 3)):
        sink = duck(tmp_path, **settings)
        sink.open(context)
        try:
            found = sink._connection().execute("SELECT current_setting('threads')").fetchone()
            assert found == (threads,)
            # Another connection of this process to the same file (a flow) still opens.
            with duckdb.connect(str(tmp_path / "w.duckdb")) as other:
                assert other.execute("SELECT 1").fetchone() == (1,)
        finally:
            sink.close()
