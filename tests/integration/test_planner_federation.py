"""The planner over real PostgreSQL (and Spark in local mode): TPC-H at scale 0.01 laid out
across PostgreSQL, the lake and the hub, each query compared with DuckDB over the same
generated data."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from service_support import JDBC_SCRIPT, require_service, run_service_script
from trunkline.federation import open_planner
from trunkline.federation.catalog import add_system
from trunkline.perf._tpch import QUERIES, setup_project
from trunkline.planner import Planner, explain
from trunkline.project import Project

pytestmark = pytest.mark.postgres


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    def value(v: Any) -> Any:
        return round(float(v), 6) if isinstance(v, Decimal | float) else v

    return [tuple(value(v) for v in row.values()) for row in table.to_pylist()]


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory, postgres_service: str) -> Iterator[Path]:
    import psycopg

    folder = tmp_path_factory.mktemp("tpch")
    name = f"tpch_{os.getpid()}"
    admin = postgres_service
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield setup_project(folder, 0.01, dsn)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tpch: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    raw = tpch.parent / "raw"
    for table in ("customer", "orders", "nation", "region", "part", "supplier", "lineitem"):
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM '{raw / table}.parquet'")
    return con


@pytest.fixture
def planner(tpch: Path) -> Iterator[Planner]:
    with Project.open(tpch) as project:
        planner = open_planner(project)
        try:
            yield planner
        finally:
            planner.close()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_tpch_equals_duckdb(
    planner: Planner, reference: duckdb.DuckDBPyConnection, name: str
) -> None:
    expected = reference.execute(QUERIES[name]).to_arrow_table()
    assert rows(planner.query(QUERIES[name])) == rows(expected)


def test_customer_orders_join_runs_in_postgres(planner: Planner) -> None:
    plan = planner.plan(QUERIES["q3"])
    join = next(s for s in plan.steps if s.role == "join")
    assert join.engine == "tpch" and '"public"."customer"' in join.text
    assert "c_mktsegment" not in plan.result.text  # filtered in PostgreSQL, not moved
    planner.run(plan)
    assert join.actual is not None and join.actual.rows < 3000
    assert "join on tpch" in explain(plan)


def test_semi_join_reduces_the_orders_scan(planner: Planner) -> None:
    plan = planner.plan(QUERIES["q12"])
    keys = [s for s in plan.steps if s.role == "keys"]
    assert keys, explain(plan)
    scan = next(s for s in plan.steps if s.engine == "tpch")
    assert "ANY($1)" in scan.text
    planner.run(plan)
    assert scan.actual is not None and scan.actual.rows < 15_000


def test_password_comes_from_the_environment_and_is_never_stored(
    tpch: Path, postgres_service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_service)
    dsn = f"postgresql://{parts.username}:${{TL_TEST_PW}}@{parts.hostname}:{parts.port}/tpch_{os.getpid()}"
    with Project.open(tpch) as project:
        with pytest.raises(Exception, match="TL_TEST_PW"):
            add_system(project, "postgres", "again", dsn, env={})
        monkeypatch.setenv("TL_TEST_PW", "not-needed-with-trust")
        registered = add_system(project, "postgres", "again", dsn)
        try:
            assert {d.name for d in registered.datasets} >= {"public.orders", "public.customer"}
            system = project.meta.get_system("again")
            assert "not-needed" not in system.location and "TL_TEST_PW" not in system.location
            assert system.options["password_env"] == "TL_TEST_PW"
            orders = project.meta.get_dataset("again", "public.orders")
            assert orders.rows == 15_000 and orders.stats_source == "pg_class.reltuples"
        finally:
            project.meta.delete_system("again")


# Spark -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_session() -> Iterator[Any]:
    try:
        from trunkline.engines.spark import jdbc_jar, shared_session, stop_shared_session
    except ImportError as exc:  # pragma: no cover - pyspark missing
        require_service("spark", f"pyspark is not installed: {exc}")
    if shutil.which("java") is None:
        require_service("spark", "java is not on PATH")
    if jdbc_jar() is None:
        fetched = run_service_script(JDBC_SCRIPT, "fetch")
        if fetched.returncode != 0 or jdbc_jar() is None:
            require_service(
                "spark",
                f"no PostgreSQL JDBC jar; {JDBC_SCRIPT} fetch exited {fetched.returncode}:\n"
                f"{fetched.stderr}",
            )
    try:
        session = shared_session()
    except Exception as exc:
        require_service("spark", f"the session did not start: {exc}")
    try:
        yield session
    finally:
        stop_shared_session()


@pytest.mark.spark
@pytest.mark.parametrize("name", ["q1", "q3", "q12", "q18"])
def test_spark_coordinates_and_equals_duckdb(
    tpch: Path, spark_session: Any, reference: duckdb.DuckDBPyConnection, name: str
) -> None:
    with Project.open(tpch) as project:
        base = open_planner(project, spark={})
        # Without DuckDB, Spark must coordinate: it reads the lake and PostgreSQL (JDBC) itself.
        planner = Planner(
            project.meta, [e for e in base.engines if e.name != "duckdb"], base.catalog.layouts
        )
        try:
            plan = planner.plan(QUERIES[name])
            assert plan.result.engine == "spark"
            result = planner.run(plan)
        finally:
            base.close()
    expected = reference.execute(QUERIES[name]).to_arrow_table()
    assert rows(result) == rows(expected)
