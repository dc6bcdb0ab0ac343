"""The two connector seams: :class:`Source` (writes into the hub) and :class:`Sink` (reads from it).

A connector is a class registered under a name in :data:`trunkline.connectors.SOURCES` or
:data:`~trunkline.connectors.SINKS`. It declares its settings as a nested ``Config`` model
(extending :class:`SourceSettings` or :class:`SinkSettings`, so strict and documented), its
:class:`Capabilities` as data, and the lifecycle methods below. The runtime does everything
around them: topics, batching, retries, backpressure, checkpoints, dead letters, restarts.

Connectors see the rest of trunkline only through the :class:`ConnectorContext` they get in
``open``: the hub, the catalog, a checkpoint store, a dead-letter writer, a logger and
metrics. Data crosses the seams as Arrow: a source returns Arrow tables of records, a sink
receives :class:`~trunkline.hub.FetchedBatch` tables.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, TypeAlias

import pyarrow as pa
from pydantic import AfterValidator, Field, ValidationError
from pydantic_core import InitErrorDetails

from trunkline.config import ConfigModel, Duration, Size
from trunkline.config._problems import invalid
from trunkline.connectors.transforms import SinkStep, SourceStep
from trunkline.errors import ConfigError
from trunkline.hub import Compression, FetchedBatch, Hub, TopicPartition, _template
from trunkline.hub._types import check_topic_name

if TYPE_CHECKING:
    from trunkline.meta import DatasetLike, MetaStore

__all__ = [
    "Capabilities",
    "CheckpointStore",
    "ConnectorContext",
    "DeadLetter",
    "DeadLetterSink",
    "Delivery",
    "JSONValue",
    "LineageDataset",
    "Metrics",
    "Offsets",
    "Sink",
    "SinkSettings",
    "Source",
    "SourceBatch",
    "SourceSettings",
    "dead_letter_topic",
    "retry_topic",
    "settings_error",
]

#: What checkpoints hold: plain JSON (``json.dumps`` must accept it).
JSONValue: TypeAlias = Any
#: The next offset to read per partition, as sinks report what is durable in their target.
Offsets: TypeAlias = Mapping[TopicPartition, int]


def dead_letter_topic(connector: str) -> str:
    """The dead-letter topic of a connector: ``<name>.dlq``."""
    return f"{connector}.dlq"


def retry_topic(sink: str) -> str:
    """The topic ``trunkline dlq replay`` feeds a sink's dead letters back through."""
    return f"{sink}.retry"


# Settings ------------------------------------------------------------------------------


def _check_topic(name: str) -> str:
    try:
        return check_topic_name(name)
    except ConfigError:
        raise invalid("a topic name of 1-249 letters, digits, '.', '_' or '-'") from None


TopicName = Annotated[str, AfterValidator(_check_topic)]


class SourceSettings(ConfigModel):
    """Settings every source has; a source's ``Config`` extends this model."""

    checkpoint_interval: Duration = Field(
        1000,
        description="How often the source's position is saved. After a crash, at most this "
        "much work is read again; records it had written already are recognised and not "
        "written twice.",
    )
    retry_backoff: Duration = Field(
        500,
        description="After a failure the source restarts from its last checkpoint after this "
        "wait, doubled (with jitter) for each failure in a row.",
    )
    retry_max_backoff: Duration = Field(30_000, description="The longest wait between retries.")
    topic_compression: Compression = Field(
        Compression.LZ4,
        description="Compression of the topics this source creates, unless trunkline.yaml "
        "declares them (then their declared settings hold): 'none', 'lz4' or 'zstd'. JSON "
        "values compress well: Debezium events of a typical table to about a quarter with lz4, "
        "which saves disk space and, on the hub's write path, more time than it costs.",
    )
    transforms: tuple[SourceStep, ...] = Field(
        (),
        description="Stateless steps applied to every batch before it is written to the hub, "
        "in order: filter, select, rename, cast, hash, mask, route (see "
        "trunkline.connectors.transforms).",
    )


