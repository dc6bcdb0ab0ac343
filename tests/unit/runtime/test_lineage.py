"""Lineage of connectors: what each one names, and the edges its task records at start."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from trunkline.connectors import SINKS, SOURCES
from trunkline.connectors.base import LineageDataset, Sink
from trunkline.hub import FetchedBatch, TopicPartition
from trunkline.meta import MetaStore
from trunkline.project import Project
from trunkline.runtime import Runner, RunOptions
from trunkline.runtime._lineage import record_lineage
from trunkline.testing.connectors import make_context


def _datasets(kind: str, type_name: str, config: dict[str, Any]) -> tuple[LineageDataset, ...]:
    registry = SOURCES if kind == "source" else SINKS
    connector_class = registry.get(type_name)
    connector = connector_class("c", connector_class.Config.model_validate(config))
    result: tuple[LineageDataset, ...] = connector.lineage()
    return result


def test_each_connector_names_what_it_reads_or_writes() -> None:
    assert _datasets("source", "files", {"path": "in", "glob": "*.csv", "topic": "orders"}) == (
        LineageDataset("orders", "*.csv", "fileset"),
    )
    assert _datasets("source", "http", {"topics": ["orders", "clicks"]}) == (
        LineageDataset("orders", "/topics/orders", "endpoint"),
        LineageDataset("clicks", "/topics/clicks", "endpoint"),
    )
    tables = {"topics": ["shop.public.orders", "clicks"], "tables": {"clicks": "events"}}
    assert _datasets("sink", "duckdb", {"path": "w.duckdb", **tables}) == (
        LineageDataset("shop.public.orders", "main.shop_public_orders"),
        LineageDataset("clicks", "main.events"),
    )
    dsn = "postgresql://localhost/db"
    assert _datasets("sink", "postgres", {"dsn": dsn, "db_schema": "replica", **tables}) == (
        LineageDataset("shop.public.orders", "replica.shop_public_orders"),
        LineageDataset("clicks", "replica.events"),
    )
    assert _datasets("sink", "iceberg", {"warehouse": "lake", "namespace": "raw", **tables}) == (
        LineageDataset("shop.public.orders", "raw.shop_public_orders"),
        LineageDataset("clicks", "raw.events"),
    )
    assert _datasets("sink", "parquet", {"path": "lake", "topics": ["orders"]}) == (
        LineageDataset("orders", "orders", "fileset"),
    )


class _Quiet(Sink):
    def open(self, context: Any) -> None:
        pass

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        pass

    def snapshot(self) -> dict[TopicPartition, int]:
        return {}

    def close(self) -> None:
        pass


def test_a_connector_names_nothing_by_default() -> None:
    assert _Quiet("q", Sink.Config.model_validate({"topics": ["t"]})).lineage() == ()


PROJECT = """\
topics:
  orders: {partitions: 2}
sources:
  incoming:
    type: files
    path: in
    glob: "*.csv"
    topic: orders
    transforms:
      - route: {field: country, topics: {DE: orders.de}}
sinks:
  warehouse: {type: duckdb, path: w.duckdb, topics: [orders, orders.de]}
"""


def _run_until_started(root: Path) -> str:
    """Start every task, wait until each has opened, stop; returns the run id."""
    with Project.open(root) as project:
        runner = Runner(project, RunOptions(status_interval=0.1))
        runner.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if len(project.meta.downstream("hub.orders.de")) == 1 and all(
                    s["state"] == "running" for s in runner.samples()
                ):
                    break
                time.sleep(0.05)
        finally:
            runner.shutdown()
        assert not runner.failed
        return runner.run_id


def _edges(root: Path, dataset: str, direction: str) -> set[tuple[str, str, str, str]]:
    with Project.open(root) as project:
        edges = project.meta.lineage(dataset, direction=direction)  # type: ignore[arg-type]
        return {(str(e.source), str(e.target), e.job_kind, e.job) for e in edges}


def test_tasks_record_their_edges_when_they_start(tmp_path: Path) -> None:
    (tmp_path / "trunkline.yaml").write_text(PROJECT)
    first = _run_until_started(tmp_path)  # no file and no record: edges come from the start
    assert _edges(tmp_path, "warehouse.main.orders", "upstream") == {
        ("incoming.*.csv", "hub.orders", "source", "incoming"),
        ("hub.orders", "warehouse.main.orders", "sink", "warehouse"),
    }
    assert _edges(tmp_path, "incoming.*.csv", "downstream") == {
        ("incoming.*.csv", "hub.orders", "source", "incoming"),
        ("incoming.*.csv", "hub.orders.de", "source", "incoming"),
        ("hub.orders", "warehouse.main.orders", "sink", "warehouse"),
        ("hub.orders.de", "warehouse.main.orders_de", "sink", "warehouse"),
    }
    second = _run_until_started(tmp_path)
    with Project.open(tmp_path) as project:
        (edge,) = project.meta.upstream("warehouse.main.orders")
        assert edge.run_ids == (first, second)
        table = project.meta.resolve("warehouse.main.orders")
        assert table.kind == "table"
        assert project.meta.resolve("incoming.*.csv").kind == "fileset"
        assert project.meta.get_system("warehouse").kind == "duckdb"


def test_without_a_metadata_store_nothing_is_recorded(tmp_path: Path) -> None:
    context = make_context(tmp_path, "warehouse", "sink")
    assert record_lineage(context, (LineageDataset("orders", "main.orders"),)) == 0


def test_an_http_endpoint_is_a_dataset_that_feeds_its_topic(tmp_path: Path) -> None:
    with MetaStore.open("sqlite://") as store:
        store.upsert_system("hub", "hub", str(tmp_path / "hub"))
        store.upsert_dataset("hub", "orders", "topic")
        store.upsert_system("api", "http", "http://127.0.0.1:8088")
        context = replace(make_context(tmp_path, "api", "source"), meta=store)
        datasets = _datasets("source", "http", {"topics": ["orders"]})
        assert record_lineage(context, datasets, routes=("orders",)) == 1  # a route home: one edge
        assert store.resolve("api./topics/orders").kind == "endpoint"
        (edge,) = store.downstream("api./topics/orders")
        assert (str(edge.target), edge.job, edge.job_kind) == ("hub.orders", "api", "source")


def test_a_topic_missing_from_the_catalog_skips_its_edge_only(tmp_path: Path) -> None:
    with MetaStore.open("sqlite://") as store:
        store.upsert_system("hub", "hub", str(tmp_path / "hub"))
        store.upsert_dataset("hub", "orders", "topic")
        store.upsert_system("warehouse", "duckdb", str(tmp_path / "w.duckdb"))
        context = replace(make_context(tmp_path, "warehouse", "sink"), meta=store)
        datasets = (LineageDataset("gone", "main.gone"), LineageDataset("orders", "main.orders"))
        assert record_lineage(context, datasets) == 1
        assert [str(e.source) for e in store.upstream("warehouse.main.orders")] == ["hub.orders"]
        assert store.upstream("warehouse.main.gone") == []
