"""Valid project files: what they load into, defaults, paths, dumps and `config explain`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from trunkline.config import (
    EmbeddedHub,
    FlowSpec,
    KeyDoc,
    ProjectConfig,
    TopicSpec,
    explain,
    load_project,
)
from trunkline.errors import ConfigError
from trunkline.hub import CleanupPolicy, Compression, TopicConfig

Load = Callable[..., ProjectConfig]

DAY = 86_400_000

FULL = """\
hub:
  backend: embedded
  path: data/hub
  ack: written
meta: postgresql+psycopg://app@db.internal/trunkline
topics:
  orders:
    partitions: 3
    retention: 36h
    retention_bytes: 10GiB
    cleanup: delete
    segment_bytes: 256MiB
    segment_age: 1d
    delete_retention: 12h
    min_compaction_lag: 5m
    max_message_bytes: 1MB
    compression: zstd
    description: Orders placed in the shop.
    owner: shop-team
    tags: [sales, pii]
    contract: contracts/orders.yaml
  customers:
    cleanup: compact, delete
    retention: forever
flows:
  revenue_by_hour:
    sql: select date_trunc('hour', ts) as hour, sum(amount) from orders group by 1
    into: warehouse.revenue_by_hour
    freshness: 1m
    description: Revenue per hour.
  adhoc:
    sql: select count(*) from orders
