"""The Hub conformance suite: what every hub backend must do, written once.

A backend's test module subclasses :class:`HubConformance` and provides a ``hub`` fixture
that yields a fresh, empty hub (and ``topic_name``, optional, to keep names unique on a shared
cluster). Every test here states Kafka semantics; a backend that cannot meet one documents
the difference and overrides the test with one that checks the documented behaviour.

Example (tests/conformance/test_hub.py)::

    class TestEmbedded(HubConformance):
        @pytest.fixture
        def hub(self, tmp_path):
            with EmbeddedHub(tmp_path / "hub") as hub:
                yield hub
"""

from __future__ import annotations

import threading
import time
import uuid

import pyarrow as pa
import pytest

from trunkline.errors import (
    ConfigError,
    HubError,
    InvalidRecord,
    NotAssigned,
    OffsetOutOfRange,
    PartitionNotFound,
    TopicExists,
    TopicNotFound,
)
from trunkline.hub import CleanupPolicy, Consumer, Hub, Record, TopicConfig, TopicPartition
from trunkline.hub._murmur2 import partition_for_key
from trunkline.hub._template import render, template

__all__ = ["HubConformance", "drain"]


def drain(consumer: Consumer, expected: int, timeout: float = 30.0) -> list[tuple[int, int, bytes]]:
    """Poll until ``expected`` records arrived (or time out); returns (partition, offset, value)."""
    seen: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(0.5):
            values = batch.records.column("value").to_pylist()
            offsets = batch.records.column("offset").to_pylist()
            seen += [(batch.partition, o, v) for o, v in zip(offsets, values, strict=True)]
    return seen