class SinkSettings(ConfigModel):
    """Settings every sink has; a sink's ``Config`` extends this model."""

    topics: Annotated[tuple[TopicName, ...], Field(min_length=1)] = Field(
        description="The topics this sink copies, read through the consumer group 'sink-<name>'."
    )
    batch_records: int = Field(
        100_000,
        ge=1,
        description="Write to the target once this many records are buffered...",
    )
    batch_bytes: Size = Field(
        16 * 1024 * 1024,
        description="...or once this many bytes of records are buffered...",
    )
    linger: Duration = Field(
        1000,
        description="...or once the oldest buffered record has waited this long.",
    )
    session_timeout: Duration = Field(
        10_000,
        description="Sinks that several processes share (through the group 'sink-<name>'): "
        "how long a process may be silent before its partitions move to the others.",
    )
    retry_backoff: Duration = Field(
        500,
        description="After a failure the sink restarts from its last checkpoint after this "
        "wait, doubled (with jitter) for each failure in a row.",
    )
    retry_max_backoff: Duration = Field(30_000, description="The longest wait between retries.")
    transforms: tuple[SinkStep, ...] = Field(
        (),
        description="Stateless steps applied to every batch before the sink writes it, in "
        "order: filter, select, rename, cast, hash, mask (see trunkline.connectors.transforms).",
    )


# What connectors are given -----------------------------------------------------------


class CheckpointStore(Protocol):
    """Durable, named JSON documents (the runtime keeps one per connector)."""

    def load(self, name: str) -> JSONValue | None:
        """The last document saved under ``name``, or None."""
        ...

    def save(self, name: str, state: JSONValue) -> int:
        """Replace the document under ``name``, durably; returns its size in bytes."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be processed, with its original bytes and why.

    ``origin`` says where it came from in a form people read: ``data/orders-1.csv:17`` or
    ``orders/2@1234`` (topic/partition@offset). ``details`` become ``trunkline.<name>``
    headers (file, line, topic, partition, offset...).
    """

    value: bytes | None
    error: str
    stage: Literal["source", "sink", "transform"]
    origin: str
    key: bytes | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    headers: tuple[tuple[str, bytes | None], ...] = ()


