"""The embedded hub: a durable, Kafka-shaped log in a local folder.

Layout of a hub folder::

    hub.json                     format marker
    groups.db                    consumer groups (see trunkline.hub._groups)
    topics/<name>/topic.json     the topic's id and config
    topics/<name>/<partition>/   segments, indexes and the high watermark (trunkline.hub._log)

Any number of processes can open one hub folder at once; see :mod:`trunkline.hub._log` for
how appends and reads stay safe between them.

Example:
    >>> import tempfile, pathlib
    >>> with EmbeddedHub(pathlib.Path(tempfile.mkdtemp()) / "hub") as hub:
    ...     _ = hub.create_topic("orders", TopicConfig(partitions=3))
    ...     result = hub.produce("orders", [Record(key=b"c-1", value=b'{"total": 12}')])
    ...     batch = hub.fetch("orders", result.as_pairs()[0][0], 0)
    ...     [m.value for m in batch.messages()]
    [b'{"total": 12}']
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from trunkline.errors import (
    ConfigError,
    HubError,
    InvalidRecord,
    PartitionNotFound,
    TopicExists,
    TopicNotFound,
)
from trunkline.hub._groups import GroupStore
from trunkline.hub._log import Ack, CompactionResult, PartitionLog, RecoveryReport, _fsync_dir
from trunkline.hub._notify import Waiter
from trunkline.hub._records import assign_partitions, stored_batches, to_table
from trunkline.hub._types import (
    FetchedBatch,
    GroupDescription,
    PartitionInfo,
    PartitionOffsets,
    ProduceResult,
    TopicConfig,
    TopicDescription,
    TopicPartition,
    check_topic_name,
)
from trunkline.hub.protocol import AutoOffsetReset, Consumer, Producible, ResetTarget

log = logging.getLogger("trunkline.hub")

FORMAT_VERSION = 1


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _Topic:
    id: str
    config: TopicConfig
    stamp: int  # topic.json's mtime_ns when read


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one :meth:`EmbeddedHub.maintain` pass did."""

    segments_deleted: int
    segments_compacted: int
    records_compacted: int


