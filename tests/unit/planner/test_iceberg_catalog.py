"""Iceberg systems in the catalog: discovery from a real SQL catalog written by pyiceberg, and
scans placed on the Iceberg engine with projections and filters pushed into pyiceberg."""

from __future__ import annotations

import json
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from _planner_data import EVENTS, event

from trunkline.cli import main
from trunkline.errors import ConfigError, EngineError, MissingDependency
from trunkline.federation import open_planner
from trunkline.federation.catalog import add_system
from trunkline.planner.explain import explain
from trunkline.project import Project

pytest.importorskip("pyiceberg")


def _payments(n: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "user_id": pa.array([i % 200 for i in range(n)], pa.int64()),
            "method": pa.array(["card", "sepa", "paypal", None][i % 4] for i in range(n)),
            "amount": pa.array([Decimal(i % 97) / 4 for i in range(n)], pa.decimal128(12, 2)),
        }
    )


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A SQL catalog on SQLite with two tables: ``pay.payments`` (three appends, so three
    data files) and an empty ``pay.refunds``."""
    from pyiceberg.catalog.sql import SqlCatalog

    folder = tmp_path / "ice"
    folder.mkdir()
    catalog = SqlCatalog(
        "trunkline", uri=f"sqlite:///{folder / 'catalog.db'}", warehouse=folder.as_uri()
    )
    catalog.create_namespace("pay")
    data = _payments(3000)
    table = catalog.create_table("pay.payments", schema=data.schema)
    for start in (0, 1000, 2000):
        table.append(data.slice(start, 1000))
    catalog.create_table("pay.refunds", schema=pa.schema([("id", pa.int64())]))
    catalog.engine.dispose()
    return folder


def test_catalog_add_iceberg_discovers_tables_columns_and_snapshot_stats(
    project: Project, lake: Path
) -> None:
    registered = add_system(project, "iceberg", "ice", f"sqlite:///{lake / 'catalog.db'}")
    by_name = {d.name: d for d in registered.datasets}
    assert sorted(by_name) == ["pay.payments", "pay.refunds"]
    payments = by_name["pay.payments"]
    assert payments.rows == 3000 and (payments.size_bytes or 0) > 0
    assert payments.stats_source == "iceberg snapshot summary"
    assert [(c.name, c.type) for c in payments.columns or ()] == [
        ("id", "BIGINT"),
        ("user_id", "BIGINT"),
        ("method", "VARCHAR"),
        ("amount", "DECIMAL(12,2)"),
    ]
    assert by_name["pay.refunds"].rows == 0
    # The warehouse folder names the same catalog (the iceberg sink's layout).
    again = add_system(project, "iceberg", "ice2", str(lake))
    assert sorted(d.name for d in again.datasets) == ["pay.payments", "pay.refunds"]


def test_iceberg_scan_pushes_projection_and_filters_and_joins_with_the_hub(
    project: Project, lake: Path
) -> None:
    add_system(project, "iceberg", "ice", f"sqlite:///{lake / 'catalog.db'}")
    sql = (
        "select p.method, count(*) as n, sum(p.amount) as total, count(distinct e.kind) as kinds "
        "from ice.pay.payments p join events e on e.id = p.id "
        "where p.id >= 1500 and p.method in ('card', 'sepa') group by 1 order by 1"
    )
    planner = open_planner(project)
    try:
        plan = planner.plan(sql)
        scan = next(s for s in plan.steps if s.engine == "iceberg")
        got = planner.run(plan).to_pylist()
    finally:
        planner.close()
    assert scan.role == "scan" and "filter(s) applied while reading" in scan.reason
    assert "row_filter" in scan.text and "p.amount" not in explain(plan).split("row_filter")[1]
    with duckdb.connect() as con:
        con.register("payments", _payments(3000))
        con.register("events", pa.Table.from_pylist([event(i) for i in range(EVENTS)]))
        expected = con.execute(
            "select p.method, count(*) as n, sum(p.amount) as total, "
            "count(distinct e.kind) as kinds from payments p join events e on e.id = p.id "
            "where p.id >= 1500 and p.method in ('card', 'sepa') group by 1 order by 1"
        ).fetchall()
    assert [tuple(r.values()) for r in got] == expected


def test_iceberg_filters_the_engine_cannot_run_stay_on_the_coordinator(
    project: Project, lake: Path
) -> None:
    add_system(project, "iceberg", "ice", f"sqlite:///{lake / 'catalog.db'}")
    planner = open_planner(project)
    try:
        plan = planner.plan(
            "select count(*) as n from ice.pay.payments where id >= 2990 and lower(method) = 'card'"
        )
        scan = next(s for s in plan.steps if s.engine == "iceberg")
        rows = planner.run(plan).to_pylist()
    finally:
        planner.close()
    assert "1 filter(s) applied while reading" in scan.reason
    assert rows == [{"n": sum(1 for i in range(2990, 3000) if i % 4 == 0)}]


def test_analyze_iceberg_table(project: Project, lake: Path) -> None:
    from trunkline.federation.catalog import analyze_dataset

    add_system(project, "iceberg", "ice", f"sqlite:///{lake / 'catalog.db'}")
    measured = analyze_dataset(project, "ice.pay.payments")
    assert measured.rows == 3000
    stats = project.meta.column_stats("ice", "pay.payments")
    assert stats["method"].distinct == 3 and stats["id"].maximum == 2999


def test_bad_iceberg_locations_say_what_was_expected(project: Project, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no SQLite file at .*missing\.db; expected a SQL"):
        add_system(project, "iceberg", "ice", "sqlite:///missing.db")
    with pytest.raises(ConfigError, match=r"found no catalog\.db in"):
        add_system(project, "iceberg", "ice", str(tmp_path))
    with pytest.raises(ConfigError, match=r"expected a SQL catalog URI"):
        add_system(project, "iceberg", "ice", "thrift://metastore:9083")
    with pytest.raises(ConfigError, match=r"\$\{VAR\}") as caught:
        add_system(project, "iceberg", "ice", "postgresql://u:hunter2@h/db")
    assert "hunter2" not in str(caught.value)
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()
    with pytest.raises(EngineError, match="expected an Iceberg SQL catalog"):
        add_system(project, "iceberg", "ice", f"sqlite:///{plain}")
    assert "ice" not in {s.name for s in project.meta.list_systems()}


def test_missing_pyiceberg_names_the_extra(
    project: Project, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyiceberg", None)
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDependency, match=r"pip install 'trunkline\[iceberg\]'"):
        add_system(project, "iceberg", "ice", f"sqlite:///{lake / 'catalog.db'}")


def test_cli_catalog_add_iceberg(
    project: Project, lake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["-p", str(project.root), "catalog", "add", "iceberg", "ice", str(lake), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {d["name"]: d["rows"] for d in data["datasets"]} == {
        "ice.pay.payments": 3000,
        "ice.pay.refunds": 0,
    }


PREDICATES = [
    "id between 100 and 200 and method is not null",
    "method is null or amount < 1.5",
    "not (method = 'card') and id < 50",
    "method in ('paypal', 'sepa') and amount >= 10",
    "20 < amount and id <> 7",
    "paid_at >= '2024-01-01 00:30:00+00' and id < 3000",  # text to timestamptz
    "lower(method) = 'sepa' and amount > 23.5",  # one conjunct stays on the coordinator
]


@pytest.mark.parametrize("predicate", PREDICATES)
def test_iceberg_scans_equal_duckdb_over_the_same_rows(
    project: Project, tmp_path: Path, predicate: str
) -> None:
    """Differential: each filter through the Iceberg engine equals DuckDB over the same data."""
    from pyiceberg.catalog.sql import SqlCatalog

    data = _payments(3000).append_column(
        "paid_at",
        pa.array([i * 1000 for i in range(3000)], pa.timestamp("ms")).cast(
            pa.timestamp("us", tz="UTC")
        ),
    )
    folder = tmp_path / "ice"
    folder.mkdir()
    catalog = SqlCatalog(
        "trunkline", uri=f"sqlite:///{folder / 'catalog.db'}", warehouse=folder.as_uri()
    )
    catalog.create_namespace("pay")
    table = catalog.create_table("pay.timed", schema=data.schema)
    for start in range(0, 3000, 750):
        table.append(data.slice(start, 750))
    catalog.engine.dispose()
    add_system(project, "iceberg", "ice", str(folder))
    sql = f"select id, method, amount from ice.pay.timed where {predicate} order by id"
    planner = open_planner(project)
    try:
        plan = planner.plan(sql)
        got = planner.run(plan)
    finally:
        planner.close()
    assert any(s.engine == "iceberg" for s in plan.steps)
    with duckdb.connect() as con:
        con.register("timed", data)
        expected = con.execute(sql.replace("ice.pay.timed", "timed")).to_arrow_table()
    assert got.to_pylist() == expected.to_pylist()


def test_a_constant_pyiceberg_cannot_bind_falls_back_to_an_exact_filter(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyiceberg refuses to bind text to a timestamp column; the scan reads unpruned and the
    filter is still applied exactly (by DuckDB over the scanned rows)."""
    import sqlglot

    from trunkline.engines import iceberg
    from trunkline.engines.base import Fragment, Source

    filters: list[str] = []
    scan = iceberg.IcebergEngine._scan

    def spy(source: Source, table: object, row_filter: object, columns: list[str]) -> pa.Table:
        filters.append(type(row_filter).__name__)
        return scan(source, table, row_filter, columns)  # type: ignore[arg-type]

    monkeypatch.setattr(iceberg.IcebergEngine, "_scan", staticmethod(spy))
    source = Source(
        "ice",
        "iceberg",
        f"sqlite:///{lake / 'catalog.db'}",
        "pay.payments",
        (("id", pa.int64()), ("method", pa.string())),
    )
    query = sqlglot.parse_one(
        "select p.id from r as p where p.id >= '2990 apples' or p.method = 'x'", read="duckdb"
    )
    engine = iceberg.IcebergEngine()
    try:
        with pytest.raises(EngineError, match=r"filtering ice\.pay\.payments failed"):
            engine.run(Fragment(query, sources={"r": source}))
        assert filters == ["Or", "AlwaysTrue"]
        filters.clear()
        query = sqlglot.parse_one(
            "select p.id from r as p where p.id >= '2990' and p.method = 'card'", read="duckdb"
        )
        rows = engine.run(Fragment(query, sources={"r": source})).column("id").to_pylist()
    finally:
        engine.close()
    assert rows == [2992, 2996] and filters == ["And"]


