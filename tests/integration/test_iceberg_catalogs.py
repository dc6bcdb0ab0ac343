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


@pytest.mark.postgres
def test_catalog_add_iceberg_with_the_catalog_in_postgres(tmp_path: Path, postgres_db: str) -> None:
    """`catalog add iceberg NAME postgresql://user:${VAR}@host/db` discovers and scans."""
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog
    from sqlalchemy.engine import make_url

    from trunkline.federation import open_planner
    from trunkline.federation.catalog import add_system
    from trunkline.project import Project

    url = make_url(postgres_db)
    catalog = SqlCatalog(
        "trunkline",
        uri=url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
        warehouse=(tmp_path / "lake").as_uri(),
    )
    catalog.create_namespace("shop")
    table = catalog.create_table("shop.orders", schema=pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": pa.array(range(100), pa.int64())}))
    catalog.engine.dispose()
    password = url.password or ""
    # The password as ${VAR}, read from the environment (empty for a trust-auth server).
    location = f"postgresql://{url.username}:${{ICE_PW}}@{url.host}:{url.port}/{url.database}"
    root = tmp_path / "p"
    root.mkdir()
    (root / "trunkline.yaml").write_text("hub: {backend: embedded}\n")
    env = {"ICE_PW": password}
    with Project.open(root) as project:
        registered = add_system(project, "iceberg", "ice", location, env=env)
        assert [(d.name, d.rows) for d in registered.datasets] == [("shop.orders", 100)]
        system = project.meta.get_system("ice")
        # As for PostgreSQL systems: the catalog keeps where the password is, never it.
        assert dict(system.options) == {"password_env": "ICE_PW"}
        assert "ICE_PW" not in system.location and (not password or password not in system.location)
        planner = open_planner(project, env=env)
        try:
            result = planner.query("select count(*) as n from ice.shop.orders where id < 10")
        finally:
            planner.close()
    assert result.to_pylist() == [{"n": 10}]
