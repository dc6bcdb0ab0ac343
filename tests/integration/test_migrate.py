"""trunkline.hub.migrate: an embedded hub moves to Kafka whole, and a broken run resumes."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafka_fixtures import deleting_new_topics
from trunkline.errors import HubError
from trunkline.hub import CleanupPolicy, Hub, Record, TopicConfig, TopicPartition
from trunkline.hub import migrate as migration
from trunkline.hub.embedded import EmbeddedHub
from trunkline.hub.kafka import KafkaHub
from trunkline.hub.migrate import MigrationProgress, migrate

pytestmark = pytest.mark.kafka

Row = tuple[int, bytes | None, bytes | None, int, tuple[tuple[str, bytes | None], ...]]


@pytest.fixture
def kafka(kafka_bootstrap: str) -> Iterator[KafkaHub]:
    with KafkaHub(kafka_bootstrap) as hub, deleting_new_topics(hub):
        yield hub


@pytest.fixture
def names() -> dict[str, str]:
    """Topic and group names unique to the test (the broker is shared by the session)."""
    tag = uuid.uuid4().hex[:8]
    return {n: f"{n}-{tag}" for n in ("orders", "customers", "events", "g1", "g2")}


def read_all(hub: Hub, topic: str) -> dict[int, list[Row]]:
    """Every record of every partition: (offset, key, value, timestamp, headers)."""
    out: dict[int, list[Row]] = {}
    starts = hub.start_offsets(topic)
    for partition, end in hub.end_offsets(topic).items():
        rows: list[Row] = []
        offset = starts[partition]
        while offset < end:
            batch = hub.fetch(topic, partition, offset, max_records=5000)
            rows += [(m.offset, m.key, m.value, m.timestamp, m.headers) for m in batch.messages()]
            offset = batch.next_offset
        out[partition] = rows
    return out


def build_source(path: Path, n: dict[str, str]) -> EmbeddedHub:
    """Three topics (plain, compacted, retention-trimmed) and two groups with offsets."""
    hub = EmbeddedHub(path)
    # An hour ago: within the topics' retention on Kafka too (older timestamps would let the
    # broker's retention check delete the copies while the test runs).
    base = int(time.time() * 1000) - 3_600_000
    hub.create_topic(n["orders"], TopicConfig(partitions=3))
    hub.produce(
        n["orders"],
        [
            Record(
                value=None if i % 17 == 0 else f"order-{i}".encode(),
                key=None if i % 5 == 0 else f"c{i % 11}".encode(),
                headers=(("trace", f"{i}".encode()), ("empty", None), ("trace", b"\x00")),
                timestamp=base + i,
            )
            for i in range(300)
        ],
    )
    compact = TopicConfig(
        partitions=2, cleanup_policy=CleanupPolicy.COMPACT, segment_bytes=1024, retention_ms=None
    )
    hub.create_topic(n["customers"], compact)
    # Keys written once survive compaction at low offsets, so gaps open between records.
    hub.produce(n["customers"], [Record(b"once", key=f"once-{k}".encode()) for k in range(6)])
    for round_no in range(8):
        hub.produce(
            n["customers"],
            [
                Record(
                    None if (round_no == 7 and k % 4 == 0) else f"v{round_no}-{k}".encode(),
                    key=f"k{k}".encode(),
                    timestamp=base + round_no * 1000 + k,
                )
                for k in range(20)
            ],
        )
    retained = TopicConfig(partitions=1, segment_bytes=1024, retention_ms=60_000)
    hub.create_topic(n["events"], retained)
    for i in range(10):  # closed segments: retention removes them two minutes from now
        hub.produce(n["events"], [Record(b"old" * 40, timestamp=base + i) for _ in range(5)])
    now = int(time.time() * 1000)
    hub.produce(n["events"], [Record(f"new-{i}".encode(), timestamp=now) for i in range(7)])
    report = hub.maintain(now + 120_000)
    assert report.records_compacted > 0 and report.segments_deleted > 0
    assert hub.start_offsets(n["events"])[0] > 0
    hub.commit_offsets(
        n["g1"],
        {
            TopicPartition(n["orders"], 0): 40,
            TopicPartition(n["orders"], 2): hub.end_offsets(n["orders"])[2],
            TopicPartition(n["customers"], 0): _offset_in_gap(hub, n["customers"], 0),
            TopicPartition(n["events"], 0): 3,  # below the start: deleted by retention
        },
    )
    hub.commit_offsets(
        n["g2"], {TopicPartition(n["events"], 0): hub.end_offsets(n["events"])[0] - 2}
    )
    return hub


def _offset_in_gap(hub: EmbeddedHub, topic: str, partition: int) -> int:
    offsets = [row[0] for row in read_all(hub, topic)[partition]]
    gaps = [a + 1 for a, b in itertools.pairwise(offsets) if b > a + 1]
    assert gaps, "compaction left no gap to translate"
    return gaps[len(gaps) // 2]


def check_copied(source: Hub, target: Hub, topics: list[str]) -> None:
    """Same records, same order, same partitions; target offsets dense from 0."""
    for topic in topics:
        assert target.describe_topic(topic).config.partitions == len(source.end_offsets(topic))
        theirs, ours = read_all(source, topic), read_all(target, topic)
        assert set(theirs) == set(ours)
        for partition, rows in theirs.items():
            assert [r[1:] for r in ours[partition]] == [r[1:] for r in rows], (topic, partition)
            assert [r[0] for r in ours[partition]] == list(range(len(rows)))


def check_offsets(source: Hub, target: Hub, groups: list[str], topics: list[str]) -> None:
    """A committed source offset X became the number of source records below X."""
    for group in groups:
        for topic in topics:
            committed = source.committed(group, topic)
            rows = read_all(source, topic)
            expected = {p: sum(1 for r in rows[p] if r[0] < x) for p, x in committed.items()}
            assert target.committed(group, topic) == expected, (group, topic)


def test_migrates_topics_records_configs_and_offsets(
    tmp_path: Path, kafka: KafkaHub, names: dict[str, str]
) -> None:
    topics = [names["orders"], names["customers"], names["events"]]
    groups = [names["g1"], names["g2"]]
    seen: list[MigrationProgress] = []
    with build_source(tmp_path / "hub", names) as source:
        report = migrate(source, kafka, progress=seen.append)
        assert report.verified
        assert report.records == sum(
            len(rows) for t in topics for rows in read_all(source, t).values()
        )
        assert report.copied == report.records
        check_copied(source, kafka, topics)
        check_offsets(source, kafka, groups, topics)
        # Offsets the source lost to compaction/retention land on the next record.
        g1 = {r.group: r for r in report.groups}[names["g1"]].offsets
        assert g1[TopicPartition(names["events"], 0)][1] == 0
        configs = {t.topic: t for t in report.topics}
        customers = kafka.describe_topic(names["customers"]).config
        assert customers.cleanup_policy is CleanupPolicy.COMPACT
        assert customers.retention_ms is None
        assert customers.segment_bytes == 1024 * 1024  # raised to Kafka's minimum, and said so
        assert any("segment_bytes" in note for note in configs[names["customers"]].config_notes)
        assert kafka.describe_topic(names["events"]).config.retention_ms == 60_000
        assert seen and all(p.offset <= p.end for p in seen)
        # Running again copies nothing and changes nothing.
        again = migrate(source, kafka)
        assert again.copied == 0 and again.records == report.records
        check_copied(source, kafka, topics)


class _Interrupted(Exception):
    pass


class _FailingTarget:
    """A target hub whose produce fails after ``calls`` successful calls (a crash mid-run)."""

    def __init__(self, hub: KafkaHub, calls: int) -> None:
        self._hub = hub
        self.calls = calls

    def produce(self, *args: Any, **kwargs: Any) -> Any:
        if self.calls == 0:
            raise _Interrupted("injected failure")
        self.calls -= 1
        return self._hub.produce(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hub, name)


def test_interrupted_migration_resumes_without_duplicates(
    tmp_path: Path, kafka: KafkaHub, names: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migration, "BATCH_RECORDS", 23)  # many small steps to break between
    topics = [names["orders"], names["customers"], names["events"]]
    with build_source(tmp_path / "hub", names) as source:
        for calls in (4, 9):  # break twice, at different places
            with pytest.raises(_Interrupted):
                migrate(source, _FailingTarget(kafka, calls))  # type: ignore[arg-type]
        partial = sum(
            sum(kafka.end_offsets(t).values()) for t in topics if t in kafka.list_topics()
        )
        assert partial > 0
        report = migrate(source, kafka)
        assert report.verified and report.copied + sum(t.resumed for t in report.topics) == (
            report.records
        )
        assert sum(t.resumed for t in report.topics) == partial
        check_copied(source, kafka, topics)
        check_offsets(source, kafka, [names["g1"], names["g2"]], topics)


def test_refuses_to_resume_into_a_foreign_topic(
    tmp_path: Path, kafka: KafkaHub, names: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migration, "BATCH_RECORDS", 50)
    with build_source(tmp_path / "hub", names) as source:
        with pytest.raises(_Interrupted):
            migrate(source, _FailingTarget(kafka, 1))  # type: ignore[arg-type]
        first = source.list_topics()[0]
        written = {p for p, end in kafka.end_offsets(first).items() if end}
        foreign = Record(b"not from the source", key=b"k1")
        kafka.produce(first, [foreign], partition=min(written))
        with pytest.raises(HubError, match="records the migration did not write"):
            migrate(source, kafka)
