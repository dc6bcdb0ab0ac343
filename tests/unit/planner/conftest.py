"""A project with a lake (Parquet), a warehouse (DuckDB file) and a typed hub topic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from _planner_data import EVENTS, event

from trunkline.federation import open_planner
from trunkline.federation.catalog import add_system
from trunkline.planner import Planner
from trunkline.project import Project

CONTRACT = """apiVersion: v3.0.2
kind: DataContract
id: events
version: 1.0.0
status: active
schema:
  - name: events
    properties:
      - {name: id, logicalType: integer, required: true}
      - {name: user_id, logicalType: integer}
      - {name: amount, logicalType: number, physicalType: "decimal(12,2)"}
      - {name: kind, logicalType: string}
      - {name: day, logicalType: date}
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "shop"
    (root / "contracts").mkdir(parents=True)
    (root / "lake").mkdir()
    (root / "contracts" / "events.yaml").write_text(CONTRACT)
    (root / "trunkline.yaml").write_text(
        "hub: {backend: embedded, ack: written}\n"
        "topics:\n  events: {partitions: 2, contract: contracts/events.yaml}\n"
        "flows:\n"
        "  totals:\n"
        "    sql: select kind, count(*) as n, sum(amount) as total from events group by kind\n"
        "    into: wh.main.totals\n"
        "  totals_live:\n"
        "    sql: select kind, count(*) as n, sum(amount) as total, max(id) as last\n"
        "      from events group by kind\n"
        "    into: wh.main.totals_live\n"
        "    freshness: 1s\n"
    )
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT i AS user_id, 'u' || i AS name, i % 5 AS region FROM range(200) t(i))"
            f" TO '{root / 'lake' / 'users.parquet'}'"
        )
    with duckdb.connect(str(root / "wh.duckdb")) as con:
        con.execute(
            "CREATE TABLE regions AS SELECT i AS region, 'r' || i AS rname FROM range(5) t(i)"
        )
    with Project.open(root) as proj:
        proj.apply_topics()
        values = [json.dumps(event(i)).encode() for i in range(EVENTS)]
        proj.hub.produce("events", pa.table({"value": pa.array(values, pa.binary())}))
        add_system(proj, "parquet", "lake", "lake")
        add_system(proj, "duckdb", "wh", "wh.duckdb")
        yield proj


@pytest.fixture
def planner(project: Project) -> Iterator[Planner]:
    planner = open_planner(project)
    try:
        yield planner
    finally:
        planner.close()
