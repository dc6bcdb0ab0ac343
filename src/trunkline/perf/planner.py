"""``trunkline perf planner``: TPC-H across PostgreSQL, the lake and the hub, three ways.

Same data, same processes, one run (see :mod:`trunkline.perf._tpch` for the layout):

* ``naive``: copy every table the query names, whole, into DuckDB (PostgreSQL tables
  through ADBC, Parquet files read whole, the topic through the hub's Arrow reader), then
  run the query there;
* ``duckdb``: DuckDB federation: PostgreSQL ATTACHed through DuckDB's postgres extension,
  Parquet read in place, the topic through the same Arrow reader;
* ``trunkline``: the planner, with plans prepared once (planning time is reported apart,
  as ``plan_seconds``).

Per query: the median of ``repeats`` runs after one warm-up (variants alternate within a
repeat), rows and bytes moved between systems, the plan hash; every variant's rows must be
identical. ``ratio_vs_duckdb`` is trunkline's time over DuckDB federation's.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from trunkline.engines.duckdb import run_over_arrow
from trunkline.perf._tpch import LAKE_TABLES, PG_TABLES, QUERIES, TOPIC, setup_project

Figures = dict[str, Any]


def _tables(sql: str) -> set[str]:
    query = sqlglot.parse_one(sql, read="duckdb")
    return {t.name for t in query.find_all(exp.Table)}


def _normal(table: pa.Table) -> list[tuple[Any, ...]]:
    def value(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.9g}")
        if isinstance(v, Decimal):
            return v.normalize()
        return v

    return [tuple(value(v) for v in row.values()) for row in table.to_pylist()]


class _Sources:
    """Reads the benchmark's sources whole, for the naive and DuckDB-federation variants."""

    def __init__(self, project: Any, dsn: str) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        from trunkline.engines._types import decode_numeric
        from trunkline.engines.hub import HubEngine
        from trunkline.federation.session import TopicLayouts

        self._decode_numeric = decode_numeric
        self._pg = adbc.connect(dsn)
        self._lake = project.root / "lake"
        self._hub = HubEngine(project.hub, TopicLayouts(project))
        self._layout = TopicLayouts(project)(TOPIC)

    def postgres(self, table: str) -> pa.Table:
        cursor = self._pg.cursor()
        cursor.execute(f"SELECT * FROM {table}")
        result = self._decode_numeric(cursor.fetch_arrow_table())
        cursor.close()
        self._pg.rollback()
        return result

    def parquet(self, table: str) -> pa.Table:
        return pq.read_table(self._lake / f"{table}.parquet")

    def topic(self) -> pa.Table:
        """The whole topic through the hub engine's reader (what every variant uses)."""
        from trunkline.engines.base import Fragment, Source

        source = Source("hub", "hub", "", TOPIC, self._layout.columns)
        names = [n for n, _ in self._layout.fields]
        query = exp.select(*[exp.column(n, quoted=True) for n in names]).from_("t")
        return self._hub.run(Fragment(query, {"t": source}))

    def close(self) -> None:
        self._pg.close()


def _naive(sources: _Sources, sql: str) -> tuple[pa.Table, int, int]:
    names = _tables(sql)
    tables: dict[str, pa.Table] = {}
    for name in names:
        if name in PG_TABLES:
            tables[name] = sources.postgres(name)
        elif name in LAKE_TABLES:
            tables[name] = sources.parquet(name)
        elif name == "lineitem":
            tables["lineitem_history"] = sources.parquet("lineitem_history")
            tables[TOPIC] = sources.topic()
    view = (
        [f"CREATE VIEW lineitem AS SELECT * FROM lineitem_history UNION ALL SELECT * FROM {TOPIC}"]
        if "lineitem" in names
        else []
    )
    with duckdb.connect() as con:
        result = run_over_arrow(con, sql, tables, view)
    return result, sum(t.num_rows for t in tables.values()), sum(t.nbytes for t in tables.values())


class _Federation:
    """DuckDB with PostgreSQL attached through its postgres extension."""

    def __init__(self, sources: _Sources, dsn: str, lake: Path) -> None:
        import duckdb_extension_postgres_scanner as extension

        path = Path(extension.__file__).parent / "extensions"
        files = sorted(path.rglob("postgres_scanner.duckdb_extension"))
        self._con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
        self._con.execute(f"INSTALL '{files[-1]}'")
        self._con.execute("LOAD postgres_scanner")
        self._con.execute(f"ATTACH '{_libpq(dsn)}' AS pg (TYPE postgres, READ_ONLY)")
        for table in PG_TABLES:
            self._con.execute(f"CREATE VIEW {table} AS SELECT * FROM pg.public.{table}")
        for table in (*LAKE_TABLES, "lineitem_history"):
            self._con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{lake / table}.parquet')"
            )
        self._sources = sources

    def run(self, sql: str) -> tuple[pa.Table, int, int]:
        names = _tables(sql)
        moved_rows = moved_bytes = 0
        con = self._con.cursor()
        try:
            inputs = {}
            if "lineitem" in names:
                recent = self._sources.topic()
                moved_rows += recent.num_rows
                moved_bytes += recent.nbytes
                inputs[TOPIC] = recent
            view = [
                "CREATE OR REPLACE TEMP VIEW lineitem AS SELECT * FROM lineitem_history "
                f"UNION ALL SELECT * FROM {TOPIC}"
            ]
            con.execute("PRAGMA enable_profiling = 'no_output'")
            scanned: list[tuple[int, int]] = []
            result = run_over_arrow(
                con,
                sql,
                inputs,
                view if inputs else [],
                after=lambda c: scanned.append(_postgres_scanned(c)),
            )
            moved_rows += scanned[0][0]
            moved_bytes += scanned[0][1]
        finally:
            con.close()
        return result, moved_rows, moved_bytes

    def close(self) -> None:
        self._con.close()


