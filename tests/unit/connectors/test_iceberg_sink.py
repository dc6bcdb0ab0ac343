"""The iceberg sink beyond the conformance suite: upserts, commit batching, exactly-once
restarts, schema changes, maintenance, and what other Iceberg readers (DuckDB) see."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from trunkline.connectors import SINKS
from trunkline.connectors.base import ConnectorContext, Sink
from trunkline.connectors.sinks._changes import UNAVAILABLE
from trunkline.errors import IncompatibleChange
from trunkline.hub import TopicPartition
from trunkline.testing.connectors import RecordingMetrics, fetched, make_context

pyiceberg = pytest.importorskip("pyiceberg")
from pyiceberg.catalog.sql import SqlCatalog  # noqa: E402

TP = TopicPartition("t", 0)


def make(settings: dict[str, Any], name: str = "lake") -> Sink:
    sink_class = SINKS.get("iceberg")
    return sink_class(name, sink_class.Config.model_validate({"topics": ["t"], **settings}))  # type: ignore[no-any-return]


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def context(tmp_path: Path) -> ConnectorContext:
    return make_context(tmp_path, "lake")


def table(lake: Path, name: str = "t") -> Any:
    catalog = SqlCatalog(
        "trunkline", uri=f"sqlite:///{lake / 'catalog.db'}", warehouse=lake.as_uri()
    )
    return catalog.load_table(f"trunkline.{name}")


def rows(lake: Path, name: str = "t") -> list[dict[str, Any]]:
    return sorted(table(lake, name).scan().to_arrow().to_pylist(), key=lambda r: r["id"])


def values(*objects: dict[str, Any] | None) -> list[bytes | None]:
    return [None if o is None else json.dumps(o).encode() for o in objects]


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    """DuckDB with its iceberg extension, installed from the PyPI packages (no network)."""
    iceberg = pytest.importorskip("duckdb_extension_iceberg")
    avro = pytest.importorskip("duckdb_extension_avro")
    with tempfile.TemporaryDirectory() as folder:
        con = duckdb.connect(
            config={
                "allow_unsigned_extensions": "true",
                "extension_directory": folder,
                "autoinstall_known_extensions": "false",
            }
        )
        for module, name in ((avro, "avro"), (iceberg, "iceberg")):
            found = sorted(
                (Path(module.__file__).parent / "extensions").rglob("*.duckdb_extension")
            )
            con.execute(f"INSTALL '{found[-1]}'")
            con.execute(f"LOAD {name}")
        yield con
        con.close()


def test_upsert_deletes_truncates_and_keeps_toasted_values(
    lake: Path, context: ConnectorContext, duck: duckdb.DuckDBPyConnection
) -> None:
    sink = make({"warehouse": str(lake), "mode": "upsert", "key": ["id"], "commit_interval": "0s"})
    sink.open(context)
    sink.assign([TP])
    first = values(*({"id": i, "doc": f"long text {i}", "n": i} for i in range(6)))
    sink.write_batch("t", fetched("t", 0, 0, first, [str(i).encode() for i in range(6)]))
    assert sink.snapshot() == {TP: 6}
    envelope = [
        # An update leaving the TOASTed doc unchanged: the stored value must stay.
        {"op": "u", "before": None, "after": {"id": 1, "doc": UNAVAILABLE, "n": 10}},
        {"op": "d", "before": {"id": 2, "doc": None, "n": None}, "after": None},
        {"op": "c", "before": None, "after": {"id": 7, "doc": "new", "n": 7}},
        {"op": "u", "before": None, "after": {"id": 7, "doc": "newer", "n": 8}},
    ]
    sink.write_batch("t", fetched("t", 0, 6, values(*envelope)))
    tomb = fetched("t", 0, 10, [None], [b"3"])
    sink.write_batch("t", tomb)
    assert sink.snapshot() == {TP: 11}
    expected = {0: ("long text 0", 0), 1: ("long text 1", 10), 4: ("long text 4", 4)}
    expected |= {5: ("long text 5", 5), 7: ("newer", 8)}
    got = {r["id"]: (r["doc"], r["n"]) for r in rows(lake)}
    assert got == expected
    # Any Iceberg reader sees the same rows: DuckDB's extension reads the metadata file.
    location = table(lake).metadata_location
    read = duck.sql(f"SELECT id, doc, n FROM iceberg_scan('{location}')").fetchall()
    assert {i: (d, n) for i, d, n in read} == expected
    truncate = {"op": "t", "before": None, "after": None}
    after = {"op": "c", "before": None, "after": {"id": 9, "doc": "x", "n": 9}}
    sink.write_batch("t", fetched("t", 0, 11, values(truncate, after)))
    sink.snapshot()
    sink.close()
    assert [(r["id"], r["doc"]) for r in rows(lake)] == [(9, "x")]


def test_commits_wait_for_the_interval_and_offsets_follow_commits(
    lake: Path, context: ConnectorContext
) -> None:
    sink = make({"warehouse": str(lake), "commit_interval": "1h", "commit_size": "1KiB"})
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", fetched("t", 0, 0, values({"id": 1, "s": "a"})))
    assert sink.snapshot() == {}, "nothing is committed (or reported) before the interval"
    big = values(*({"id": i, "s": "x" * 50} for i in range(2, 60)))
    sink.write_batch("t", fetched("t", 0, 1, big))
    assert sink.snapshot() == {TP: 59}, "commit_size forces a commit"
    sink.write_batch("t", fetched("t", 0, 59, values({"id": 99, "s": "z"})))
    sink.drain()
    assert sink.snapshot() == {TP: 60}, "draining commits everything"
    sink.close()
    assert len(rows(lake)) == 60
    assert len(table(lake).snapshots()) == 2


def test_a_restart_never_commits_twice(lake: Path, context: ConnectorContext) -> None:
    settings = {"warehouse": str(lake), "commit_interval": "0s"}
    first = make(settings)
    first.open(context)
    first.assign([TP])
    first.write_batch("t", fetched("t", 0, 0, values(*({"id": i} for i in range(10)))))
    assert first.snapshot() == {TP: 10}
    first.close()  # the hub's offset commit never happened: the runtime would replay from 0
    second = make(settings)
    second.open(context)
    assert second.assign([TP]) == {TP: 10}, "the offsets come from the snapshot summary"
    # Even records before them, offered again, are not written twice.
    second.write_batch("t", fetched("t", 0, 5, values(*({"id": i} for i in range(5, 12)))))
    assert second.snapshot() == {TP: 12}
    second.close()
    assert [r["id"] for r in rows(lake)] == list(range(12))
    summary = table(lake).current_snapshot().summary.additional_properties
    assert json.loads(summary["trunkline.offsets.lake"]) == {"t/0": 12}


def test_new_fields_added_values_that_do_not_fit_dead_lettered(
    lake: Path, context: ConnectorContext
) -> None:
    sink = make({"warehouse": str(lake), "commit_interval": "0s"})
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", fetched("t", 0, 0, values({"id": 1, "n": 5})))
    later = values({"id": 2, "n": 6, "extra": {"a": 1}}, {"id": 3, "n": 2.5}, {"id": 4, "n": 7})
    sink.write_batch("t", fetched("t", 0, 1, later))
    sink.snapshot()
    assert [(r["id"], r["extra"]) for r in rows(lake)] == [(1, None), (2, {"a": 1}), (4, None)]
    dead = context.dead_letters.records  # type: ignore[attr-defined]
    assert [(o, "'n'" in e) for _, _, o, e in dead] == [(2, True)]
    with pytest.raises(IncompatibleChange, match="column 'n'"):
        sink.write_batch("t", fetched("t", 0, 4, values({"id": 5, "n": "text"})))
    sink.close()


def test_declared_types_override_the_first_values(lake: Path, context: ConnectorContext) -> None:
    sink = make({"warehouse": str(lake), "commit_interval": "0s", "schema": {"n": "double"}})
    sink.open(context)
    sink.assign([TP])
    sink.write_batch("t", fetched("t", 0, 0, values({"id": 1, "n": 5}, {"id": 2, "n": 2.5})))
    sink.snapshot()
    sink.close()
    assert [r["n"] for r in rows(lake)] == [5.0, 2.5]


def test_maintenance_keeps_metadata_small(lake: Path, context: ConnectorContext) -> None:
    settings = {
        "warehouse": str(lake),
        "commit_interval": "0s",
        "metadata_versions": 3,
        "snapshots_keep": 3,
        "snapshot_max_age": "0s",
        "expire_interval": "0s",
    }
    sink = make(settings)
    sink.open(context)
    sink.assign([TP])
    for i in range(25):
        sink.write_batch("t", fetched("t", 0, i, values({"id": i})))
        sink.snapshot()
    sink.close()
    metrics = context.metrics
    assert isinstance(metrics, RecordingMetrics)
    assert metrics.counters["commits"] == 25
    assert metrics.counters["snapshots_expired"] >= 20
    iceberg = table(lake)
    assert len(iceberg.snapshots()) <= 3
    metadata = list((lake / "trunkline" / "t" / "metadata").iterdir())
    assert len([m for m in metadata if m.name.endswith(".metadata.json")]) <= 4
    assert len(metadata) < 25, sorted(m.name for m in metadata)
    data = list((lake / "trunkline" / "t" / "data").iterdir())
    assert len(data) == 25, "appended data files are all still live"
    assert [r["id"] for r in rows(lake)] == list(range(25))
    props = iceberg.properties
    assert props["write.metadata.delete-after-commit.enabled"] == "true"
    assert props["write.metadata.previous-versions-max"] == "3"


def test_upserted_files_replaced_are_deleted_once_expired(
    lake: Path, context: ConnectorContext, duck: duckdb.DuckDBPyConnection
) -> None:
    settings = {
        "warehouse": str(lake),
        "commit_interval": "0s",
        "mode": "upsert",
        "key": ["id"],
        "snapshots_keep": 1,
        "snapshot_max_age": "0s",
        "expire_interval": "0s",
    }
    sink = make(settings)
    sink.open(context)
    sink.assign([TP])
    for i in range(10):
        sink.write_batch("t", fetched("t", 0, i, values({"id": i % 2, "v": i})))
        sink.snapshot()
    sink.close()
    assert {r["id"]: r["v"] for r in rows(lake)} == {0: 8, 1: 9}
    data = list((lake / "trunkline" / "t" / "data").iterdir())
    assert len(data) <= 3, "files rewritten by copy-on-write are gone with their snapshots"
    location = table(lake).metadata_location
    assert sorted(duck.sql(f"SELECT id, v FROM iceberg_scan('{location}')").fetchall()) == [
        (0, 8),
        (1, 9),
    ]


def test_settings_are_strict() -> None:
    config = SINKS.get("iceberg").Config
    with pytest.raises(ValueError, match="needs the primary key"):
        config.model_validate({"topics": ["t"], "mode": "upsert"})
    with pytest.raises(ValueError, match="unknown type"):
        config.model_validate({"topics": ["t"], "schema": {"n": "dubble"}})


def test_a_table_gets_the_types_of_the_values(lake: Path, context: ConnectorContext) -> None:
    sink = make({"warehouse": str(lake), "commit_interval": "0s"})
    sink.open(context)
    sink.assign([TP])
    record = {"id": 1, "ts": "2026-01-02T03:04:05Z", "tags": ["a"], "ok": True}
    sink.write_batch("t", fetched("t", 0, 0, values(record)))
    sink.snapshot()
    sink.close()
    schema = table(lake).schema().as_arrow()
    assert pa.types.is_timestamp(schema.field("ts").type)
    assert pa.types.is_list(schema.field("tags").type) or pa.types.is_large_list(
        schema.field("tags").type
    )


def test_the_planner_reads_a_sink_table_with_the_types_it_registered(tmp_path: Path) -> None:
    """The sink registers SQL types (as ``catalog add iceberg`` would), so a query over its
    table, without discovering it again, returns the values DuckDB returns over the same
    data: a timestamp stays a timestamp, a decimal a decimal."""
    from trunkline.federation import open_planner
    from trunkline.project import Project

    declared = {
        "i": "int32",
        "l": "int64",
        "f": "double",
        "amount": "decimal(12,2)",
        "ts": "timestamp",
        "tstz": "timestamptz",
        "day": "date",
        "s": "string",
        "ok": "boolean",
    }
    records = [
        {
            "i": n,
            "l": n * 10_000_000_000,
            "f": n / 4,
            "amount": f"{n}.{n:02d}",
            "ts": f"2026-01-{n + 1:02d}T03:04:05",
            "tstz": f"2026-01-{n + 1:02d}T03:04:05+02:00",
            "day": f"2026-02-{n + 1:02d}",
            "s": f"s{n}",
            "ok": n % 2 == 0,
            "tags": [f"t{n}", "x"],
            "point": {"x": n, "label": f"p{n}"},
        }
        for n in range(6)
    ]
    root = tmp_path / "p"
    root.mkdir()
    (root / "trunkline.yaml").write_text("hub: {backend: embedded}\ntopics:\n  t: {}\n")
    with Project.open(root) as project:
        project.sync_catalog()
        context = make_context(root, "lake")
        context = ConnectorContext(**{**context.__dict__, "meta": project.meta})
        sink = make({"warehouse": "lake", "commit_interval": "0s", "schema": declared})
        sink.open(context)
        sink.assign([TP])
        sink.write_batch("t", fetched("t", 0, 0, values(*records)))
        sink.snapshot()
        sink.close()
        # Lineage is the runtime's to record, at start (Sink.lineage), not the sink's.
        assert project.meta.upstream("lake.trunkline.t") == []
        registered = project.meta.get_dataset("lake", "trunkline.t").columns or ()
        assert {c.name: c.type for c in registered} == {
            "i": "INTEGER",
            "l": "BIGINT",
            "f": "DOUBLE",
            "amount": "DECIMAL(12,2)",
            "ts": "TIMESTAMP",
            "tstz": "TIMESTAMPTZ",
            "day": "DATE",
            "s": "VARCHAR",
            "ok": "BOOLEAN",
            "tags": "VARCHAR[]",
            "point": 'STRUCT("x" BIGINT, "label" VARCHAR)',
        }
        # tags[1] reads the first element of a list, but the first character of a text.
        columns = ", ".join([*declared, "tags", "point", "tags[1] as first_tag", "point.x as px"])
        sql = (
            f"select {columns} from lake.trunkline.t "
            "where ts >= timestamp '2026-01-03 00:00:00' and day < date '2026-02-06' order by i"
        )
        planner = open_planner(project)
        try:
            got = planner.query(sql)
        finally:
            planner.close()
    expected_data = table(root / "lake").scan().to_arrow()
    with duckdb.connect() as con:
        con.register("t", expected_data)
        expected = con.execute(sql.replace("lake.trunkline.t", "t")).to_arrow_table()
    assert [f.type for f in got.schema] == [f.type for f in expected.schema]
    assert got.to_pylist() == expected.to_pylist()
    assert len(got) == 3
    assert got.column("first_tag").to_pylist() == ["t2", "t3", "t4"]
