"""Copy a hub into another one (embedded -> Kafka): topics, configs, records, group offsets.

``trunkline hub migrate --to kafka://host:port`` calls :func:`migrate`. What it copies:

* every topic, with its partition count and config (adjusted where the target refuses a
  value, e.g. Kafka's 1 MiB minimum segment size; each adjustment is in the report);
* every record of every partition, in order, into the same partition number: key, value
  (tombstones too), headers and timestamp;
* every group's committed offsets, translated (below).

**Offsets are translated by position.** The source may have gaps (compaction removed records)
or start above 0 (retention deleted old segments); the target gets the surviving records
densely from offset 0. Record number N of a source partition (counting the records that
exist, from its start) lands at target offset N, so a committed source offset X becomes the
number of source records below X: the same next record, at its new offset.

**Resumable, with the target as the only state.** Nothing but the migration writes to the
target's topics, and records of a partition arrive in order (the idempotent producer keeps
order and never writes a record twice), so the target partition always holds a *prefix* of
the source partition: its end offset E says that source records 0..E-1 are there. A re-run
skips those E records and continues; there is no state file that a crash between an
acknowledged write and a bookkeeping write could leave behind the target (which would make
the re-run copy records twice). Before continuing, the last record already in the target is
compared with its source record, so a target topic holding anything else is refused.

Source partitions are copied up to their end offsets as seen when the migration reaches the
topic: stop producers first (or migrate again afterwards, which copies only the rest).
At the end, every target partition's end offset must equal the number of source records, and
every translated group offset must read back from the target; otherwise it raises.

Example:
    >>> from trunkline.hub.embedded import EmbeddedHub  # doctest: +SKIP
    >>> from trunkline.hub.kafka import KafkaHub  # doctest: +SKIP
    >>> source, target = EmbeddedHub(".trunkline/hub"), KafkaHub("127.0.0.1:9092")  # doctest: +SKIP
    >>> report = migrate(source, target)  # doctest: +SKIP
    >>> report.records, report.verified  # doctest: +SKIP
    (1200, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from trunkline.errors import HubError, TopicExists
from trunkline.hub._types import TopicConfig, TopicPartition
from trunkline.hub.protocol import Hub

__all__ = ["GroupReport", "MigrationProgress", "MigrationReport", "TopicReport", "migrate"]

#: Records read from the source per fetch (and produced to the target per call).
BATCH_RECORDS = 10_000
BATCH_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MigrationProgress:
    """One partition's progress: source ``offset`` of ``end``; ``records`` are in the target."""

    topic: str
    partition: int
    offset: int
    end: int
    records: int


@dataclass(frozen=True, slots=True)
class TopicReport:
    """One topic: records in the source, how many this run copied, how many were there."""

    topic: str
    partitions: int
    records: int
    copied: int
    resumed: int
    config_notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupReport:
    """One group's offsets: source offset -> target offset, per partition."""

    group: str
    offsets: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MigrationReport:
    topics: tuple[TopicReport, ...]
    groups: tuple[GroupReport, ...]
    verified: bool

    @property
    def records(self) -> int:
        """Records the target holds for the migrated topics (all runs)."""
        return sum(t.records for t in self.topics)

    @property
    def copied(self) -> int:
        """Records this run wrote."""
        return sum(t.copied for t in self.topics)


Progress = Callable[[MigrationProgress], None]


def migrate(source: Hub, target: Hub, *, progress: Progress | None = None) -> MigrationReport:
    """Copy every topic and group offset of ``source`` into ``target``; re-run to resume.

    Raises:
        HubError: a target topic holds records that are not a prefix of the source's, or the
            counts do not match at the end (nothing is deleted in either hub).
    """
    topics = source.list_topics()
    committed = _committed(source, topics)
    # Which source offsets to translate, per partition: every group's committed ones.
    wanted: dict[TopicPartition, set[int]] = {}
    for offsets in committed.values():
        for tp, offset in offsets.items():
            wanted.setdefault(tp, set()).add(offset)
    topic_reports = []
    translated: dict[TopicPartition, dict[int, int]] = {}
    expected_ends: dict[TopicPartition, int] = {}
    for topic in topics:
        report, copies = _copy_topic(source, target, topic, wanted, progress)
        topic_reports.append(report)
        for copy in copies:
            translated[copy.tp] = copy.translated
            expected_ends[copy.tp] = copy.total
    group_reports = []
    for group, offsets in committed.items():
        pairs = {tp: (offset, translated[tp][offset]) for tp, offset in offsets.items()}
        if pairs:
            target.commit_offsets(group, {tp: new for tp, (_, new) in pairs.items()})
        group_reports.append(GroupReport(group, pairs))
    _verify(target, expected_ends, group_reports)
    return MigrationReport(tuple(topic_reports), tuple(group_reports), verified=True)


def _committed(source: Hub, topics: list[str]) -> dict[str, dict[TopicPartition, int]]:
    """Every group's committed offsets in ``topics``, read once (the snapshot migrated)."""
    out: dict[str, dict[TopicPartition, int]] = {}
    for group in source.list_groups():
        offsets = out.setdefault(group, {})
        for topic in topics:
            for partition, offset in source.committed(group, topic).items():
                offsets[TopicPartition(topic, partition)] = offset
    return out


def _target_config(target: Hub, config: TopicConfig) -> tuple[TopicConfig, list[str]]:
    # A backend with limits of its own says how it adapts a config (KafkaHub does).
    fit: Callable[[TopicConfig], tuple[TopicConfig, list[str]]] | None = getattr(
        target, "fit_topic_config", None
    )
    return fit(config) if fit is not None else (config, [])