def _libpq(dsn: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    fields = {
        "host": parts.hostname or "localhost",
        "port": str(parts.port or 5432),
        "dbname": parts.path.lstrip("/"),
        "user": parts.username or "postgres",
    }
    if parts.password:
        fields["password"] = parts.password
    return " ".join(f"{k}={v}" for k, v in fields.items())


def _postgres_scanned(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Rows the last query's PostgreSQL scans returned, and their bytes (8 per value)."""
    try:
        profile = json.loads(con.get_profiling_information(format="json"))
    except (duckdb.Error, ValueError, TypeError):
        return 0, 0
    rows = width = 0

    def walk(node: dict[str, Any]) -> None:
        nonlocal rows, width
        name = str(node.get("operator_name", "") or node.get("operator_type", ""))
        extra = node.get("extra_info") or {}
        text = json.dumps(extra).upper()
        if "POSTGRES" in name.upper() or "POSTGRES" in text:
            count = int(node.get("operator_cardinality", 0) or 0)
            projections = extra.get("Projections") if isinstance(extra, dict) else None
            columns = len(projections.split("\n")) if isinstance(projections, str) else 1
            rows += count
            width += count * columns * 8
        for child in node.get("children", []):
            walk(child)

    walk(profile)
    return rows, width


def _median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else math.nan


def _geomean(values: list[float]) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def run(
    scale: float,
    folder: Path,
    dsn: str,
    *,
    repeats: int = 5,
    queries: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Figures:
    """Set the data up in ``folder`` and PostgreSQL ``dsn`` (a database of its own) and run
    the benchmark; returns the figures."""
    from trunkline.federation import open_planner
    from trunkline.federation.calibrate import calibrate
    from trunkline.project import Project

    say = progress or (lambda _: None)
    started = time.perf_counter()
    root = setup_project(folder, scale, dsn)
    setup = time.perf_counter() - started
    say(f"data ready in {setup:.1f} s")
    chosen = queries or list(QUERIES)
    figures: Figures = {"sf": scale, "repeats": repeats, "setup_seconds": round(setup, 2)}
    per_query: dict[str, Figures] = {}
    with Project.open(root) as project:
        calibrate(project)
        sources = _Sources(project, dsn)
        federation = _Federation(sources, dsn, root / "lake")
        planner = open_planner(project)
        try:
            for name in chosen:
                sql = QUERIES[name]
                plan_started = time.perf_counter()
                plan = planner.plan(sql)
                plan_seconds = time.perf_counter() - plan_started

                def trunkline(sql: str = sql, plan: Any = plan) -> tuple[pa.Table, int, int]:
                    result = planner.run(plan)
                    moved = [s for s in plan.steps if s.role != "final" and s.actual]
                    rows = sum(s.actual.rows for s in moved if s.actual)
                    size = sum(s.actual.bytes for s in moved if s.actual)
                    return result, rows, size

                variants: dict[str, Callable[[], tuple[pa.Table, int, int]]] = {
                    "naive": lambda sql=sql: _naive(sources, sql),  # type: ignore[misc]
                    "duckdb": lambda sql=sql: federation.run(sql),  # type: ignore[misc]
                    "trunkline": trunkline,
                }
                times: dict[str, list[float]] = {v: [] for v in variants}
                results: dict[str, Any] = {}
                for attempt in range(repeats + 1):
                    for variant, call in variants.items():
                        begun = time.perf_counter()
                        table, rows, size = call()
                        elapsed = time.perf_counter() - begun
                        if attempt:
                            times[variant].append(elapsed)
                        results[variant] = (table, rows, size)
                reference = _normal(results["duckdb"][0])
                identical = all(_normal(results[v][0]) == reference for v in variants)
                entry: Figures = {
                    v: {
                        "seconds": round(_median(times[v]), 4),
                        "rows_moved": results[v][1],
                        "bytes_moved": results[v][2],
                    }
                    for v in variants
                }
                entry["trunkline"]["plan_hash"] = plan.hash
                entry["trunkline"]["plan_seconds"] = round(plan_seconds, 4)
                entry["rows"] = results["trunkline"][0].num_rows
                entry["identical"] = identical
                entry["speedup_vs_naive"] = round(
                    entry["naive"]["seconds"] / entry["trunkline"]["seconds"], 3
                )
                entry["ratio_vs_duckdb"] = round(
                    entry["trunkline"]["seconds"] / entry["duckdb"]["seconds"], 3
                )
                per_query[name] = entry
                say(
                    f"{name}: naive {entry['naive']['seconds']:.3f} s, duckdb "
                    f"{entry['duckdb']['seconds']:.3f} s, trunkline "
                    f"{entry['trunkline']['seconds']:.3f} s, identical={identical}"
                )
        finally:
            planner.close()
            federation.close()
            sources.close()
    figures["queries"] = per_query
    figures["geomean_speedup_vs_naive"] = round(
        _geomean([q["speedup_vs_naive"] for q in per_query.values()]), 3
    )
    figures["geomean_speedup_vs_duckdb"] = round(
        _geomean([1 / q["ratio_vs_duckdb"] for q in per_query.values()]), 3
    )
    figures["worst_ratio_vs_duckdb"] = max(q["ratio_vs_duckdb"] for q in per_query.values())
    figures["identical_results"] = all(q["identical"] for q in per_query.values())
    figures["machine"] = {"cpus": _cpus(), "python": platform.python_version()}
    return figures


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
