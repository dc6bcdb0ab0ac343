"""MetaStore behaviour, written once and run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from trunkline.errors import AmbiguousName, ConfigError, NotFound
from trunkline.meta import Column, DatasetKind, DatasetRef, MetaStore, SchemaRef
from trunkline.meta._migrate import VERSION_TABLE, current_revision, head_revision, upgrade
from trunkline.meta._schema import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def meta_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('meta')}/meta.db"
    dsn: str = request.getfixturevalue("postgres_db")
    return dsn


@pytest.fixture
def store(meta_url: str) -> Iterator[MetaStore]:
    with MetaStore.open(meta_url) as opened:
        yield opened


@pytest.fixture
def shop(store: MetaStore) -> MetaStore:
    """A small catalog: a hub, a source database and a warehouse."""
    store.upsert_system("hub", "hub", ".trunkline/hub")
    store.upsert_system("pg", "postgres", "postgresql://app@db.internal:5432/shop")
    store.upsert_system("wh", "duckdb", "warehouse.duckdb")
    store.upsert_dataset("pg", "public.orders", "table", owner="sales")
    store.upsert_dataset("pg", "public.customers", "table")
    store.upsert_dataset("hub", "shop.public.orders", "topic")
    store.upsert_dataset("wh", "main.revenue_by_hour", "table")
    return store


# Systems ---------------------------------------------------------------------------------


def test_system_round_trip(store: MetaStore) -> None:
    created = store.upsert_system("pg", "postgres", "postgresql://app@db/shop", {"schemas": ["a"]})
    assert created.name == "pg" and created.kind == "postgres"
    assert created.location == "postgresql://app@db/shop"
    assert dict(created.options) == {"schemas": ["a"]}
    assert created.created_at.tzinfo is UTC and created.created_at == created.updated_at
    assert store.get_system("pg") == created
    assert [s.name for s in store.list_systems()] == ["pg"]


def test_upsert_system_moves_updated_at_only_on_change(store: MetaStore) -> None:
    first = store.upsert_system("pg", "postgres", "postgresql://db/shop", {"a": 1})
    same = store.upsert_system("pg", "postgres", "postgresql://db/shop", {"a": 1})
    assert same.updated_at == first.updated_at
    moved = store.upsert_system("pg", "postgres", "postgresql://db2/shop")
    assert moved.location == "postgresql://db2/shop"
    assert moved.updated_at > first.updated_at and moved.created_at == first.created_at
    assert dict(moved.options) == {"a": 1}, "options not given are kept"
    assert dict(store.upsert_system("pg", "postgres", "x", None).options) == {}


def test_system_location_is_stored_without_password(
    store: MetaStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="trunkline.meta"):
        system = store.upsert_system("pg", "postgres", "postgresql://app:s3cret@db:5432/shop")
    assert system.location == "postgresql://app@db:5432/shop"
    assert store.get_system("pg").location == "postgresql://app@db:5432/shop"
    assert "secret" in caplog.text and "s3cret" not in caplog.text


def test_system_options_with_secret_are_refused(store: MetaStore) -> None:
    with pytest.raises(ConfigError, match=r"secret under 'auth\.password'") as info:
        store.upsert_system("api", "http", "https://api", {"auth": {"password": "hunter2"}})
    assert "hunter2" not in str(info.value)
    with pytest.raises(NotFound):
        store.get_system("api")


def test_unknown_system_suggests_close_names(shop: MetaStore) -> None:
    with pytest.raises(NotFound, match=r"system 'pgg' does not exist; did you mean 'pg'\?"):
        shop.get_system("pgg")


def test_unknown_system_in_empty_catalog(store: MetaStore) -> None:
    with pytest.raises(NotFound, match="no systems yet"):
        store.get_system("pg")


@pytest.mark.parametrize("name", ["pg.main", "", "1pg", "p g"])
def test_bad_system_names_are_refused(store: MetaStore, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid system name"):
        store.upsert_system(name, "postgres", "x")


def test_delete_system_takes_datasets_and_lineage(shop: MetaStore) -> None:
    shop.record_lineage(
        "pg.public.orders", "hub.shop.public.orders", job="cdc", job_kind="connector", run_id="1"
    )
    shop.delete_system("pg")
    assert [s.name for s in shop.list_systems()] == ["hub", "wh"]
    assert [d.system for d in shop.list_datasets()] == ["hub", "wh"]
    assert shop.upstream("hub.shop.public.orders") == []
    with pytest.raises(NotFound):
        shop.delete_system("pg")


# Datasets --------------------------------------------------------------------------------


def test_dataset_round_trip(shop: MetaStore) -> None:
    columns = (Column("id", "bigint", nullable=False), Column("amount", "numeric(10,2)"))
    created = shop.upsert_dataset(
        "pg",
        "public.payments",
        "table",
        owner="finance",
        description="One row per payment.\nImmutable.",
        tags=["pii", "gold", "pii"],
        schema_ref=SchemaRef("pg.public.payments-value", 3),
        columns=columns,
    )
    assert created.ref == DatasetRef("pg", "public.payments")
    assert created.qualified_name == "pg.public.payments"
    assert created.kind is DatasetKind.TABLE
    assert created.tags == ("pii", "gold")
    assert created.columns == columns
    assert created.schema_ref == SchemaRef("pg.public.payments-value", 3)
    assert created.rows is None and created.stats_updated_at is None
    assert shop.get_dataset("pg", "public.payments") == created


def test_upsert_dataset_keeps_what_is_not_given(shop: MetaStore) -> None:
    first = shop.upsert_dataset(
        "hub", "shop.public.orders", "topic", owner="sales", tags=["cdc"], columns=[]
    )
    again = shop.upsert_dataset("hub", "shop.public.orders", "topic")
    assert again == first, "nothing given, nothing changed (not even updated_at)"
    described = shop.upsert_dataset("hub", "shop.public.orders", "topic", description="CDC")
    assert (described.owner, described.tags, described.columns) == ("sales", ("cdc",), ())
    assert described.updated_at > first.updated_at
    cleared = shop.upsert_dataset(
        "hub", "shop.public.orders", "topic", owner=None, tags=(), columns=None, schema_ref=None
    )
    assert (cleared.owner, cleared.tags, cleared.columns) == (None, (), None)
    assert cleared.description == "CDC"


def test_upsert_dataset_changes_kind(shop: MetaStore) -> None:
    assert shop.upsert_dataset("pg", "public.orders", DatasetKind.VIEW).kind is DatasetKind.VIEW
    assert shop.get_dataset("pg", "public.orders").owner == "sales"


def test_upsert_dataset_bad_input(shop: MetaStore) -> None:
    with pytest.raises(NotFound, match="system 'pgg' does not exist; did you mean 'pg'"):
        shop.upsert_dataset("pgg", "public.x", "table")
    with pytest.raises(ConfigError, match="invalid dataset kind 'tabel'"):
        shop.upsert_dataset("pg", "public.x", "tabel")
    with pytest.raises(ConfigError, match="column 'a' appears twice"):
        shop.upsert_dataset("pg", "public.x", "table", columns=[Column("a", "int")] * 2)
    with pytest.raises(ConfigError, match="schema version"):
        shop.upsert_dataset("pg", "public.x", "table", schema_ref=SchemaRef("s", 0))
    with pytest.raises(ConfigError, match="tags must be a list"):
        shop.upsert_dataset("pg", "public.x", "table", tags="pii")
    with pytest.raises(ConfigError, match="invalid dataset name"):
        shop.upsert_dataset("pg", " padded ", "table")
    with pytest.raises(NotFound):
        shop.get_dataset("pg", "public.x")


def test_unknown_dataset_suggests_close_names(shop: MetaStore) -> None:
    with pytest.raises(NotFound, match=r"'public.order' does not exist in system 'pg'; did you"):
        shop.get_dataset("pg", "public.order")
    with pytest.raises(NotFound, match="system 'nope' does not exist"):
        shop.get_dataset("nope", "public.orders")


def test_list_datasets_filters(shop: MetaStore) -> None:
    names = [d.qualified_name for d in shop.list_datasets()]
    assert names == [
        "hub.shop.public.orders",
        "pg.public.customers",
        "pg.public.orders",
        "wh.main.revenue_by_hour",
    ]
    assert [d.name for d in shop.list_datasets("pg")] == ["public.customers", "public.orders"]
    assert [d.qualified_name for d in shop.list_datasets(kind="topic")] == [
        "hub.shop.public.orders"
    ]
    assert shop.list_datasets("pg", kind=DatasetKind.VIEW) == []
    with pytest.raises(NotFound, match="did you mean 'pg'"):
        shop.list_datasets("pgg")


def test_delete_dataset(shop: MetaStore) -> None:
    shop.record_lineage(
        "pg.public.orders", "hub.shop.public.orders", job="cdc", job_kind="connector", run_id="1"
    )
    shop.delete_dataset("pg", "public.orders")
    with pytest.raises(NotFound):
        shop.get_dataset("pg", "public.orders")
    assert shop.upstream("hub.shop.public.orders") == []
    with pytest.raises(NotFound):
        shop.delete_dataset("pg", "public.orders")


def test_set_stats(shop: MetaStore) -> None:
    before = shop.get_dataset("pg", "public.orders")
    measured = shop.set_stats("pg", "public.orders", rows=1_000, size_bytes=65_536)
    assert (measured.rows, measured.size_bytes) == (1_000, 65_536)
    assert measured.stats_updated_at is not None and measured.stats_updated_at.tzinfo is UTC
    assert measured.updated_at == before.updated_at, "stats are not catalog edits"
    partial = shop.set_stats("pg", "public.orders", rows=5, size_bytes=None)
    assert (partial.rows, partial.size_bytes) == (5, None)
    with pytest.raises(ConfigError, match="non-negative"):
        shop.set_stats("pg", "public.orders", rows=-1, size_bytes=None)
    with pytest.raises(NotFound):
        shop.set_stats("pg", "public.nope", rows=1, size_bytes=1)


# resolve ---------------------------------------------------------------------------------


def test_resolve_qualified_names_with_dots(shop: MetaStore) -> None:
    assert shop.resolve("pg.public.orders").ref == DatasetRef("pg", "public.orders")
    assert shop.resolve("hub.shop.public.orders").ref == DatasetRef("hub", "shop.public.orders")


def test_resolve_unique_short_names(shop: MetaStore) -> None:
    assert shop.resolve("customers").ref == DatasetRef("pg", "public.customers")
    assert shop.resolve("public.customers").ref == DatasetRef("pg", "public.customers")
    assert shop.resolve("revenue_by_hour").ref == DatasetRef("wh", "main.revenue_by_hour")


def test_resolve_ambiguous_short_name_lists_candidates(shop: MetaStore) -> None:
    with pytest.raises(AmbiguousName, match="'orders' is ambiguous") as info:
        shop.resolve("orders")
    assert info.value.candidates == ("hub.shop.public.orders", "pg.public.orders")
    with pytest.raises(AmbiguousName):
        shop.resolve("public.orders")


def test_resolve_unknown_name_suggests(shop: MetaStore) -> None:
    with pytest.raises(NotFound, match=r"no dataset is called 'custmers'; did you mean") as info:
        shop.resolve("custmers")
    assert "pg.public.customers" in str(info.value)


def test_resolve_qualified_match_wins_over_short_match(store: MetaStore) -> None:
    store.upsert_system("shop", "postgres", "postgresql://db/shop")
    store.upsert_system("hub", "hub", ".trunkline/hub")
    store.upsert_dataset("shop", "orders", "table")
    store.upsert_dataset("hub", "shop.orders", "topic")
    # "hub.shop.orders" is the only other way to write the topic; "shop.orders" must not be
    # ambiguous, or the table could not be named at all.
    assert store.resolve("shop.orders").ref == DatasetRef("shop", "orders")
    assert store.resolve("hub.shop.orders").ref == DatasetRef("hub", "shop.orders")


def test_resolve_matches_whole_name_parts_exactly(store: MetaStore) -> None:
    store.upsert_system("hub", "hub", ".trunkline/hub")
    store.upsert_dataset("hub", "raw.a_b", "topic")
    store.upsert_dataset("hub", "raw.Orders", "topic")
    with pytest.raises(NotFound):
        store.resolve("axb")  # '_' is no wildcard
    with pytest.raises(NotFound):
        store.resolve("w.a_b")  # only whole parts after a dot
    with pytest.raises(NotFound):
        store.resolve("orders")  # case matters, also on SQLite
    assert store.resolve("a_b").name == "raw.a_b"
    with pytest.raises(ConfigError, match="invalid dataset name"):
        store.resolve("")


# Lineage ---------------------------------------------------------------------------------


def test_record_lineage_and_direct_edges(shop: MetaStore) -> None:
    orders = shop.get_dataset("pg", "public.orders")
    edge = shop.record_lineage(
        orders, DatasetRef("hub", "shop.public.orders"), job="shop_db", job_kind="connector",
        run_id="run-1",
    )  # fmt: skip
    assert edge.source == orders.ref and edge.target == DatasetRef("hub", "shop.public.orders")
    assert (edge.job, edge.job_kind, edge.last_run_id, edge.run_ids) == (
        "shop_db", "connector", "run-1", ("run-1",)
    )  # fmt: skip
    assert edge.first_seen == edge.last_seen and edge.first_seen.tzinfo is UTC
    again = shop.record_lineage(
        "pg.public.orders", "hub.shop.public.orders", job="shop_db", job_kind="connector",
        run_id="run-2",
    )  # fmt: skip
    assert again.run_ids == ("run-1", "run-2") and again.last_run_id == "run-2"
    assert again.first_seen == edge.first_seen and again.last_seen > edge.last_seen
    same_run = shop.record_lineage(
        "pg.public.orders", "hub.shop.public.orders", job="shop_db", job_kind="connector",
        run_id="run-2",
    )  # fmt: skip
    assert same_run.run_ids == ("run-1", "run-2")
    assert shop.upstream("hub.shop.public.orders") == [same_run]
    assert shop.downstream(orders) == [same_run]
    assert shop.upstream(orders) == []


def test_same_name_jobs_of_different_kinds_are_different_edges(shop: MetaStore) -> None:
    for kind in ("connector", "flow"):
        shop.record_lineage(
            "pg.public.orders", "hub.shop.public.orders", job="x", job_kind=kind, run_id="1"
        )
    assert [e.job_kind for e in shop.downstream("pg.public.orders")] == ["connector", "flow"]


def test_record_lineage_bad_input(shop: MetaStore) -> None:
    with pytest.raises(NotFound, match=r"no dataset is called 'pg\.public\.nope'"):
        shop.record_lineage("pg.public.nope", "orders", job="j", job_kind="flow", run_id="1")
    with pytest.raises(AmbiguousName):
        shop.record_lineage("customers", "orders", job="j", job_kind="flow", run_id="1")
    with pytest.raises(NotFound, match="system 'nope'"):
        shop.upstream(DatasetRef("nope", "x"))
    with pytest.raises(ConfigError, match="invalid job kind"):
        shop.record_lineage("customers", "revenue_by_hour", job="j", job_kind="Flow!", run_id="1")
    with pytest.raises(ConfigError, match="invalid run id"):
        shop.record_lineage("customers", "revenue_by_hour", job="j", job_kind="flow", run_id="")


def test_lineage_walk(shop: MetaStore) -> None:
    def edge(source: str, target: str, job: str) -> None:
        shop.record_lineage(source, target, job=job, job_kind="flow", run_id="r")

    edge("pg.public.orders", "hub.shop.public.orders", "cdc")
    edge("hub.shop.public.orders", "wh.main.revenue_by_hour", "revenue")
    edge("pg.public.customers", "wh.main.revenue_by_hour", "revenue")
    # A cycle: a backfill job writing the warehouse table back to the source database.
    edge("wh.main.revenue_by_hour", "pg.public.orders", "backfill")

    def hops(**kwargs: Any) -> list[str]:
        found = shop.lineage("wh.main.revenue_by_hour", **kwargs)
        return [f"{e.source}>{e.target}" for e in found]

    assert hops(depth=1) == [
        "hub.shop.public.orders>wh.main.revenue_by_hour",
        "pg.public.customers>wh.main.revenue_by_hour",
    ]
    assert hops(depth=2)[2:] == ["pg.public.orders>hub.shop.public.orders"]
    assert len(hops()) == 4, "the walk follows the cycle once and stops"
    assert hops(direction="downstream", depth=1) == ["wh.main.revenue_by_hour>pg.public.orders"]
    assert len(hops(direction="both")) == 4
    assert hops(depth=0) == []
    with pytest.raises(ConfigError, match="invalid direction"):
        hops(direction="sideways")


# Schema, migrations, concurrency ------------------------------------------------------------


def test_opening_twice_is_a_no_op_migration(meta_url: str) -> None:
    with MetaStore.open(meta_url) as first:
        first.upsert_system("pg", "postgres", "postgresql://db/shop")
    with MetaStore.open(meta_url) as second:
        assert [s.name for s in second.list_systems()] == ["pg"]
    engine = sa.create_engine(meta_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            tables = sorted(sa.inspect(conn).get_table_names())
            upgrade(conn, where="test")
            assert current_revision(conn) == head_revision()
            assert sorted(sa.inspect(conn).get_table_names()) == tables
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_core_schema(store: MetaStore, meta_url: str) -> None:
    engine = sa.create_engine(meta_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _parent: name != VERSION_TABLE,
                },
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_concurrent_upserts_of_one_dataset(shop: MetaStore) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(15):
                shop.upsert_dataset("hub", f"new.topic{i}", "topic", owner=f"w{worker}")
                shop.record_lineage(
                    "pg.public.orders", f"hub.new.topic{i}", job="j", job_kind="flow",
                    run_id=f"{worker}-{i}",
                )  # fmt: skip
        except BaseException as error:  # reported below, with the worker's traceback
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(shop.list_datasets("hub", kind="topic")) == 16
    edges = shop.downstream("pg.public.orders")
    assert len(edges) == 15 and all(len(e.run_ids) == 4 for e in edges)
