"""Values that cross the Hub protocol: records, topic configs, descriptions, Arrow schemas."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NewType, TypeVar

import pyarrow as pa

from trunkline.errors import ConfigError, InvalidRecord

Offset = NewType("Offset", int)

DAY_MS = 24 * 3600 * 1000
GIB = 1024**3

#: One header: Kafka allows repeated keys and null values, and keeps their order.
HEADER_TYPE = pa.list_(
    pa.field(
        "item", pa.struct([pa.field("key", pa.string(), nullable=False), ("value", pa.binary())])
    )
)
TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")

#: What a fetch returns: one row per record of one partition, in offset order.
FETCH_SCHEMA = pa.schema(
    [
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", HEADER_TYPE),
    ]
)

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def check_topic_name(name: str) -> str:
    """Return ``name`` if Kafka would accept it as a topic name, else raise ConfigError.

    Both backends use Kafka's rule so that a project can move from one to the other.
    """
    if not isinstance(name, str) or not _TOPIC_NAME.match(name) or name in {".", ".."}:
        raise ConfigError(
            f"invalid topic name {name!r}: expected 1-249 characters of letters, digits, "
            "'.', '_' and '-' (Kafka's rule), and not '.' or '..'"
        )
    return name


class CleanupPolicy(enum.StrEnum):
    """What happens to old records: deleted by retention, compacted by key, or both."""

    DELETE = "delete"
    COMPACT = "compact"
    COMPACT_DELETE = "compact,delete"

    @property
    def deletes(self) -> bool:
        return self in (CleanupPolicy.DELETE, CleanupPolicy.COMPACT_DELETE)

    @property
    def compacts(self) -> bool:
        return self in (CleanupPolicy.COMPACT, CleanupPolicy.COMPACT_DELETE)


class Compression(enum.StrEnum):
    """Compression of record batches on disk (Arrow IPC buffer compression)."""

    NONE = "none"
    LZ4 = "lz4"
    ZSTD = "zstd"


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """A topic's settings, with Kafka's defaults and meaning.

    Times are milliseconds, sizes bytes; ``None`` means unlimited (Kafka's -1).

    Example:
        >>> TopicConfig(partitions=3, retention_ms=None).cleanup_policy
        <CleanupPolicy.DELETE: 'delete'>
    """

    partitions: int = 1
    retention_ms: int | None = 7 * DAY_MS
    retention_bytes: int | None = None
    cleanup_policy: CleanupPolicy = CleanupPolicy.DELETE
    segment_bytes: int = GIB
    segment_ms: int = 7 * DAY_MS
    delete_retention_ms: int = DAY_MS
    min_compaction_lag_ms: int = 0
    max_message_bytes: int = 64 * 1024 * 1024
    compression: Compression = Compression.NONE

    def __post_init__(self) -> None:
        problems = []
        if self.partitions < 1:
            problems.append(f"partitions must be >= 1, found {self.partitions}")
        for name in ("retention_ms", "retention_bytes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name} must be >= 0 or unlimited, found {value}")
        for name in ("segment_ms", "delete_retention_ms", "min_compaction_lag_ms"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, found {getattr(self, name)}")
        if self.segment_bytes < 1024:
            problems.append(f"segment_bytes must be >= 1024, found {self.segment_bytes}")
        if self.max_message_bytes < 1:
            problems.append(f"max_message_bytes must be >= 1, found {self.max_message_bytes}")
        if problems:
            raise ConfigError("invalid topic config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (enums as their strings)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown topic config key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "cleanup_policy" in values:
            values["cleanup_policy"] = _enum_value(CleanupPolicy, values["cleanup_policy"])
        if "compression" in values:
            values["compression"] = _enum_value(Compression, values["compression"])
        return cls(**values)

    def with_changes(self, changes: Mapping[str, Any]) -> TopicConfig:
        """A copy with ``changes`` applied (same keys and checks as :meth:`from_dict`)."""
        merged = self.to_dict()
        merged.update(changes)
        return TopicConfig.from_dict(merged)


E = TypeVar("E", bound=enum.Enum)


def _enum_value(kind: type[E], value: Any) -> E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in kind)
        raise ConfigError(f"expected one of {choices}, found {value!r}") from None


@dataclass(frozen=True, slots=True)
class Record:
    """A record to produce. ``value=None`` is a tombstone; ``timestamp=None`` means now.

    ``partition`` pins the record to a partition; otherwise keyed records go to
    ``murmur2(key) % partitions`` (Kafka's Java client) and keyless ones spread.
    """

    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int | None = None
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A record as read back from a topic."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class FetchedBatch:
    """Records of one partition, in offset order, as an Arrow table in :data:`FETCH_SCHEMA`.

    The table's chunks are the stored record batches, read without copying.
    ``next_offset`` is where the next fetch continues; it can be past the last record when
    compaction removed the records after it.

    A hub may hand over its stored batches as they are (``batches``): their ``value`` column
    is binary, or a template (:mod:`trunkline.hub._template`) whose bytes :attr:`records`
    renders the first time it is read. Readers that understand templates look at
    :attr:`batches` and never pay for the bytes.
    """

    __slots__ = ("_batches", "_records", "next_offset", "partition", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        records: pa.Table | None = None,
        next_offset: int = 0,
        *,
        batches: Sequence[pa.RecordBatch] | None = None,
    ) -> None:
        if (records is None) == (batches is None):
            raise ValueError("a FetchedBatch is made from records or from batches, not both")
        self.topic = topic
        self.partition = partition
        self.next_offset = next_offset
        self._records = records
        self._batches = tuple(batches) if batches is not None else None

    def __repr__(self) -> str:
        return (
            f"FetchedBatch(topic={self.topic!r}, partition={self.partition}, "
            f"records={len(self)}, next_offset={self.next_offset})"
        )

    @property
    def records(self) -> pa.Table:
        """The records with their values as bytes (rendered from templates once)."""
        if self._records is None:
            from trunkline.hub._template import is_template, render

            assert self._batches is not None
            rendered = []
            for batch in self._batches:
                value = batch.column(3)
                if is_template(value.type):
                    columns = batch.columns
                    batch = pa.RecordBatch.from_arrays(
                        [*columns[:3], render(value), *columns[4:]], schema=FETCH_SCHEMA
                    )
                rendered.append(batch)
            self._records = pa.Table.from_batches(rendered, FETCH_SCHEMA)
        return self._records

    @property
    def batches(self) -> tuple[pa.RecordBatch, ...]:
        """The records as the hub read them: batches in :data:`FETCH_SCHEMA` except that a
        ``value`` column may be a template (not rendered)."""
        if self._batches is None:
            return tuple(self.records.to_batches())
        return self._batches

    @property
    def templated(self) -> bool:
        """Whether any value of the batch is held as a template (not rendered yet)."""
        from trunkline.hub._template import is_template

        return self._records is None and any(
            is_template(b.schema.field(3).type) for b in self.batches
        )

    @property
    def nbytes(self) -> int:
        """Bytes the batch holds in memory (templates counted as they are)."""
        if self._records is None:
            return sum(int(b.nbytes) for b in self.batches)
        return int(self._records.nbytes)

    @property
    def first_offset(self) -> int | None:
        """The offset of the first record (None when there is none)."""
        for batch in self.batches:
            if batch.num_rows:
                return int(batch.column(0)[0].as_py())
        return None

    def __len__(self) -> int:
        if self._records is None:
            assert self._batches is not None
            return sum(b.num_rows for b in self._batches)
        return int(self._records.num_rows)

    def messages(self) -> Iterator[Message]:
        """The records as Python objects (convenient; the Arrow form is the fast path)."""
        cols = self.records.to_pydict()
        stamps = self.records.column("timestamp").cast(pa.int64()).to_pylist()
        for i, offset in enumerate(cols["offset"]):
            headers = cols["headers"][i] or ()
            yield Message(
                topic=self.topic,
                partition=self.partition,
                offset=offset,
                timestamp=stamps[i],
                key=cols["key"][i],
                value=cols["value"][i],
                headers=tuple((h["key"], h["value"]) for h in headers),
            )


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition: the first offset it still holds and the offset the next record gets."""

    partition: int
    start_offset: int
    end_offset: int
    size_bytes: int | None = None
    segments: int | None = None


@dataclass(frozen=True, slots=True)
class TopicDescription:
    name: str
    config: TopicConfig
    partitions: tuple[PartitionInfo, ...]

    @property
    def records(self) -> int:
        """Offsets spanned (start to end) over all partitions; compaction may have removed some."""
        return sum(p.end_offset - p.start_offset for p in self.partitions)


@dataclass(frozen=True, slots=True)
class ProduceResult:
    """Where each produced record went, in input order."""

    partitions: pa.Int32Array
    offsets: pa.Int64Array

    def __len__(self) -> int:
        return len(self.offsets)

    def as_pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.partitions.to_pylist(), self.offsets.to_pylist(), strict=True))


@dataclass(frozen=True, slots=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str
    client: str
    assignment: tuple[TopicPartition, ...]
    last_heartbeat_ms: int


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """A group's position in one partition; ``committed`` is None when nothing is committed."""

    topic: str
    partition: int
    committed: int | None
    end_offset: int

    @property
    def lag(self) -> int:
        """Records not yet committed (all of the partition when nothing is committed)."""
        return max(0, self.end_offset - (self.committed or 0))


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group: str
    state: str
    members: tuple[MemberDescription, ...]
    offsets: tuple[PartitionOffsets, ...] = field(default=())

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.offsets)


def check_record_value(value: Any, where: str) -> bytes | None:
    """Accept bytes-like or str (UTF-8) or None; anything else is an InvalidRecord."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InvalidRecord(f"{where}: expected bytes, str or None, found {type(value).__name__}")
