"""``trunkline demo``: the main job on the embedded default, in a throw-away project.

It writes a starter project into a temporary folder, declares three topics (a compacted
``customers`` topic keyed by customer id, ``orders`` keyed by customer id, and a keyless
``clicks`` stream), produces generated sample data into them, reads it back through a
consumer group, and prints what happened: topics, partitions, offsets, throughput, the
catalog, and a small report computed by DuckDB from the consumed records.

Then it runs a pipeline (:mod:`trunkline.demo._pipeline`): CSV payment exports read by the
``files`` source into the hub, and from there upserted into DuckDB and into an Iceberg table,
with the damaged lines in the dead-letter topic; then a flow over catalog names, planned
across the Iceberg and DuckDB engines, shown with its EXPLAIN.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.demo._data import generate
from trunkline.demo._pipeline import PIPELINE, PipelineResult, run_pipeline
from trunkline.project import Project

__all__ = ["DemoResult", "run_demo"]

PROJECT_FILE = """\
# The demo project, written by `trunkline demo`.
hub:
  backend: embedded
  path: .trunkline/hub
  ack: fsync
meta: sqlite:///.trunkline/meta.db
topics:
  customers:
    description: The current state of every customer, keyed by customer id.
    owner: crm-team
    tags: [pii]
    cleanup: compact
    retention: forever
  orders:
    description: Orders placed in the shop, keyed by customer id.
    owner: shop-team
    tags: [sales]
    partitions: 3
    retention: 30d
  clicks:
    description: Page views on the shop's website.
    owner: web-team
    partitions: 3
    retention: 7d
    compression: zstd
"""


@dataclass
class TopicFigures:
    records: int
    value_bytes: int
    produce_seconds: float
    consume_seconds: float = 0.0
    consumed: int = 0


@dataclass
class DemoResult:
    """What the demo did; the CLI renders it."""

    project_dir: Path
    topics: dict[str, TopicFigures] = field(default_factory=dict)
    partitions: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    catalog: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    revenue_by_country: list[tuple[str, int, float]] = field(default_factory=list)
    group_lag: int = 0
    pipeline: PipelineResult | None = None


def run_demo(
    directory: Path | None = None,
    *,
    scale: float = 1.0,
    say: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """Run the demo in ``directory`` (a new temporary folder by default)."""
    root = Path(tempfile.mkdtemp(prefix="trunkline-demo-")) if directory is None else directory
    root.mkdir(parents=True, exist_ok=True)
    (root / "trunkline.yaml").write_text(PROJECT_FILE + PIPELINE)
    result = DemoResult(root)
    say(f"project: {root}")
    data = generate(
        customers=int(10_000 * scale), orders=int(200_000 * scale), clicks=int(400_000 * scale)
    )
    datasets = {"customers": data.customers, "orders": data.orders, "clicks": data.clicks}
    with Project.open(root) as project:
        for change in project.apply_topics():
            say(f"topic {change.topic}: {change.action}")
        for name, table in datasets.items():
            value_bytes = pc.sum(pc.binary_length(table.column("value"))).as_py() or 0
            started = time.perf_counter()
            for batch in table.to_batches(max_chunksize=20_000):
                project.hub.produce(name, batch)
            elapsed = time.perf_counter() - started
            result.topics[name] = TopicFigures(len(table), value_bytes, elapsed)
            say(f"produced {len(table):,} records to {name} in {elapsed:.2f}s")
        consumed = _consume_all(project, result)
        result.revenue_by_country = _revenue_by_country(consumed["orders"], consumed["customers"])
        for name in datasets:
            described = project.hub.describe_topic(name)
            result.partitions[name] = [
                (p.partition, p.end_offset, p.size_bytes or 0) for p in described.partitions
            ]
        project.sync_catalog()
        result.catalog = [
            (d.qualified_name, d.owner or "-", d.description or "", d.rows)
            for d in project.meta.list_datasets()
        ]
        result.group_lag = project.hub.describe_group("demo-report").lag
        say("running the pipeline: CSV files -> hub -> DuckDB + Iceberg")
        result.pipeline = run_pipeline(project, rows=max(100, int(100_000 * scale)))
        result.catalog = [
            (d.qualified_name, d.owner or "-", d.description or "", d.rows)
            for d in project.meta.list_datasets()
        ]
    return result


def _consume_all(project: Project, result: DemoResult) -> dict[str, pa.Table]:
    """Read every topic back through one consumer group, committing as it goes."""
    tables: dict[str, list[pa.Table]] = {name: [] for name in result.topics}
    expected = sum(f.records for f in result.topics.values())
    seen = 0
    started = time.perf_counter()
    with project.hub.consumer("demo-report", list(result.topics)) as consumer:
        deadline = time.monotonic() + 120
        while seen < expected and time.monotonic() < deadline:
            for batch in consumer.poll(1.0, max_records=200_000):
                tables[batch.topic].append(batch.records)
                result.topics[batch.topic].consumed += len(batch)
                seen += len(batch)
            consumer.commit()
    elapsed = time.perf_counter() - started
    for figures in result.topics.values():
        figures.consume_seconds = elapsed
    return {name: pa.concat_tables(parts) for name, parts in tables.items() if parts}


def _revenue_by_country(orders: pa.Table, customers: pa.Table) -> list[tuple[str, int, float]]:
    """Join the two streams by customer id in DuckDB, straight from the consumed Arrow data."""
    con = duckdb.connect()
    try:
        con.register("orders_topic", orders)
        con.register("customers_topic", customers)
        rows = con.sql(
            """
            WITH customers AS (
                -- a compacted topic holds the latest record per key: take the last one
                SELECT key, arg_max(value, "offset") AS value
                FROM customers_topic GROUP BY key
            ), orders AS (
                SELECT decode(value)::JSON AS o FROM orders_topic
            )
            SELECT decode(value)::JSON ->> 'country' AS country,
                   count(*) AS orders,
                   round(sum(CAST(o ->> 'amount' AS DOUBLE)), 2) AS revenue
            FROM orders JOIN customers ON customers.key = encode(o ->> 'customer_id')
            WHERE o ->> 'status' <> 'cancelled'
            GROUP BY 1 ORDER BY revenue DESC
            """
        ).fetchall()
    finally:
        con.close()
    return [(str(c), int(n), float(r)) for c, n, r in rows]