"""


def test_full_file(load: Load, project: Path) -> None:
    config = load(FULL)
    assert config.hub == EmbeddedHub(path=Path("data/hub"), ack="written")
    assert config.meta.get_secret_value() == "postgresql+psycopg://app@db.internal/trunkline"
    orders = config.topics["orders"]
    assert orders.to_topic_config() == TopicConfig(
        partitions=3,
        retention_ms=36 * 3_600_000,
        retention_bytes=10 * 1024**3,
        cleanup_policy=CleanupPolicy.DELETE,
        segment_bytes=256 * 1024**2,
        segment_ms=DAY,
        delete_retention_ms=12 * 3_600_000,
        min_compaction_lag_ms=5 * 60_000,
        max_message_bytes=1_000_000,
        compression=Compression.ZSTD,
    )
    assert (orders.description, orders.owner, orders.tags, orders.contract) == (
        "Orders placed in the shop.",
        "shop-team",
        ("sales", "pii"),
        "contracts/orders.yaml",
    )
    customers = config.topics["customers"]
    assert customers.cleanup is CleanupPolicy.COMPACT_DELETE
    assert customers.to_topic_config().retention_ms is None
    assert config.flows["revenue_by_hour"] == FlowSpec(
        sql="select date_trunc('hour', ts) as hour, sum(amount) from orders group by 1",
        into="warehouse.revenue_by_hour",
        freshness="1m",
        description="Revenue per hour.",
    )
    assert config.flows["revenue_by_hour"].freshness == 60_000
    assert config.flows["adhoc"].freshness is None
    assert config.flows["adhoc"].into is None
    assert config.root == project.resolve()


def test_minimal_file_gets_defaults(load: Load, project: Path) -> None:
    config = load("topics:\n  orders:\n")
    assert config.hub == EmbeddedHub()
    assert config.hub.ack == "fsync"
    assert config.hub_path() == project.resolve() / ".trunkline" / "hub"
    assert config.meta_url() == f"sqlite:///{project.resolve()}/.trunkline/meta.db"
    assert config.topics["orders"].to_topic_config() == TopicConfig()
    assert config.topic_configs() == {"orders": TopicConfig()}
    assert (config.sources, config.sinks, config.flows) == ({}, {}, {})


def test_sections_may_be_empty(load: Load) -> None:
    config = load("hub:\ntopics:\nsources:\nsinks:\nflows:\n")
    assert config.hub == EmbeddedHub()
    assert config.topics == {}


def test_hub_backend_may_be_omitted(load: Load) -> None:
    assert load("hub: {path: elsewhere}").hub.path == Path("elsewhere")


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ("sqlite:///state/meta.db", "sqlite:///{root}/state/meta.db"),
        ("sqlite:////var/lib/trunkline/meta.db", "sqlite:////var/lib/trunkline/meta.db"),
        ("postgresql://u@db/trunkline", "postgresql://u@db/trunkline"),
        ("postgresql+psycopg://u@db:5433/t", "postgresql+psycopg://u@db:5433/t"),
    ],
)
def test_meta_urls(load: Load, project: Path, meta: str, expected: str) -> None:
    config = load(f"meta: {meta}\n")
    assert config.meta_url() == expected.format(root=project.resolve())
    assert meta not in repr(config)


def test_absolute_hub_path_is_kept(load: Load) -> None:
    assert load("hub: {path: /var/lib/hub}").hub_path() == Path("/var/lib/hub")


def test_load_by_file_path(project: Path) -> None:
    (project / "custom.yaml").write_text("topics: {a: {partitions: 2}}\n")
    config = load_project(project / "custom.yaml", env={})
    assert config.topics["a"].partitions == 2
    assert config.root == project.resolve()


def test_quoted_numbers_and_flow_style(load: Load) -> None:
    config = load('topics: {a: {partitions: "4", retention_bytes: 1048576}}')
    assert config.topics["a"].partitions == 4
    assert config.topics["a"].retention_bytes == 1024**2


def test_yaml_anchors_and_merge_keys(load: Load) -> None:
    config = load(
        """\
        topics:
          base: &defaults {partitions: 6, retention: 3d}
          clicks:
            <<: *defaults
            retention: 1d
        """
    )
    assert config.topics["clicks"].partitions == 6
    assert config.topics["clicks"].retention == DAY


def test_dump_loads_back(load: Load) -> None:
    config = load(FULL)
    dumped = config.model_dump()
    assert dumped["topics"]["orders"]["retention"] == "36h"
    assert dumped["topics"]["orders"]["segment_bytes"] == "256MiB"
    assert dumped["topics"]["customers"]["retention"] == "forever"
    again = ProjectConfig.model_validate(dumped, context={"root": config.root})
    assert again == config


def test_models_are_frozen(load: Load) -> None:
    config = load(FULL)
    with pytest.raises(ValueError, match="frozen"):
        config.topics["orders"].partitions = 5  # type: ignore[misc]


def test_root_is_required_for_paths() -> None:
    config = ProjectConfig.model_validate({})
    with pytest.raises(ConfigError, match="no project directory"):
        config.hub_path()


def test_topic_spec_in_code() -> None:
    spec = TopicSpec.model_validate({"retention": "forever", "retention_bytes": "1GB"})
    assert spec.to_topic_config() == TopicConfig(retention_ms=None, retention_bytes=10**9)


def test_explain_documents_every_key() -> None:
    rows = explain(ProjectConfig)
    by_key = {row.key: row for row in rows}
    assert by_key["topics.<name>.retention"] == KeyDoc(
        "topics.<name>.retention",
        "duration | 'forever'",
        "7d",
        "How long records are kept before retention deletes them, or 'forever' "
        "(Kafka's retention.ms).",
    )
    assert by_key["hub.ack"][1:3] == ("'fsync' | 'written'", "fsync")
    assert by_key["meta"].default == "sqlite:///.trunkline/meta.db"
    assert by_key["topics.<name>.retention_bytes"].default == "unlimited"
    assert by_key["topics.<name>.segment_bytes"][1:3] == ("size", "1GiB")
    assert by_key["topics.<name>.partitions"][1:3] == ("integer >= 1", "1")
    assert by_key["topics.<name>.cleanup"].type == "'delete' | 'compact' | 'compact,delete'"
    assert by_key["topics.<name>.tags"][1:3] == ("list of string", "[]")
    assert by_key["flows.<name>.sql"].default == "required"
    assert by_key["flows.<name>.freshness"][1:3] == ("duration", "none")
    assert by_key["sources.<name>.type"].default == "required"
    assert "sources.<name>.<key>" in by_key
    assert "sources.<name>.config" not in by_key
    assert all(row.description for row in rows), [row.key for row in rows if not row.description]
    topic_keys = [row.key for row in rows if row.key.startswith("topics.<name>.")]
    assert len(topic_keys) == len(TopicSpec.model_fields)
