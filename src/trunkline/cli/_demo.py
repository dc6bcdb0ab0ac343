"""Rendering of ``trunkline demo``."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.panel import Panel
from rich.table import Table

from trunkline.cli._common import err, out
from trunkline.config import format_size
from trunkline.demo import DemoResult, run_demo
from trunkline.demo._pipeline import FlowResult


def render_demo(directory: Path | None, scale: float) -> None:
    console = out()
    console.print(
        Panel.fit(
            "trunkline demo: a throw-away project on the embedded hub. Sample customers, "
            "orders and clicks are produced into topics, read back through a consumer group, "
            "and joined by DuckDB straight from the consumed Arrow batches.",
            title="trunkline",
        )
    )
    with err().status("running the demo job..."):
        result = run_demo(directory, scale=scale, say=lambda line: console.print(f"  {line}"))

    topics = Table(title="topics", title_justify="left")
    for column in ("topic", "partition", "end offset", "size on disk"):
        topics.add_column(column, justify="right" if column != "topic" else "left")
    for name, parts in result.partitions.items():
        for partition, end, size in parts:
            topics.add_row(name, str(partition), f"{end:,}", format_size(size, exact=False))
    console.print(topics)

    speed = Table(title="throughput (ack=fsync)", title_justify="left")
    for column in ("topic", "records", "MB", "produce rec/s", "produce MB/s"):
        speed.add_column(column, justify="right" if column != "topic" else "left")
    consumed = 0
    consume_seconds = 0.0
    for name, fig in result.topics.items():
        speed.add_row(
            name,
            f"{fig.records:,}",
            f"{fig.value_bytes / 1e6:.1f}",
            f"{fig.records / fig.produce_seconds:,.0f}",
            f"{fig.value_bytes / 1e6 / fig.produce_seconds:,.0f}",
        )
        consumed += fig.consumed
        consume_seconds = fig.consume_seconds
    console.print(speed)
    console.print(
        f"consumer group demo-report read {consumed:,} records from the three topics in "
        f"{consume_seconds:.2f}s ({consumed / consume_seconds:,.0f} records/s); "
        f"lag after commit: {result.group_lag}"
    )

    catalog = Table(title="catalog", title_justify="left")
    for column in ("dataset", "owner", "rows", "description"):
        catalog.add_column(column)
    for name, owner, description, rows in result.catalog:
        catalog.add_row(name, owner, "-" if rows is None else f"{rows:,}", description)
    console.print(catalog)

    revenue = Table(title="revenue by country (orders joined with customers)", title_justify="left")
    for column in ("country", "orders", "revenue EUR"):
        revenue.add_column(column, justify="right" if column != "country" else "left")
    for country, orders, amount in result.revenue_by_country:
        revenue.add_row(country, f"{orders:,}", f"{amount:,.2f}")
    console.print(revenue)
    if result.pipeline is not None:
        _render_pipeline(result)
    # Name the command as it was run (.venv/bin/trunkline under `make demo`), so the hint
    # works without activating the virtual environment.
    command = sys.argv[0] if sys.argv and sys.argv[0].endswith("trunkline") else "trunkline"
    console.print(
        f"project left in {result.project_dir}; try: {command} -p {result.project_dir} topic list"
    )


def _render_pipeline(result: DemoResult) -> None:
    console = out()
    pipeline = result.pipeline
    assert pipeline is not None
    console.print(
        Panel.fit(
            f"{pipeline.files} CSV exports in incoming/\n"
            "  -> source payment_exports (files) -> topic payments\n"
            "  -> sink warehouse (DuckDB, upsert by payment_id)\n"
            "  -> sink lakehouse (Iceberg table demo.payments, upsert by payment_id)\n"
            f"{pipeline.rows_written:,} records in {pipeline.seconds:.1f}s, from start to a "
            "clean stop",
            title="trunkline run",
        )
    )
    by_method = Table(
        title="warehouse.duckdb: SELECT method, count(*), sum(amount) FROM payments GROUP BY 1",
        title_justify="left",
    )
    for column in ("method", "payments", "amount EUR"):
        by_method.add_column(column, justify="right" if column != "method" else "left")
    for method, count, amount in pipeline.by_method:
        by_method.add_row(method, f"{count:,}", f"{amount:,.2f}")
    console.print(by_method)
    console.print(
        f"{pipeline.table_rows:,} rows in DuckDB and {pipeline.iceberg_rows:,} in the Iceberg "
        "table read back (a retried export repeated some payments: each upsert kept one row)"
    )
    dead = Table(title="dead letters (payment_exports.dlq)", title_justify="left")
    dead.add_column("from")
    dead.add_column("error")
    for origin, error in pipeline.dead_letters:
        dead.add_row(origin, error)
    console.print(dead)
    if pipeline.flow is not None:
        _render_flow(pipeline.flow)
    for line in pipeline.lineage:
        console.print(f"lineage: {line}")


def _render_flow(flow: FlowResult) -> None:
    console = out()
    console.print(
        f"flow {flow.name} (into {flow.into}), placed on {', '.join(flow.engines)}:\n"
        f"  {flow.sql}\n"
        f"EXPLAIN (what `trunkline plan {flow.name}` prints):",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    # Plain text, wrapped rather than cropped: it holds the exact SQL each engine is sent.
    console.print(flow.explain, markup=False, highlight=False, soft_wrap=True)
    table = Table(title=f"{flow.into}", title_justify="left")
    for column in ("method", "payments", "amount EUR"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for method, count, amount in flow.rows:
        table.add_row(method, f"{count:,}", f"{amount:,.2f}")
    console.print(table)