class EmbeddedHub:
    """The embedded backend of the :class:`~trunkline.hub.protocol.Hub` protocol."""

    backend = "embedded"

    def __init__(self, path: Path | str, *, ack: Ack | str = Ack.FSYNC) -> None:
        self.path = Path(path)
        self.ack = Ack(ack)
        self._topics_dir = self.path / "topics"
        self._open_marker()
        self._lock = threading.RLock()
        self._topics: dict[str, _Topic] = {}
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self._sticky = itertools.count(int.from_bytes(os.urandom(2), "little"))
        self._groups: GroupStore | None = None
        self._waiter: Waiter | None = None
        self.recovery_reports: list[RecoveryReport] = self._recover_all()

    def _open_marker(self) -> None:
        marker = self.path / "hub.json"
        if marker.exists():
            try:
                version = json.loads(marker.read_text())["format"]
            except (ValueError, KeyError, TypeError) as exc:
                raise HubError(f"{marker} is not a trunkline hub marker: {exc}") from None
            if version != FORMAT_VERSION:
                raise HubError(
                    f"{marker} has hub format {version}; this trunkline reads format "
                    f"{FORMAT_VERSION}"
                )
            return
        if self.path.exists() and any(self.path.iterdir()):
            raise HubError(
                f"{self.path} exists, is not empty and is not a trunkline hub "
                "(no hub.json); refusing to use it"
            )
        self._topics_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(marker, json.dumps({"format": FORMAT_VERSION}).encode())

    def _recover_all(self) -> list[RecoveryReport]:
        """Check every partition's tail; a crashed writer's torn batch is truncated here."""
        reports: list[RecoveryReport] = []
        for name in self.list_topics():
            with contextlib.suppress(TopicNotFound):
                for partition in range(self._topic(name).config.partitions):
                    reports += self._log(name, partition).recover()
        return reports

    @property
    def groups(self) -> GroupStore:
        with self._lock:
            if self._groups is None:
                self._groups = GroupStore(self.path)
            return self._groups

    def close(self) -> None:
        with self._lock:
            for partition_log in self._logs.values():
                partition_log.close()
            self._logs.clear()
            if self._groups is not None:
                self._groups.close()
                self._groups = None
            if self._waiter is not None:
                self._waiter.close()
                self._waiter = None

    def __enter__(self) -> EmbeddedHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics -----------------------------------------------------------------------

    def _topic_dir(self, name: str) -> Path:
        return self._topics_dir / check_topic_name(name)

    def _topic(self, name: str) -> _Topic:
        meta = self._topic_dir(name) / "topic.json"
        try:
            stamp = meta.stat().st_mtime_ns
        except FileNotFoundError:
            self._forget(name)
            raise TopicNotFound(f"topic {name!r} does not exist in {self.path}") from None
        cached = self._topics.get(name)
        if cached is not None and cached.stamp == stamp:
            return cached
        data = json.loads(meta.read_bytes())
        topic = _Topic(data["id"], TopicConfig.from_dict(data["config"]), stamp)
        if cached is not None and cached.id != topic.id:
            self._forget(name)  # deleted and created again: drop stale file handles
        self._topics[name] = topic
        return topic

    def _forget(self, name: str) -> None:
        with self._lock:
            self._topics.pop(name, None)
            for key in [k for k in self._logs if k[0] == name]:
                self._logs.pop(key).close()

    def _log(self, topic: str, partition: int) -> PartitionLog:
        key = (topic, partition)
        found = self._logs.get(key)
        if found is not None:
            return found
        partitions = self._topic(topic).config.partitions
        if not isinstance(partition, int) or not 0 <= partition < partitions:
            raise PartitionNotFound(
                f"topic {topic!r} has {partitions} partition(s); partition {partition} does "
                "not exist"
            )
        with self._lock:
            found = self._logs.get(key)
            if found is None:
                found = PartitionLog(self._topic_dir(topic) / str(partition), ack=self.ack)
                self._logs[key] = found
            return found

    def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicDescription:
        config = config or TopicConfig()
        final = self._topic_dir(name)
        if final.exists():
            raise TopicExists(f"topic {name!r} already exists in {self.path}")
        staging = self._topics_dir / f".creating-{name}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            for partition in range(config.partitions):
                PartitionLog.initialise(staging / str(partition))
            meta = {"id": uuid.uuid4().hex, "name": name, "config": config.to_dict()}
            _write_atomic(staging / "topic.json", json.dumps(meta, indent=2).encode())
            try:
                # rename() of a directory onto an existing non-empty one fails: the check
                # above and this rename race safely between processes.
                staging.rename(final)
            except OSError:
                raise TopicExists(f"topic {name!r} already exists in {self.path}") from None
            _fsync_dir(self._topics_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        self._forget(name)
        return self.describe_topic(name)

    def delete_topic(self, name: str) -> None:
        self._topic(name)
        graveyard = self._topics_dir / f".deleted-{name}-{uuid.uuid4().hex}"
        try:
            self._topic_dir(name).rename(graveyard)
        except FileNotFoundError:
            raise TopicNotFound(f"topic {name!r} does not exist in {self.path}") from None
        self._forget(name)
        self.groups.delete_topic(name)
        _fsync_dir(self._topics_dir)
        shutil.rmtree(graveyard, ignore_errors=True)

    def list_topics(self) -> list[str]:
        if not self._topics_dir.exists():
            return []
        return sorted(
            entry.name
            for entry in os.scandir(self._topics_dir)
            if not entry.name.startswith(".") and entry.is_dir()
        )

    def describe_topic(self, name: str) -> TopicDescription:
        config = self._topic(name).config
        infos = []
        for partition in range(config.partitions):
            plog = self._log(name, partition)
            segments = plog.segments()
            infos.append(
                PartitionInfo(
                    partition=partition,
                    start_offset=plog.start_offset(),
                    end_offset=plog.end_offset(),
                    size_bytes=plog.size_bytes(),
                    segments=len(segments),
                )
            )
        return TopicDescription(name, config, tuple(infos))

    def alter_topic(self, name: str, changes: Mapping[str, Any]) -> TopicDescription:
        topic_dir = self._topic_dir(name)
        with _dir_lock(topic_dir if topic_dir.exists() else self._topics_dir):
            topic = self._topic(name)
            updated = topic.config.with_changes(changes)
            if updated.partitions < topic.config.partitions:
                raise ConfigError(
                    f"topic {name!r} has {topic.config.partitions} partitions; the count can "
                    f"only grow (Kafka's rule), found {updated.partitions}"
                )
            for partition in range(topic.config.partitions, updated.partitions):
                PartitionLog.initialise(topic_dir / str(partition))
            meta = {"id": topic.id, "name": name, "config": updated.to_dict()}
            _write_atomic(topic_dir / "topic.json", json.dumps(meta, indent=2).encode())
        self._topics.pop(name, None)
        return self.describe_topic(name)

    # -- records ----------------------------------------------------------------------

    def produce(
        self, topic: str, records: Producible, *, partition: int | None = None
    ) -> ProduceResult:
        config = self._topic(topic).config
        stamp = now_ms()
        table = to_table(records, stamp, templates=True)
        n = len(table)
        if n == 0:
            return ProduceResult(pa.array([], pa.int32()), pa.array([], pa.int64()))
        if config.cleanup_policy.compacts and table.column("key").null_count:
            first = int(np.flatnonzero(np.asarray(table.column("key").is_null()))[0])
            raise InvalidRecord(
                f"topic {topic!r} is compacted (cleanup={config.cleanup_policy.value}) and "
                f"keeps the latest record per key; record {first} has no key"
            )
        sticky = next(self._sticky) % config.partitions
        slices = assign_partitions(table, config.partitions, partition, sticky)
        partitions = np.empty(n, dtype=np.int32)
        offsets = np.empty(n, dtype=np.int64)
        for part in slices:
            batches = stored_batches(part.rows, config.max_message_bytes)
            plog = self._log(topic, part.partition)
            bases = plog.append(batches, config, stamp)
            partitions[part.positions] = part.partition
            offsets[part.positions] = bases[0] + np.arange(len(part.rows), dtype=np.int64)
        return ProduceResult(pa.array(partitions), pa.array(offsets))

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
        timeout: float = 0.0,
    ) -> FetchedBatch:
        self._topic(topic)
        plog = self._log(topic, partition)
        deadline = time.monotonic() + timeout
        while True:
            batches, next_offset = plog.read(offset, max_records, max_bytes)
            remaining = deadline - time.monotonic()
            if batches or next_offset != offset or remaining <= 0:
                return FetchedBatch(topic, partition, next_offset=next_offset, batches=batches)
            waiter = self._shared_waiter()
            waiter.watch(plog.hw_path)
            if plog.end_offset() == offset:
                waiter.wait(remaining)

    def _shared_waiter(self) -> Waiter:
        with self._lock:
            if self._waiter is None:
                self._waiter = Waiter()
            return self._waiter

    def start_offsets(self, topic: str) -> dict[int, int]:
        partitions = self._topic(topic).config.partitions
        return {p: self._log(topic, p).start_offset() for p in range(partitions)}

    def end_offsets(self, topic: str) -> dict[int, int]:
        partitions = self._topic(topic).config.partitions
        return {p: self._log(topic, p).end_offset() for p in range(partitions)}

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int | None]:
        partitions = self._topic(topic).config.partitions
        return {p: self._log(topic, p).offset_for_time(timestamp_ms) for p in range(partitions)}

    def partition_log(self, topic: str, partition: int) -> PartitionLog:
        """The partition's log (for maintenance tools and tests)."""
        return self._log(topic, partition)

    def maintain(self, now: int | None = None) -> MaintenanceReport:
        """Apply retention and compaction to every topic (Kafka's log cleaner, on demand)."""
        stamp = now_ms() if now is None else now
        deleted = compacted = removed = 0
        for name in self.list_topics():
            try:
                config = self._topic(name).config
            except TopicNotFound:
                continue
            for partition in range(config.partitions):
                plog = self._log(name, partition)
                result: CompactionResult = plog.compact(config, stamp)
                compacted += result.segments_rewritten
                removed += result.records_removed
                deleted += len(plog.enforce_retention(config, stamp))
        return MaintenanceReport(deleted, compacted, removed)

    # -- consumer groups --------------------------------------------------------------

    def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        return {t: self._topic(t).config.partitions for t in topics}

    def consumer(
        self,
        group: str,
        topics: Iterable[str],
        *,
        auto_offset_reset: AutoOffsetReset = "earliest",
        client: str = "",
        session_timeout_ms: int = 10_000,
    ) -> Consumer:
        from trunkline.hub._consumer import EmbeddedConsumer

        return EmbeddedConsumer(
            self,
            group,
            list(topics),
            auto_offset_reset=auto_offset_reset,
            client=client,
            session_timeout_ms=session_timeout_ms,
        )

    def list_groups(self) -> list[str]:
        return self.groups.list_groups()

    def describe_group(self, group: str) -> GroupDescription:
        described = self.groups.describe(group)
        committed = self.groups.committed(group)
        topics = sorted({tp.topic for tp in committed} | _assigned_topics(described))
        offsets = []
        for topic in topics:
            try:
                ends = self.end_offsets(topic)
            except TopicNotFound:
                continue
            for partition, end in ends.items():
                done = committed.get(TopicPartition(topic, partition))
                offsets.append(PartitionOffsets(topic, partition, done, end))
        return GroupDescription(described.group, described.state, described.members, tuple(offsets))

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return {tp.partition: o for tp, o in self.groups.committed(group, topic).items()}

    def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        counts = self.partition_counts({tp.topic for tp in offsets})
        self.groups.commit(group, offsets, partition_counts=counts)

    def reset_group(
        self, group: str, topic: str, to: ResetTarget, *, by_time: bool = False
    ) -> dict[int, int]:
        starts, ends = self.start_offsets(topic), self.end_offsets(topic)
        if by_time:
            if not isinstance(to, int):
                raise ConfigError(f"a reset by time needs a timestamp in ms, found {to!r}")
            found = self.offsets_for_time(topic, to)
            targets = {p: ends[p] if o is None else o for p, o in found.items()}
        elif to == "earliest":
            targets = starts
        elif to == "latest":
            targets = ends
        elif isinstance(to, int) and not isinstance(to, bool):
            targets = {p: min(max(to, starts[p]), ends[p]) for p in starts}
        else:
            raise ConfigError(
                f"expected 'earliest', 'latest' or an offset to reset to, found {to!r}"
            )
        self.groups.reset(
            group,
            {TopicPartition(topic, p): o for p, o in targets.items()},
        )
        return targets

    def delete_group(self, group: str) -> None:
        self.groups.delete_group(group)


def _assigned_topics(described: GroupDescription) -> set[str]:
    return {tp.topic for member in described.members for tp in member.assignment}


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    fd = os.open(directory / ".alter.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