def test_iceberg_timestamp_columns_keep_their_type(project: Project, tmp_path: Path) -> None:
    """A timestamp without time zone is discovered as TIMESTAMP and planned as a timestamp."""
    from pyiceberg.catalog.sql import SqlCatalog

    folder = tmp_path / "ice"
    folder.mkdir()
    catalog = SqlCatalog(
        "trunkline", uri=f"sqlite:///{folder / 'catalog.db'}", warehouse=folder.as_uri()
    )
    catalog.create_namespace("n")
    data = pa.table({"at": pa.array([i * 3_600_000_000 for i in range(48)], pa.timestamp("us"))})
    catalog.create_table("n.t", schema=data.schema).append(data)
    catalog.engine.dispose()
    (dataset,) = add_system(project, "iceberg", "ice", str(folder)).datasets
    assert [(c.name, c.type) for c in dataset.columns or ()] == [("at", "TIMESTAMP")]
    planner = open_planner(project)
    try:
        # The planner types the column as a timestamp (not text) when it annotates queries.
        assert planner.catalog.source(dataset).columns == (("at", pa.timestamp("us")),)
        result = planner.query(
            "select count(*) as n from ice.n.t where at >= timestamp '1970-01-02 00:00:00'"
        )
    finally:
        planner.close()
    assert result.column("n").to_pylist() == [24]
