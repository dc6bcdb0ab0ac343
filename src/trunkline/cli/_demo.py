"""Rendering of ``trunkline demo``."""

from __future__ import annotations

from pathlib import Path

from rich.panel import Panel
from rich.table import Table

from trunkline.cli._common import err, out
from trunkline.config import format_size
from trunkline.demo import run_demo


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
    console.print(
        f"project left in {result.project_dir}; try: trunkline -p {result.project_dir} topic list"
    )