class DeadLetterSink(Protocol):
    """Where a connector puts records it cannot process: its dead-letter topic."""

    topic: str

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Write ``letters`` durably to the dead-letter topic before returning."""
        ...

    def write_records(
        self,
        batch: FetchedBatch,
        rows: Sequence[int],
        errors: Sequence[str],
        *,
        topic: str,
        stage: Literal["sink", "transform"] = "sink",
    ) -> None:
        """Dead-letter rows of a fetched batch, keeping key, value and headers as they were.

        ``topic`` is the logical topic (the one the records belong to, which differs from
        ``batch.topic`` when they come from the sink's retry topic).
        """
        ...


class Metrics(Protocol):
    """Counters and gauges a connector adds to its task's figures (``trunkline status``)."""

    def count(self, name: str, value: float = 1) -> None:
        """Add ``value`` to the counter ``name``."""
        ...

    def gauge(self, name: str, value: float) -> None:
        """Set the gauge ``name``."""
        ...


@dataclass(frozen=True)
class ConnectorContext:
    """What a connector gets in ``open``: everything outside itself that it may use.

    Relative paths in a connector's settings start at ``root``, the project directory.
    """

    name: str
    kind: Literal["source", "sink"]
    root: Path
    hub: Hub
    meta: MetaStore | None
    checkpoints: CheckpointStore
    dead_letters: DeadLetterSink
    log: logging.Logger
    metrics: Metrics
    run_id: str = "manual"

    def path(self, value: Path | str) -> Path:
        """``value`` made absolute against the project directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    def register_system(self, kind: str, location: str) -> None:
        """Register this connector's target or origin as a catalog system named like it."""
        if self.meta is not None:
            self.meta.upsert_system(self.name, kind, location)

    def register_dataset(self, name: str, kind: str, **fields: Any) -> None:
        """Register a dataset of this connector's system (see ``MetaStore.upsert_dataset``)."""
        if self.meta is not None:
            self.meta.upsert_dataset(self.name, name, kind, **fields)

    def record_lineage(self, source: DatasetLike, target: DatasetLike) -> None:
        """Note that this connector moves data from ``source`` to ``target`` (this run)."""
        if self.meta is not None:
            self.meta.record_lineage(
                source, target, job=self.name, job_kind=self.kind, run_id=self.run_id
            )


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a connector can do, as data the runtime reads (never its name).

    Attributes:
        exclusive: Only one process may run it at a time (a CDC slot, a DuckDB file, a
            folder of files). The runtime takes a lease; other processes wait as standbys
            and take over when the owner dies.
        exactly_once: Sinks: the target stores the offsets it has applied in the same
            transaction as the data, and :meth:`Sink.assign` returns them; restarts never
            apply a record twice. Sources: :attr:`SourceBatch.ids` are stable, so the
            runtime never writes a record twice to the hub after a crash.
        upsert: Sinks: records with the same key replace each other, and deletes delete, so
            replays are harmless even without ``exactly_once`` (effectively-once).
    """

    exclusive: bool = False
    exactly_once: bool = False
    upsert: bool = False


@dataclass(frozen=True, slots=True)
class LineageDataset:
    """A dataset outside the hub that a connector reads into a topic, or writes a topic to.

    ``name`` is the dataset's name in the connector's own catalog system (the one it
    registers in ``open``, named like the connector): ``public.orders`` of a PostgreSQL
    database, ``main.orders`` of a DuckDB file, ``orders-*.csv`` of a folder.
    """

    topic: str
    name: str
    kind: Literal["table", "fileset", "endpoint"] = "table"


# Sources -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of a :class:`SourceBatch`, as the runtime reports it to ``on_delivery``.

    Attributes:
        written: Records now durable in the hub.
        dead_lettered: Records sent to a dead-letter topic instead (a topic's contract with
            policy ``dead_letter``, or a transform).
        filtered: Records a transform's ``filter`` dropped.
        error: Why the batch was refused, if it was: an
            :class:`~trunkline.errors.InvalidRecord` (such as a
            :class:`~trunkline.errors.ContractViolation`) means nothing of it was written and
            the source goes on; any other error also stops this life of the source.
    """

    written: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Records for one topic, as a source returns them from :meth:`Source.poll`.

    Attributes:
        topic: Where the records go.
        records: An Arrow table the hub can produce: a ``value`` column (bytes, None for a
            tombstone; or a template, :mod:`trunkline.hub._template`, that renders to them)
            and optionally ``key``, ``timestamp`` (ms or timestamp) and ``headers``. May be
            empty when a batch holds only dead letters.
        position: Where this batch ends, as the source describes it to people (shown by
            ``trunkline status``, e.g. ``{"file": "orders-3.csv", "line": 12000}``). The
            resume state itself is what :meth:`Source.snapshot` returns.
        ids: Optional, one per record: an identity that is the same each time the source
            reads the same record from the same earlier position (``file:row``). With ids,
            records written before a crash but after the last checkpoint are recognised on
            replay and not written again.
        dead_letters: Input that could not be read (bad lines...), for the dead-letter
            topic; ``dead_letter_ids`` work like ``ids`` for them.
        on_delivery: Called by the runtime, from its thread, once the batch is durable in
            the hub or was refused (see :class:`Delivery`): a source that answers a client
            (``http``) answers there. With it, a refused batch is reported to it instead of
            failing the source.
    """

    topic: str
    records: pa.Table
    position: JSONValue = None
    ids: pa.Array | None = None
    dead_letters: tuple[DeadLetter, ...] = ()
    dead_letter_ids: tuple[str, ...] = ()
    on_delivery: Callable[[Delivery], None] | None = None

    def values(self) -> pa.Array:
        """The values as bytes (a template rendered), one binary array."""
        column = self.records.column("value")
        if _template.is_template(column.type):
            return _template.render(column)
        return column.combine_chunks().cast(pa.binary())


class Source(ABC):
    """A connector that reads a system and writes records into the hub.

    Lifecycle (the runtime calls these in this order, from one thread):

    1. ``Source(name, config)``: cheap, no I/O; ``config`` is a validated ``Config``.
    2. :meth:`topics`: the topics it may write, created by the runtime when missing.
    3. :meth:`open` with the context and the last checkpointed ``state`` (None on the first
       run): connect, validate, register its catalog system and datasets; then the
       runtime records the edges :meth:`lineage` names. Everything it needs to continue
       must be derivable from ``state``.
    4. :meth:`poll` in a loop. The runtime applies the ``transforms`` of the settings,
       writes each returned batch to the hub and waits until it is durable before polling
       again; then it calls the batch's ``on_delivery``, if any.
    5. :meth:`snapshot` every ``checkpoint_interval`` and before closing, only after every
       batch polled so far is durable; its value is saved and given back to ``open`` after a
       restart. It must be JSON and should stay small (kilobytes).
    6. :meth:`close`: release everything; safe to call twice, and after a failed ``open``.

    Errors: raise :class:`~trunkline.errors.ConnectorError`. For retryable errors (and
    unexpected exceptions) the runtime closes the source and opens it again from its last
    checkpoint after an exponential backoff with jitter; a non-retryable error stops it and
    ``trunkline status`` shows why. Bad input is not an error: return it as
    :attr:`SourceBatch.dead_letters`.
    """

    Config: ClassVar[type[SourceSettings]] = SourceSettings
    capabilities: ClassVar[Capabilities] = Capabilities(exclusive=True)

    def __init__(self, name: str, config: SourceSettings) -> None:
        self.name = name
        self.config = config

    @abstractmethod
    def topics(self) -> tuple[str, ...]:
        """The topics this source writes to."""

    @abstractmethod
    def open(self, context: ConnectorContext, state: JSONValue | None) -> None:
        """Connect and resume after ``state`` (the last saved :meth:`snapshot`)."""

    @abstractmethod
    def poll(self, timeout: float) -> SourceBatch | None:
        """The next batch, or None if nothing arrived within ``timeout`` seconds."""

    @abstractmethod
    def snapshot(self) -> JSONValue:
        """The resume state after every batch returned so far (JSON)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files; idempotent."""

    def backlog(self) -> float | None:
        """Work not yet read (records, bytes or files, as :meth:`backlog_unit` says), if known.

        ``trunkline status`` uses it to tell lag at the source from lag in the hub.
        """
        return None

    backlog_unit: ClassVar[str] = "records"

    def lineage(self) -> tuple[LineageDataset, ...]:
        """The datasets this source reads, each with the topic it feeds (default: none).

        Called by the runtime after :meth:`open`, which registers the connector's system;
        the runtime registers the datasets and records the edges dataset -> topic.
        """
        return ()


# Sinks ---------------------------------------------------------------------------------


class Sink(ABC):
    """A connector that copies records of hub topics into another system.

    Lifecycle (the runtime calls these in this order, from one thread):

    1. ``Sink(name, config)``: cheap, no I/O.
    2. :meth:`topics`: the topics to read (the runtime subscribes the consumer group
       ``sink-<name>`` to them, and to the sink's retry topic).
    3. :meth:`open` with the context: connect, create what is missing, register its catalog
       system and datasets; then the runtime records the edges :meth:`lineage` names.
    4. :meth:`assign` whenever the group gives this process partitions; an exactly-once sink
       returns the offsets its target has applied, and reading resumes there.
    5. :meth:`write_batch` with the records of one partition, in offset order, as often as
       the runtime's batching decides (after the ``transforms`` of the settings: records a
       ``filter`` dropped are missing, but ``next_offset`` still covers them); the sink may
       buffer or stage them.
    6. :meth:`snapshot` after one or more ``write_batch`` calls: make the written records
       durable in the target and return, per partition, the next offset that is durable
       there. Only those offsets are committed to the hub (write, then commit:
       at-least-once); an exactly-once sink stores them in the target in the same
       transaction. Partitions without progress may be left out.
    7. :meth:`revoke` when partitions move to another process: drop work not yet durable.
    8. :meth:`drain` when the process stops, then a last ``write_batch``/``snapshot``.
    9. :meth:`close`: release everything, dropping anything not snapshotted; idempotent.

    The state of a sink is derivable from its offsets: after a crash the runtime calls
    ``open`` and ``assign`` again and replays from the offsets ``snapshot`` (or the target)
    reported; records after them are written again, so a sink without ``exactly_once``
    must tolerate repeats (an upsert sink does).

    Errors: raise :class:`~trunkline.errors.Backpressure` when the target cannot take more
    now; nothing of that batch may have been written, and what earlier calls wrote must
    stay. The runtime then drops what it buffered, pauses the sink's partitions and offers
    the batch again after ``retry_after``. Any other error makes the runtime close the sink
    and, for retryable errors (and unexpected exceptions), open it again from its last
    snapshot after an exponential backoff with jitter; non-retryable ones
    (:class:`~trunkline.errors.IncompatibleChange`, ``ConnectorError(retryable=False)``)
    stop the sink, and ``trunkline status`` shows why. Bad records are not errors: give
    them to ``context.dead_letters`` and carry on.
    """

    Config: ClassVar[type[SinkSettings]] = SinkSettings
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, name: str, config: SinkSettings) -> None:
        self.name = name
        self.config = config

    def topics(self) -> tuple[str, ...]:
        """The topics this sink reads (``topics:`` in its settings)."""
        return tuple(self.config.topics)

    @abstractmethod
    def open(self, context: ConnectorContext) -> None:
        """Connect to the target and prepare it."""

    def assign(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """Partitions gained; returns the offsets to resume from that the target keeps."""
        return {}

    @abstractmethod
    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        """Write (or stage) the records of ``batch``, which belong to ``topic``.

        ``topic`` is the logical topic: it equals ``batch.topic`` except for records
        replayed through the retry topic. Offsets are those of ``batch``.
        """

    @abstractmethod
    def snapshot(self) -> dict[TopicPartition, int]:
        """Make what was written durable; the next offset per partition that now is."""

    def durable(self) -> dict[TopicPartition, int] | None:
        """What is durable already, without waiting for work in progress: the next offset per
        partition whose records are (each reported once), or None when only
        :meth:`snapshot` can tell (the default).

        A sink that applies batches in the background implements it: the runtime then
        fetches and prepares the next batch while the last one is applied, and commits
        offsets as they become durable, calling :meth:`snapshot` only where it must wait
        (partitions moving, backpressure, stopping).
        """
        return None

    def revoke(self, partitions: Collection[TopicPartition]) -> None:  # noqa: B027
        """Partitions lost to another process: forget work on them that is not durable."""

    def drain(self) -> None:  # noqa: B027
        """The process is stopping: finish pending work, so that the next :meth:`snapshot`
        covers every record written (a file sink closes its open files)."""

    @abstractmethod
    def close(self) -> None:
        """Release the target; idempotent; work not snapshotted is dropped."""

    def lineage(self) -> tuple[LineageDataset, ...]:
        """The datasets this sink writes, each with the topic it copies (default: none).

        Called by the runtime after :meth:`open`, which registers the connector's system;
        the runtime registers the datasets and records the edges topic -> dataset.
        """
        return ()


def settings_error(
    model: type[ConfigModel], key: str, value: Any, message: str, hint: str = ""
) -> ValidationError:
    """An error about ``key`` of a connector's settings, for a ``model_validator``.

    Raise it from an ``after`` validator for combinations of settings that cannot work
    (``mode: upsert`` without ``key``); the project-file loader places it at ``key``.
    """
    detail: InitErrorDetails = {
        "type": invalid(message=message, hint=hint or None),
        "loc": (key,),
        "input": value,
    }
    return ValidationError.from_exception_data(model.__name__, [detail])
