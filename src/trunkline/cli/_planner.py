"""``trunkline catalog add``, ``analyze``, ``query``, ``plan``, ``calibrate``, ``flow run``."""

from __future__ import annotations

import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.table import Table

from trunkline.cli._common import bad_input, out, print_json, project
from trunkline.config import format_size
from trunkline.errors import PlanningError

flow_app = typer.Typer(
    help="Flows: SQL over catalog names written into a target.", no_args_is_help=True
)

SparkOption = Annotated[
    bool,
    typer.Option("--spark", help="Add Spark (local mode) to the engines the planner may use."),
]


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


def _spark(enabled: bool) -> dict[str, Any] | None:
    return {} if enabled else None


def catalog_add(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="postgres, duckdb, parquet, iceberg or view.")],
    name: Annotated[str, typer.Argument(help="The system's name in the catalog (view: its name).")],
    location: Annotated[
        str,
        typer.Argument(
            help="postgres: a DSN with the password as ${VAR}; duckdb: the database file; "
            "parquet: the folder; iceberg: a SQL catalog URI (sqlite:///path/catalog.db, "
            "postgresql://user:${VAR}@host/db) or a warehouse folder with catalog.db; view: "
            "its SQL."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Register an existing system and discover its datasets (or define a view)."""
    proj = project(ctx)
    if kind == "view":
        from trunkline.federation.catalog import add_view

        dataset = add_view(proj, name, location)
        if as_json:
            print_json({"view": dataset.qualified_name})
        else:
            out().print(f"view {dataset.qualified_name} defined")
        return
    from trunkline.federation.catalog import add_system

    registered = add_system(proj, kind, name, location)
    if as_json:
        print_json(
            {
                "system": name,
                "datasets": [
                    {
                        "name": d.qualified_name,
                        "kind": d.kind,
                        "rows": d.rows,
                        "size_bytes": d.size_bytes,
                        "stats_from": d.stats_source,
                        "columns": len(d.columns or ()),
                    }
                    for d in registered.datasets
                ],
                "removed": registered.removed,
            }
        )
        return
    table = Table("dataset", "kind", "columns", "rows (estimate)", "size", "from")
    for d in registered.datasets:
        table.add_row(
            d.qualified_name,
            d.kind,
            str(len(d.columns or ())),
            "-" if d.rows is None else f"{d.rows:,}",
            "-" if d.size_bytes is None else format_size(d.size_bytes, exact=False),
            d.stats_source or "-",
        )
    out().print(table)
    if registered.removed:
        out().print(f"removed {len(registered.removed)} dataset(s) no longer there")


def analyze(
    ctx: typer.Context,
    dataset: Annotated[
        str | None, typer.Argument(help="One dataset (system.name or a unique short name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Measure rows, bytes and per-column statistics (distinct, nulls, min, max)."""
    from trunkline.federation.catalog import analyze_all, analyze_dataset

    proj = project(ctx)
    done = [analyze_dataset(proj, dataset)] if dataset else analyze_all(proj)
    rows: list[dict[str, Any]] = []
    for d in done:
        stats = proj.meta.column_stats(d.system, d.name)
        rows.append(
            {
                "dataset": d.qualified_name,
                "rows": d.rows,
                "size_bytes": d.size_bytes,
                "source": d.stats_source,
                "columns": {
                    name: {
                        "distinct": s.distinct,
                        "nulls": s.nulls,
                        "min": s.minimum,
                        "max": s.maximum,
                    }
                    for name, s in stats.items()
                },
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table("dataset", "rows", "size", "columns analyzed", "from")
    for row in rows:
        table.add_row(
            row["dataset"],
            "-" if row["rows"] is None else f"{row['rows']:,}",
            "-" if row["size_bytes"] is None else format_size(row["size_bytes"], exact=False),
            str(len(row["columns"])),
            row["source"] or "-",
        )
    out().print(table)


def _write(table: pa.Table, fmt: Format, output: Path | None) -> None:
    if fmt is Format.TABLE and output is None:
        shown = Table(*table.column_names)
        for row in table.slice(0, 1000).to_pylist():
            shown.add_row(*("NULL" if v is None else str(v) for v in row.values()))
        out().print(shown)
        if table.num_rows > 1000:
            out().print(f"({table.num_rows:,} rows; the first 1,000 shown)")
        return
    sink: Any = io.BytesIO()
    if fmt is Format.PARQUET:
        import pyarrow.parquet as pq

        pq.write_table(table, sink)
    elif fmt is Format.CSV or fmt is Format.TABLE:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, sink)
    else:
        lines = [json.dumps(row, default=str) for row in table.to_pylist()]
        sink.write(("\n".join(lines) + ("\n" if lines else "")).encode())
    data = sink.getvalue()
    if output is not None:
        tmp = output.with_name(output.name + ".partial")
        tmp.write_bytes(data)
        tmp.replace(output)  # nothing half-written at the final name
        return
    if fmt is Format.PARQUET and sys.stdout.isatty():
        raise bad_input("Parquet is binary: write it to a file with --output FILE or a pipe")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="A query over catalog names.")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.TABLE,
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
    spark: SparkOption = False,
) -> None:
    """Plan and run a query across the catalog's systems; print or write the result."""
    from trunkline.federation import open_planner

    planner = open_planner(project(ctx), spark=_spark(spark))
    try:
        table = planner.query(sql)
    finally:
        planner.close()
    _write(table, fmt, output)


def _sql_of(ctx: typer.Context, text: str) -> str:
    flows = project(ctx).config.flows
    if text in flows:
        return flows[text].sql
    if " " not in text.strip() and not text.lower().startswith("select"):
        import difflib

        close = difflib.get_close_matches(text, list(flows), n=1)
        hint = f"; did you mean flow {close[0]!r}?" if close else ""
        raise PlanningError(f"{text!r} is neither a flow of trunkline.yaml nor a query{hint}")
    return text


def plan(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A query, or the name of a flow.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    run_it: Annotated[
        bool, typer.Option("--analyze", help="Run the plan and show actual rows, bytes, time.")
    ] = False,
    spark: SparkOption = False,
) -> None:
    """EXPLAIN: every step with its engine and why, the SQL each engine is sent, the
    candidates weighed, what was not pushed down, where each statistic came from."""
    from trunkline.federation import open_planner
    from trunkline.planner import explain

    sql = _sql_of(ctx, target)
    planner = open_planner(project(ctx), spark=_spark(spark))
    try:
        placed = planner.plan(sql)
        if run_it:
            planner.run(placed)
    finally:
        planner.close()
    if as_json:
        print_json(placed.to_dict())
    else:
        out().print(explain(placed), markup=False)


def calibrate(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    spark: SparkOption = False,
) -> None:
    """Measure each engine's speed on this machine and keep the factors in the catalog."""
    from trunkline.federation.calibrate import calibrate as measure

    factors = measure(project(ctx), spark=spark)
    if as_json:
        print_json(factors)
        return
    table = Table("engine", "factor", "value")
    for engine, values in factors.items():
        for name, value in values.items():
            table.add_row(engine, name, f"{value:.3g}")
    out().print(table)


@flow_app.command("list")
def flow_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The flows of trunkline.yaml."""
    flows = project(ctx).config.flows
    data: list[dict[str, Any]] = [
        {"name": n, "into": f.into, "freshness_ms": f.freshness, "sql": f.sql}
        for n, f in sorted(flows.items())
    ]
    if as_json:
        print_json(data)
        return
    table = Table("flow", "into", "mode", "sql")
    for row in data:
        mode = "continuous" if row["freshness_ms"] else "batch"
        table.add_row(row["name"], row["into"] or "-", mode, " ".join(row["sql"].split())[:80])
    out().print(table)


@flow_app.command("run")
def flow_run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The flow's name in trunkline.yaml.")],
    once: Annotated[
        bool, typer.Option(help="A continuous flow: process what is new, then stop.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    spark: SparkOption = False,
) -> None:
    """Run a flow: a batch flow once; a continuous one (freshness:) until Ctrl-C."""
    from trunkline.federation.flows import run_flow

    report = run_flow(project(ctx), name, once=once, spark=_spark(spark))
    if as_json:
        print_json(report)
        return
    out().print(
        f"flow {name}: {report['rows']:,} row(s) into {report['into']} "
        f"({report['mode']}, plan {report['plan']})"
    )


def perf_planner(
    scale: Annotated[float, typer.Option("--sf", min=0.001, help="TPC-H scale factor.")] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dsn: Annotated[
        str | None,
        typer.Option(
            envvar="TRUNKLINE_BENCH_POSTGRES_DSN",
            help="A PostgreSQL server where the benchmark may create its database "
            "(scripts/services/postgres start prints one).",
        ),
    ] = None,
    directory: Annotated[
        Path | None, typer.Option(help="Where to put the data (a temporary folder).")
    ] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Measured runs per query.")] = 5,
    queries: Annotated[
        str | None, typer.Option(help="Comma-separated query names (default: all eight).")
    ] = None,
) -> None:
    """The planner on TPC-H across PostgreSQL, the lake and the hub, against copying
    everything into DuckDB and against DuckDB's own federation."""
    import tempfile

    from trunkline.cli._common import err
    from trunkline.perf.planner import run

    if not dsn:
        raise bad_input(
            "--dsn (or TRUNKLINE_BENCH_POSTGRES_DSN) must name a PostgreSQL server; "
            "scripts/services/postgres start prints one"
        )
    database = f"trunkline_tpch_sf{str(scale).replace('.', '_')}"
    target = _bench_database(dsn, database)
    chosen = [q.strip() for q in queries.split(",")] if queries else None
    with tempfile.TemporaryDirectory(prefix="trunkline-tpch-") as scratch:
        folder = directory or Path(scratch)
        figures = run(
            scale,
            folder,
            target,
            repeats=repeats,
            queries=chosen,
            progress=lambda line: err().print(line, markup=False),
        )
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table("query", "naive s", "duckdb s", "trunkline s", "vs naive", "vs duckdb", "same")
    for name, entry in figures["queries"].items():
        table.add_row(
            name,
            f"{entry['naive']['seconds']:.3f}",
            f"{entry['duckdb']['seconds']:.3f}",
            f"{entry['trunkline']['seconds']:.3f}",
            f"{entry['speedup_vs_naive']:.2f}x",
            f"{entry['ratio_vs_duckdb']:.2f}",
            "yes" if entry["identical"] else "NO",
        )
    out().print(table)
    for key in (
        "geomean_speedup_vs_naive",
        "geomean_speedup_vs_duckdb",
        "worst_ratio_vs_duckdb",
        "identical_results",
    ):
        out().print(f"{key}: {figures[key]}")


def _bench_database(dsn: str, database: str) -> str:
    """Create (afresh) the benchmark's database on the server of ``dsn``; its DSN."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        name = sql.Identifier(database)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))