def _copy_topic(
    source: Hub,
    target: Hub,
    topic: str,
    wanted: dict[TopicPartition, set[int]],
    progress: Progress | None,
) -> tuple[TopicReport, list[_PartitionCopy]]:
    described = source.describe_topic(topic)
    config, notes = _target_config(target, described.config)
    try:
        target.create_topic(topic, config)
    except TopicExists:
        found = target.describe_topic(topic).config.partitions
        if found != config.partitions:
            raise HubError(
                f"topic {topic!r} exists in the target with {found} partitions; the source has "
                f"{config.partitions}: remove it from the target or make the counts equal"
            ) from None
    records = copied = resumed = 0
    copies = []
    target_ends = target.end_offsets(topic)
    for info in described.partitions:
        tp = TopicPartition(topic, info.partition)
        copy = _PartitionCopy(source, target, tp, info.start_offset, info.end_offset)
        done = copy.run(target_ends.get(info.partition, 0), sorted(wanted.get(tp, ())), progress)
        records += copy.total
        copied += done
        resumed += copy.total - done
        copies.append(copy)
    report = TopicReport(topic, config.partitions, records, copied, resumed, tuple(notes))
    return report, copies


class _PartitionCopy:
    """Copies one source partition into the same partition of the target."""

    def __init__(self, source: Hub, target: Hub, tp: TopicPartition, start: int, end: int):
        self.source, self.target, self.tp = source, target, tp
        self.start, self.end = start, end
        self.total = 0  # source records from start to end
        self.translated: dict[int, int] = {}

    def run(self, already: int, offsets: list[int], progress: Progress | None) -> int:
        """Copy what the target lacks; returns the number of records copied now.

        ``already`` is the target's end offset: source records 0..already-1 (by position)
        are there from earlier runs. ``offsets`` are source offsets to translate on the way
        (each becomes the number of source records below it).
        """
        wanted = np.asarray(offsets, dtype=np.int64)
        below = np.zeros(len(wanted), dtype=np.int64)
        copied = 0
        offset = self.start
        while offset < self.end:
            batch = self.source.fetch(
                self.tp.topic,
                self.tp.partition,
                offset,
                max_records=BATCH_RECORDS,
                max_bytes=BATCH_BYTES,
            )
            rows = batch.records
            got = rows.column("offset").to_numpy()
            if len(got) and got[-1] >= self.end:  # written after the migration began
                rows, got = rows.slice(0, int(np.searchsorted(got, self.end))), got[got < self.end]
            below += np.searchsorted(got, wanted, side="left")
            first = self.total  # position (= target offset) of this batch's first record
            self.total += rows.num_rows
            if first < already <= self.total:
                self._check_continues(rows, already - 1 - first, already - 1)
            skip = max(0, already - first)
            if skip < rows.num_rows:
                fresh = rows.slice(skip).select(["key", "value", "timestamp", "headers"])
                self.target.produce(self.tp.topic, fresh, partition=self.tp.partition)
                copied += fresh.num_rows
            if batch.next_offset <= offset:
                break
            offset = batch.next_offset
            if progress is not None:
                progress(
                    MigrationProgress(
                        self.tp.topic,
                        self.tp.partition,
                        min(offset, self.end),
                        self.end,
                        max(self.total, already),
                    )
                )
        if already > self.total:
            raise HubError(
                f"{self.tp.topic}[{self.tp.partition}] holds {already} records in the target "
                f"but the source only {self.total}: the target topic has records the migration "
                "did not write; refusing to go on"
            )
        self.translated = {int(x): int(n) for x, n in zip(wanted, below, strict=True)}
        return copied

    def _check_continues(self, rows: pa.Table, row: int, target_offset: int) -> None:
        """The target's last record (``target_offset``) must be source row ``row``."""
        there = self.target.fetch(self.tp.topic, self.tp.partition, target_offset, max_records=1)
        if _rows(rows.slice(row, 1)) != _rows(there.records.slice(0, 1)):
            raise HubError(
                f"{self.tp.topic}[{self.tp.partition}] in the target does not continue the "
                f"source: its record at offset {target_offset} is not source record number "
                f"{target_offset}; the target topic holds records the migration did not "
                "write, refusing to resume"
            )


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    """Records as comparable tuples (key, value, timestamp, headers)."""
    return [
        (
            r["key"],
            r["value"],
            r["timestamp"],
            tuple((h["key"], h["value"]) for h in r["headers"] or ()),
        )
        for r in table.select(["key", "value", "timestamp", "headers"]).to_pylist()
    ]


def _verify(
    target: Hub, expected_ends: dict[TopicPartition, int], groups: list[GroupReport]
) -> None:
    """Every target partition ends where the source's record count says; offsets read back."""
    problems = []
    ends: dict[str, dict[int, int]] = {}
    for tp, expected in sorted(expected_ends.items(), key=lambda i: (i[0].topic, i[0].partition)):
        if tp.topic not in ends:
            ends[tp.topic] = target.end_offsets(tp.topic)
        found = ends[tp.topic].get(tp.partition)
        if found != expected:
            problems.append(
                f"{tp.topic}[{tp.partition}]: the source has {expected} records, the target "
                f"partition ends at {found}"
            )
    for group in groups:
        by_topic: dict[str, dict[int, int]] = {}
        for tp, (_, new) in group.offsets.items():
            by_topic.setdefault(tp.topic, {})[tp.partition] = new
        for topic, expected_offsets in by_topic.items():
            got = target.committed(group.group, topic)
            if got != expected_offsets:
                problems.append(
                    f"group {group.group!r} in {topic!r}: expected offsets {expected_offsets}, "
                    f"the target has {got}"
                )
    if problems:
        raise HubError("migration verification failed: " + "; ".join(problems))