class HubConformance:
    """Mix into a test class that provides a ``hub`` fixture."""

    @pytest.fixture
    def topic(self) -> str:
        return f"t-{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    def group(self) -> str:
        return f"g-{uuid.uuid4().hex[:10]}"

    # -- topics -----------------------------------------------------------------------

    def test_create_describe_list_delete(self, hub: Hub, topic: str) -> None:
        desc = hub.create_topic(topic, TopicConfig(partitions=3, retention_ms=3_600_000))
        assert desc.name == topic
        assert [p.partition for p in desc.partitions] == [0, 1, 2]
        assert all(p.start_offset == 0 and p.end_offset == 0 for p in desc.partitions)
        assert topic in hub.list_topics()
        again = hub.describe_topic(topic)
        assert again.config.partitions == 3
        assert again.config.retention_ms == 3_600_000
        hub.delete_topic(topic)
        assert topic not in hub.list_topics()
        with pytest.raises(TopicNotFound, match=topic):
            hub.describe_topic(topic)

    def test_create_existing_topic_fails(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic)
        with pytest.raises(TopicExists, match=topic):
            hub.create_topic(topic)

    @pytest.mark.parametrize("name", ["", "has space", "a/b", "é", "x" * 250, ".."])
    def test_invalid_topic_names(self, hub: Hub, name: str) -> None:
        with pytest.raises(ConfigError, match="invalid topic name"):
            hub.create_topic(name)

    def test_unknown_topic_errors(self, hub: Hub) -> None:
        missing = f"missing-{uuid.uuid4().hex[:8]}"
        with pytest.raises(TopicNotFound, match=missing):
            hub.produce(missing, [Record(b"v")])
        with pytest.raises(TopicNotFound):
            hub.fetch(missing, 0, 0)
        with pytest.raises(TopicNotFound):
            hub.delete_topic(missing)
        with pytest.raises(TopicNotFound):
            hub.end_offsets(missing)

    def test_alter_config_and_grow_partitions(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=2))
        desc = hub.alter_topic(topic, {"retention_ms": 60_000, "partitions": 4})
        assert desc.config.retention_ms == 60_000
        assert len(desc.partitions) == 4
        hub.produce(topic, [Record(b"x", partition=3)])
        assert hub.end_offsets(topic)[3] == 1
        with pytest.raises(ConfigError, match="only grow"):
            hub.alter_topic(topic, {"partitions": 2})
        with pytest.raises(ConfigError, match="unknown topic config"):
            hub.alter_topic(topic, {"retension_ms": 5})

    # -- produce and fetch ------------------------------------------------------------

    def test_round_trip_keys_values_headers_timestamps(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic)
        records = [
            Record(b"v0", key=b"k0", timestamp=1_700_000_000_000),
            Record(None, key=b"k1", timestamp=1_700_000_000_001),  # tombstone
            Record(b"", key=None, headers=(("h", b"1"), ("h", None), ("x", b"\x00\xff"))),
            Record("text value", key="text key"),  # type: ignore[arg-type]
        ]
        result = hub.produce(topic, records)
        assert result.as_pairs() == [(0, 0), (0, 1), (0, 2), (0, 3)]
        got = list(hub.fetch(topic, 0, 0).messages())
        assert [m.offset for m in got] == [0, 1, 2, 3]
        assert [m.key for m in got] == [b"k0", b"k1", None, b"text key"]
        assert [m.value for m in got] == [b"v0", None, b"", b"text value"]
        assert got[0].timestamp == 1_700_000_000_000
        assert got[1].timestamp == 1_700_000_000_001
        assert got[2].headers == (("h", b"1"), ("h", None), ("x", b"\x00\xff"))
        assert abs(got[3].timestamp - time.time() * 1000) < 600_000

    def test_template_values_are_read_as_their_bytes(self, hub: Hub, topic: str) -> None:
        """A value column given as a template (text fragments between constant texts) is
        read back as the bytes it renders, keyed and partitioned like those bytes."""
        hub.create_topic(topic, TopicConfig(partitions=3))
        ids = [str(i) for i in range(40)]
        value = template(
            ['{"id":', ',"name":"', '"}'],
            [pa.array(ids), pa.array([f"n\u00e9{i}" for i in range(40)])],
            pa.array([i % 9 != 4 for i in range(40)]),
        )
        keys = pa.array([i.encode() for i in ids], pa.binary())
        result = hub.produce(topic, pa.table({"key": keys, "value": value}))
        assert result.partitions.to_pylist() == [partition_for_key(k, 3) for k in keys.to_pylist()]
        expected = dict(zip(keys.to_pylist(), render(value).to_pylist(), strict=True))
        got = {}
        for partition in range(3):
            for message in hub.fetch(topic, partition, 0, max_records=100).messages():
                got[message.key] = message.value
        assert got == expected
        assert got[b"4"] is None and got[b"0"] == '{"id":0,"name":"n\u00e90"}'.encode()

    def test_offsets_dense_and_monotonic(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic)
        for i in range(5):
            result = hub.produce(topic, [Record(f"{i}-{j}".encode()) for j in range(7)])
            assert result.offsets.to_pylist() == list(range(i * 7, i * 7 + 7))
        batch = hub.fetch(topic, 0, 0, max_records=1000)
        assert batch.records.column("offset").to_pylist() == list(range(35))
        assert hub.end_offsets(topic) == {0: 35}
        assert hub.start_offsets(topic) == {0: 0}

    def test_keyed_records_use_kafka_partitioner(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=7))
        keys = [f"customer-{i}".encode() for i in range(50)]
        result = hub.produce(topic, [Record(b"v", key=k) for k in keys])
        assert result.partitions.to_pylist() == [partition_for_key(k, 7) for k in keys]
        again = hub.produce(topic, [Record(b"w", key=k) for k in keys])
        assert again.partitions.to_pylist() == result.partitions.to_pylist()

    def test_keyless_records_spread(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=4))
        used = set()
        for _ in range(40):
            used |= set(hub.produce(topic, [Record(b"v")]).partitions.to_pylist())
        assert len(used) > 1

    def test_explicit_partition(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=3))
        result = hub.produce(topic, [Record(b"a", key=b"k"), Record(b"b")], partition=2)
        assert result.partitions.to_pylist() == [2, 2]
        pinned = hub.produce(topic, [Record(b"c", partition=1)])
        assert pinned.as_pairs() == [(1, 0)]
        with pytest.raises(PartitionNotFound, match="partition 3 does not exist"):
            hub.produce(topic, [Record(b"x")], partition=3)
        with pytest.raises(PartitionNotFound):
            hub.fetch(topic, 5, 0)

    def test_arrow_batches(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=3))
        n = 3000
        batch = pa.record_batch(
            {
                "key": pa.array([f"k{i % 100}" for i in range(n)]),
                "value": pa.array([f"value-{i}".encode() for i in range(n)]),
                "timestamp": pa.array([1_700_000_000_000 + i for i in range(n)], pa.int64()),
            }
        )
        result = hub.produce(topic, batch)
        assert len(result) == n
        expected = [partition_for_key(f"k{i % 100}".encode(), 3) for i in range(n)]
        assert result.partitions.to_pylist() == expected
        rows: dict[int, list[bytes]] = {}
        for p in range(3):
            fetched = hub.fetch(topic, p, 0, max_records=n)
            rows[p] = fetched.records.column("value").to_pylist()
        for i in range(n):
            p, o = result.partitions[i].as_py(), result.offsets[i].as_py()
            assert rows[p][o] == f"value-{i}".encode()
        table = pa.table({"value": pa.array([b"t1", b"t2"])})
        assert len(hub.produce(topic, table, partition=0)) == 2

    def test_bad_records_are_rejected_whole(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic)
        with pytest.raises(InvalidRecord, match="record 1"):
            hub.produce(topic, [Record(b"ok"), 42])
        with pytest.raises(InvalidRecord, match="value"):
            hub.produce(topic, pa.table({"payload": [b"x"]}))
        with pytest.raises(InvalidRecord, match="column 'key'"):
            hub.produce(topic, pa.table({"value": [b"x"], "key": [1]}))
        with pytest.raises(InvalidRecord):
            hub.produce(topic, "not records")
        assert hub.end_offsets(topic) == {0: 0}

    def test_empty_produce(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic)
        assert len(hub.produce(topic, [])) == 0
        assert hub.end_offsets(topic) == {0: 0}

    def test_compacted_topic_needs_keys(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic, TopicConfig(cleanup_policy=CleanupPolicy.COMPACT))
        with pytest.raises(InvalidRecord, match="compact"):
            hub.produce(topic, [Record(b"v", key=b"k"), Record(b"no key")])
        assert hub.end_offsets(topic) == {0: 0}
        hub.produce(topic, [Record(b"v", key=b"k")])
        assert hub.end_offsets(topic) == {0: 1}

    def test_large_batch_round_trip(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic)
        values = [bytes([i % 251]) * 100_000 for i in range(120)]  # 12 MB
        hub.produce(topic, [Record(v) for v in values])
        got: list[bytes] = []
        offset = 0
        while offset < 120:
            batch = hub.fetch(topic, 0, offset, max_bytes=1 << 20)
            assert len(batch) > 0
            got += batch.records.column("value").to_pylist()
            offset = batch.next_offset
        assert got == values

    def test_fetch_positions_and_limits(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic)
        hub.produce(topic, [Record(str(i).encode()) for i in range(100)])
        middle = hub.fetch(topic, 0, 37, max_records=5)
        assert middle.records.column("offset").to_pylist() == [37, 38, 39, 40, 41]
        assert middle.next_offset == 42
        at_end = hub.fetch(topic, 0, 100)
        assert len(at_end) == 0
        assert at_end.next_offset == 100
        with pytest.raises(OffsetOutOfRange, match="101"):
            hub.fetch(topic, 0, 101)

    def test_fetch_waits_for_new_records(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic)
        timer = threading.Timer(0.3, lambda: hub.produce(topic, [Record(b"late")]))
        timer.start()
        try:
            batch = hub.fetch(topic, 0, 0, timeout=20.0)
        finally:
            timer.join()
        assert batch.records.column("value").to_pylist() == [b"late"]

    def test_offsets_for_time(self, hub: Hub, topic: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=2))
        base = 1_700_000_000_000
        hub.produce(
            topic, [Record(b"a", timestamp=base + i * 1000) for i in range(10)], partition=0
        )
        found = hub.offsets_for_time(topic, base + 4500)
        assert found[0] == 5
        assert found[1] is None
        assert hub.offsets_for_time(topic, base - 1)[0] == 0
        assert hub.offsets_for_time(topic, base + 10_000)[0] is None

    # -- consumer groups --------------------------------------------------------------

    def test_group_consumes_commits_and_resumes(self, hub: Hub, topic: str, group: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=3))
        hub.produce(topic, [Record(f"v{i}".encode(), key=f"k{i}".encode()) for i in range(60)])
        with hub.consumer(group, [topic]) as consumer:
            seen = drain(consumer, 60)
            consumer.commit()
        assert sorted(v for _, _, v in seen) == sorted(f"v{i}".encode() for i in range(60))
        assert hub.committed(group, topic) == hub.end_offsets(topic)
        hub.produce(topic, [Record(b"after", key=b"k1")])
        with hub.consumer(group, [topic]) as consumer:
            again = drain(consumer, 1)
        assert [v for _, _, v in again] == [b"after"]
        assert group in hub.list_groups()

    def test_auto_offset_reset_latest(self, hub: Hub, topic: str, group: str) -> None:
        hub.create_topic(topic)
        hub.produce(topic, [Record(b"old")])
        with hub.consumer(group, [topic], auto_offset_reset="latest") as consumer:
            deadline = time.monotonic() + 30
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(0.2)
            assert consumer.position(TopicPartition(topic, 0)) == 1
            hub.produce(topic, [Record(b"new")])
            assert [v for _, _, v in drain(consumer, 1)] == [b"new"]

    def test_members_split_partitions(self, hub: Hub, topic: str, group: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=4))
        first = hub.consumer(group, [topic], client="a")
        second = hub.consumer(group, [topic], client="b")
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                first.poll(0.1)
                second.poll(0.1)
                a, b = first.assignment(), second.assignment()
                if len(a) == 2 and len(b) == 2:
                    break
            assert a.isdisjoint(b)
            assert {tp.partition for tp in a | b} == {0, 1, 2, 3}
            described = hub.describe_group(group)
            assert len(described.members) == 2
        finally:
            second.close()
        try:
            deadline = time.monotonic() + 60
            while len(first.assignment()) < 4 and time.monotonic() < deadline:
                first.poll(0.1)
            assert len(first.assignment()) == 4
        finally:
            first.close()

    def test_commit_of_unowned_partition_fails(self, hub: Hub, topic: str, group: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=2))
        other = f"{topic}-other"
        hub.create_topic(other)
        with hub.consumer(group, [topic]) as consumer:
            drain(consumer, 0, timeout=0.5)
            with pytest.raises((NotAssigned, HubError)):
                consumer.commit({TopicPartition(other, 0): 0})
        assert hub.committed(group, other) == {}

    def test_describe_and_reset_group(self, hub: Hub, topic: str, group: str) -> None:
        hub.create_topic(topic, TopicConfig(partitions=2))
        base = 1_700_000_000_000
        hub.produce(topic, [Record(b"x", timestamp=base + i) for i in range(10)], partition=0)
        hub.produce(topic, [Record(b"y", timestamp=base + i) for i in range(4)], partition=1)
        hub.commit_offsets(group, {TopicPartition(topic, 0): 3})
        described = hub.describe_group(group)
        lags = {(o.topic, o.partition): o.lag for o in described.offsets}
        assert lags == {(topic, 0): 7, (topic, 1): 4}
        assert hub.reset_group(group, topic, "latest") == {0: 10, 1: 4}
        assert hub.committed(group, topic) == {0: 10, 1: 4}
        assert hub.reset_group(group, topic, "earliest") == {0: 0, 1: 0}
        assert hub.reset_group(group, topic, base + 5, by_time=True) == {0: 5, 1: 4}
        assert hub.reset_group(group, topic, 2) == {0: 2, 1: 2}
        with pytest.raises(ConfigError):
            hub.reset_group(group, topic, "yesterday")  # type: ignore[arg-type]

    def test_reset_refused_while_members_live(self, hub: Hub, topic: str, group: str) -> None:
        hub.create_topic(topic)
        with hub.consumer(group, [topic]) as consumer:
            consumer.poll(0.2)
            with pytest.raises(HubError, match=r"live|active|member|empty"):
                hub.reset_group(group, topic, "earliest")

    def test_delete_group(self, hub: Hub, topic: str, group: str) -> None:
        hub.create_topic(topic)
        hub.commit_offsets(group, {TopicPartition(topic, 0): 0})
        assert group in hub.list_groups()
        hub.delete_group(group)
        assert group not in hub.list_groups()
