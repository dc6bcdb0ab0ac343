"""The Hub protocol: what every hub backend (embedded log, Apache Kafka) implements.

The semantics are Kafka's, so that a project can move from the embedded hub to a Kafka
cluster by changing one line of its project file:

* A topic has N partitions; offsets are dense and monotonic per partition.
* A record is key (bytes or None), value (bytes or None = tombstone), headers (ordered
  ``(str, bytes | None)`` pairs, repeats allowed) and a timestamp in milliseconds.
* Keyed records go to ``toPositive(murmur2(key)) % partitions`` like Kafka's Java client;
  keyless records stick to one partition per produced batch and rotate between batches.
* :meth:`Hub.produce` returns only once the records are durable at the hub's ack level.
* Consumer groups keep committed offsets per (group, topic, partition) and split a topic's
  partitions between the group's live members; a partition has at most one owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import pyarrow as pa

from trunkline.hub._types import (
    FetchedBatch,
    GroupDescription,
    ProduceResult,
    Record,
    TopicConfig,
    TopicDescription,
    TopicPartition,
)

#: What :meth:`Hub.produce` accepts: Python records, or Arrow data with a ``value`` column and
#: optional ``key``, ``timestamp``, ``headers`` and ``partition`` columns.
Producible: TypeAlias = Sequence[Record] | pa.RecordBatch | pa.Table

#: Where a reset moves a group: the first or next offset, an explicit offset, or a time.
ResetTarget: TypeAlias = Literal["earliest", "latest"] | int

AutoOffsetReset: TypeAlias = Literal["earliest", "latest", "error"]


@runtime_checkable
class Consumer(Protocol):
    """A member of a consumer group.

    Lifecycle: created by :meth:`Hub.consumer` (joins the group), then :meth:`poll` in a
    loop, :meth:`commit` after processing (at-least-once), :meth:`close` to leave (its
    partitions move to the remaining members at once). A consumer is used from one thread.
    """

    group: str

    def poll(self, timeout: float = 1.0, max_records: int = 10_000) -> list[FetchedBatch]:
        """Return records from assigned partitions, waiting up to ``timeout`` seconds for some.

        Also heartbeats and takes part in rebalances. Positions advance past what is returned.
        """
        ...

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit the next offsets to read (default: the positions after the last poll).

        Raises:
            NotAssigned: a partition was revoked by a rebalance; its offset is not committed.
        """
        ...

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns now."""
        ...

    def position(self, tp: TopicPartition) -> int:
        """The offset the next poll reads from ``tp``."""
        ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` at the next poll."""
        ...

    def close(self) -> None:
        """Leave the group (without committing; commit first for at-least-once)."""
        ...

    def __enter__(self) -> Consumer: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Hub(Protocol):
    """A log hub: topics of partitioned, durable, offset-addressed records."""

    #: Backend name as written in trunkline.yaml (``embedded`` or ``kafka``).
    backend: str

    # Topics -------------------------------------------------------------------------

    def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicDescription:
        """Create a topic. Raises TopicExists if it exists, ConfigError for a bad name/config."""
        ...

    def delete_topic(self, name: str) -> None:
        """Delete a topic and all its records. Raises TopicNotFound."""
        ...

    def list_topics(self) -> list[str]:
        """User topics, sorted by name."""
        ...

    def describe_topic(self, name: str) -> TopicDescription:
        """Config and per-partition start/end offsets. Raises TopicNotFound."""
        ...

    def alter_topic(self, name: str, changes: Mapping[str, Any]) -> TopicDescription:
        """Change config keys of :class:`TopicConfig`; ``partitions`` may only grow."""
        ...

    # Records ------------------------------------------------------------------------

    def produce(
        self, topic: str, records: Producible, *, partition: int | None = None
    ) -> ProduceResult:
        """Append records; returns each record's partition and offset once durable.

        ``partition`` sends the whole batch to one partition. A batch is all-or-nothing per
        partition: on error nothing of that partition's part was acknowledged.
        """
        ...

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
        """Read records from ``offset`` on (at least one batch if any, up to the limits).

        Waits up to ``timeout`` seconds when ``offset`` is the end of the partition.
        Raises OffsetOutOfRange below the log start or beyond the log end.
        """
        ...

    def start_offsets(self, topic: str) -> dict[int, int]:
        """First offset each partition still holds."""
        ...

    def end_offsets(self, topic: str) -> dict[int, int]:
        """The offset the next record of each partition will get."""
        ...

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int | None]:
        """Per partition, the first offset whose timestamp is >= ``timestamp_ms`` (None: none)."""
        ...

    # Consumer groups ----------------------------------------------------------------

    def consumer(
        self,
        group: str,
        topics: Iterable[str],
        *,
        auto_offset_reset: AutoOffsetReset = "earliest",
        client: str = "",
    ) -> Consumer:
        """Join ``group`` subscribed to ``topics``."""
        ...

    def list_groups(self) -> list[str]:
        """Groups with committed offsets or live members, sorted."""
        ...

    def describe_group(self, group: str) -> GroupDescription:
        """Members, their assignments, committed offsets and lag."""
        ...

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """Committed offsets of ``group`` in ``topic`` (partitions without a commit are absent)."""
        ...

    def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Set a group's committed offsets directly (an admin operation, like Kafka's)."""
        ...

    def reset_group(
        self, group: str, topic: str, to: ResetTarget, *, by_time: bool = False
    ) -> dict[int, int]:
        """Move a group's committed offsets in ``topic``; ``by_time`` reads ``to`` as ms.

        Refused while the group has live members (Kafka's rule). Returns the new offsets.
        """
        ...

    def delete_group(self, group: str) -> None:
        """Forget a group's committed offsets. Refused while it has live members."""
        ...

    def close(self) -> None:
        """Release files, locks and connections."""
        ...

    def __enter__(self) -> Hub: ...

    def __exit__(self, *exc: object) -> None: ...
