"""The iceberg sink with its SQL catalog in PostgreSQL (a shared deployment's setup)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trunkline.connectors import SINKS
from trunkline.hub import TopicPartition
from trunkline.testing.connectors import fetched, make_context

pytest.importorskip("pyiceberg")


@pytest.mark.postgres
def test_catalog_in_postgres_with_exactly_once_restart(tmp_path: Path, postgres_db: str) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    sink_class = SINKS.get("iceberg")
    settings = {
        "topics": ["t"],
        "warehouse": str(tmp_path / "lake"),
        "catalog": postgres_db,
        "mode": "upsert",
        "key": ["id"],
        "commit_interval": "0s",
    }
    tp = TopicPartition("t", 0)
    values = [json.dumps({"id": i % 5, "v": i}).encode() for i in range(20)]
    context = make_context(tmp_path, "lake")
    first = sink_class("lake", sink_class.Config.model_validate(settings))
    first.open(context)
    first.assign([tp])
    first.write_batch("t", fetched("t", 0, 0, values[:12]))
    assert first.snapshot() == {tp: 12}
    first.close()
    second = sink_class("lake", sink_class.Config.model_validate(settings))
    second.open(context)
    assert second.assign([tp]) == {tp: 12}
    second.write_batch("t", fetched("t", 0, 12, values[12:]))
    assert second.snapshot() == {tp: 20}
    second.close()
    uri = "postgresql+psycopg://" + postgres_db.split("://", 1)[1]
    catalog = SqlCatalog("trunkline", uri=uri, warehouse=(tmp_path / "lake").as_uri())
    try:
        rows = catalog.load_table("trunkline.t").scan().to_arrow().to_pylist()
    finally:
        catalog.engine.dispose()
    assert {r["id"]: r["v"] for r in rows} == {i: 15 + i for i in range(5)}
