"""Every hub backend through the same conformance suite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafka_fixtures import deleting_new_topics
from trunkline.errors import (
    ConfigError,
    HubError,
    InvalidRecord,
    NotAssigned,
    OffsetOutOfRange,
    PartitionNotFound,
    TopicExists,
    TopicNotFound,
    Unsupported,
)
from trunkline.hub import CleanupPolicy, Compression, Record, TopicConfig
from trunkline.hub._kafka_config import TOPIC_KEYS
from trunkline.hub._kafka_errors import translate
from trunkline.hub._murmur2 import partition_for_key
from trunkline.hub.embedded import EmbeddedHub
from trunkline.hub.kafka import KafkaHub
from trunkline.testing import HubConformance


class TestEmbeddedHub(HubConformance):
    @pytest.fixture
    def hub(self, tmp_path: Path) -> Iterator[EmbeddedHub]:
        with EmbeddedHub(tmp_path / "hub") as hub:
            yield hub


class TestEmbeddedHubWrittenAck(HubConformance):
    """The same semantics hold at the weaker ack level."""

    @pytest.fixture
    def hub(self, tmp_path: Path) -> Iterator[EmbeddedHub]:
        with EmbeddedHub(tmp_path / "hub", ack="written") as hub:
            yield hub


@pytest.mark.kafka
class TestKafkaHub(HubConformance):
    """Apache Kafka (KIP-848 consumer groups) through the same suite; topics are unique.

    The extra tests pin down what docs/hub-backends.md says about the Kafka backend.
    """

    @pytest.fixture
    def hub(self, kafka_bootstrap: str) -> Iterator[KafkaHub]:
        with KafkaHub(kafka_bootstrap) as hub, deleting_new_topics(hub):
            yield hub

    def test_librdkafka_partitioner_agrees(self, hub: KafkaHub, topic: str) -> None:
        """librdkafka's murmur2_random places keys where trunkline (and Java) does."""
        from confluent_kafka import Producer

        hub.create_topic(topic, TopicConfig(partitions=7))
        keys = [f"customer-{i}".encode() for i in range(200)] + [bytes(range(i)) for i in range(40)]
        placed: dict[bytes, int] = {}
        producer = Producer({"bootstrap.servers": hub.bootstrap, "partitioner": "murmur2_random"})
        for key in keys:
            producer.produce(
                topic,
                b"v",
                key,
                on_delivery=lambda _e, m: placed.__setitem__(m.key(), m.partition()),
            )
        producer.flush(30)
        expected = [partition_for_key(k, 7) for k in keys]
        assert [placed[k] for k in keys] == expected
        assert hub.produce(topic, [Record(b"v", key=k) for k in keys]).partitions.to_pylist() == (
            expected
        )

    def test_topic_configs_map_one_to_one(self, hub: KafkaHub, topic: str) -> None:
        from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

        config = TopicConfig(
            partitions=2,
            retention_ms=None,
            retention_bytes=5 << 20,
            cleanup_policy=CleanupPolicy.COMPACT_DELETE,
            segment_bytes=2 << 20,
            segment_ms=3_600_000,
            delete_retention_ms=60_000,
            min_compaction_lag_ms=1_000,
            max_message_bytes=2 << 20,
            compression=Compression.ZSTD,
        )
        assert hub.create_topic(topic, config).config == config
        resource = ConfigResource(ResourceType.TOPIC, topic)
        admin = AdminClient({"bootstrap.servers": hub.bootstrap})
        raw = next(iter(admin.describe_configs([resource]).values())).result()
        assert {k: raw[k].value for k in TOPIC_KEYS.values()} == {
            "retention.ms": "-1",
            "retention.bytes": str(5 << 20),
            "cleanup.policy": "compact,delete",
            "segment.bytes": str(2 << 20),
            "segment.ms": "3600000",
            "delete.retention.ms": "60000",
            "min.compaction.lag.ms": "1000",
            "max.message.bytes": str(2 << 20),
            "compression.type": "zstd",
        }
        changed = hub.alter_topic(topic, {"retention_ms": 1000, "compression": "none"})
        assert changed.config == config.with_changes({"retention_ms": 1000, "compression": "none"})

    def test_kafka_minimums_are_config_errors(self, hub: KafkaHub, topic: str) -> None:
        with pytest.raises(ConfigError, match=r"segment\.bytes"):
            hub.create_topic(topic, TopicConfig(segment_bytes=4096))
        assert topic not in hub.list_topics()
        fitted, notes = hub.fit_topic_config(TopicConfig(segment_bytes=4096, segment_ms=0))
        assert (fitted.segment_bytes, fitted.segment_ms) == (1 << 20, 1)
        assert len(notes) == 2

    def test_foreign_topic_values_are_unsupported(self, hub: KafkaHub, topic: str) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": hub.bootstrap})
        for name, codec in ((topic, "gzip"), (f"{topic}-p", "producer")):
            new = NewTopic(name, 1, -1, config={"compression.type": codec})
            next(iter(admin.create_topics([new]).values())).result()
        deadline = time.monotonic() + 30
        while f"{topic}-p" not in hub.list_topics() and time.monotonic() < deadline:
            time.sleep(0.05)  # created behind the hub's back: brokers learn of it a moment later
        with pytest.raises(Unsupported, match="gzip"):
            hub.describe_topic(topic)
        assert hub.describe_topic(f"{topic}-p").config.compression is Compression.NONE

    def test_durability_settings_cannot_be_weakened(self, kafka_bootstrap: str) -> None:
        for setting in ({"acks": "1"}, {"enable.idempotence": "false"}, {"group.id": "x"}):
            with pytest.raises(ConfigError, match="client_config"):
                KafkaHub(kafka_bootstrap, client_config=setting)
        KafkaHub(kafka_bootstrap, client_config={"acks": "all", "linger.ms": "1"}).close()

    def test_oversized_record_refused_before_sending(self, hub: KafkaHub, topic: str) -> None:
        hub.create_topic(topic, TopicConfig(max_message_bytes=1000))
        with pytest.raises(InvalidRecord, match="record 1 has 2000 bytes"):
            hub.produce(topic, [Record(b"small"), Record(b"x" * 2000)])
        assert hub.end_offsets(topic) == {0: 0}

    def test_produce_to_partitions_added_later(self, hub: KafkaHub, topic: str) -> None:
        """The producer learns of partitions added after it first saw the topic."""
        hub.create_topic(topic, TopicConfig(partitions=2))
        hub.produce(topic, [Record(b"before", partition=1)])
        hub.alter_topic(topic, {"partitions": 4})
        assert hub.produce(topic, [Record(b"after", partition=3)]).as_pairs() == [(3, 0)]
        assert hub.fetch(topic, 3, 0).records.column("value").to_pylist() == [b"after"]

    @pytest.mark.parametrize(
        ("code", "kind", "retryable"),
        [
            ("UNKNOWN_TOPIC_OR_PART", TopicNotFound, False),
            ("TOPIC_ALREADY_EXISTS", TopicExists, False),
            ("OFFSET_OUT_OF_RANGE", OffsetOutOfRange, False),
            ("INVALID_PARTITIONS", PartitionNotFound, False),
            ("MSG_SIZE_TOO_LARGE", InvalidRecord, False),
            ("INVALID_CONFIG", ConfigError, False),
            ("STALE_MEMBER_EPOCH", NotAssigned, True),
            ("_TRANSPORT", HubError, True),
            ("_ALL_BROKERS_DOWN", HubError, True),
            ("NOT_LEADER_FOR_PARTITION", HubError, True),
            ("UNKNOWN_LEADER_EPOCH", HubError, True),
            ("GROUP_ID_NOT_FOUND", HubError, False),
        ],
    )
    def test_errors_are_translated_once(self, code: str, kind: type, retryable: bool) -> None:
        from confluent_kafka import KafkaError, KafkaException

        error = translate(KafkaException(KafkaError(getattr(KafkaError, code))), "do a thing")
        assert type(error) is kind
        assert error.retryable is retryable
        assert "do a thing" in str(error) and code in str(error)


@pytest.mark.kafka
class TestKafkaHubClassicGroups(HubConformance):
    """The same suite with Kafka's classic group protocol (cooperative-sticky)."""

    @pytest.fixture
    def hub(self, kafka_bootstrap: str) -> Iterator[KafkaHub]:
        with KafkaHub(kafka_bootstrap, group_protocol="classic") as hub, deleting_new_topics(hub):
            yield hub
