"""Dead letters: the topic ``<connector>.dlq``, what its records carry, listing and replay.

A dead-letter record keeps the original key and value bytes (and, from a sink, the
original headers) and adds ``trunkline.*`` headers:

=====================  ==========================================================
``trunkline.error``    why it could not be processed
``trunkline.stage``    ``source``, ``sink`` or ``transform``
``trunkline.connector`` the connector that gave up on it
``trunkline.origin``   where it came from: ``file.csv:17`` or ``topic/2@1234``
``trunkline.topic``    the topic it belongs to (and ``.partition``, ``.offset`` from
                       a sink; ``.file``, ``.line`` from the files source...)
``trunkline.time``     when it was dead-lettered (ms since the epoch)
=====================  ==========================================================

Replay moves dead letters of a sink into the sink's retry topic (``<sink>.retry``), which
the sink reads besides its topics: the sink re-runs on them, and the other readers of the
original topic do not see them twice. ``to="topic"`` puts them back into their original
topic instead, for every reader. A consumer group per connector remembers what was
replayed, so a record is replayed once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from trunkline.connectors.base import DeadLetter, Metrics, dead_letter_topic, retry_topic
from trunkline.errors import ConfigError, TopicExists, TopicNotFound
from trunkline.hub import FetchedBatch, Hub, Message, Record, TopicConfig

__all__ = [
    "HEADER",
    "ID_HEADER",
    "DeadLetterEntry",
    "HubDeadLetters",
    "dead_letter_topics",
    "read_dead_letters",
    "replay",
]

HEADER = "trunkline."
#: The header that identifies what a source wrote (see the source task's recovery).
ID_HEADER = "trunkline.source-id"
#: Dead-letter topics keep their records until someone deletes them.
DLQ_CONFIG = TopicConfig(retention_ms=None)


def ensure_topic(hub: Hub, topic: str, config: TopicConfig | None = None) -> None:
    """Create ``topic`` if it does not exist (another process may create it first)."""
    try:
        hub.describe_topic(topic)
    except TopicNotFound:
        with contextlib.suppress(TopicExists):
            hub.create_topic(topic, config)


class HubDeadLetters:
    """The dead-letter writer a connector gets: produces to ``<connector>.dlq``, durably."""

    def __init__(
        self, hub: Hub, connector: str, metrics: Metrics | None = None, *, source_id: str = ""
    ) -> None:
        self.hub = hub
        self.connector = connector
        self.topic = dead_letter_topic(connector)
        self.metrics = metrics
        self._source_id = source_id
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            ensure_topic(self.hub, self.topic, DLQ_CONFIG)
            self._ready = True

    def write(self, letters: Sequence[DeadLetter], ids: Sequence[str] = ()) -> None:
        """Produce ``letters``; ``ids`` (a source's record ids) are stamped for recovery."""
        if not letters:
            return
        self._ensure()
        now = str(int(time.time() * 1000)).encode()
        records = []
        for i, letter in enumerate(letters):
            headers: list[tuple[str, bytes | None]] = list(letter.headers)
            headers += [
                ("trunkline.error", letter.error.encode()),
                ("trunkline.stage", letter.stage.encode()),
                ("trunkline.connector", self.connector.encode()),
                ("trunkline.origin", letter.origin.encode()),
                ("trunkline.time", now),
            ]
            headers += [(f"{HEADER}{k}", v.encode()) for k, v in letter.details.items()]
            if i < len(ids):
                headers.append((ID_HEADER, f"{self._source_id}/{ids[i]}".encode()))
            records.append(Record(letter.value, key=letter.key, headers=tuple(headers)))
        self.hub.produce(self.topic, records)
        if self.metrics is not None:
            self.metrics.count("dead_letters", len(records))

    def write_records(
        self,
        batch: FetchedBatch,
        rows: Sequence[int],
        errors: Sequence[str],
        *,
        topic: str,
        stage: Literal["sink", "transform"] = "sink",
    ) -> None:
        if not rows:
            return
        taken = batch.records.take(pa.array(list(rows), pa.int64())).to_pylist()
        letters = []
        for row, error in zip(taken, errors, strict=True):
            original = [(h["key"], h["value"]) for h in row["headers"] or ()]
            replayed = {k: v for k, v in original if k.startswith(HEADER)}
            kept = tuple((k, v) for k, v in original if not k.startswith(HEADER))
            if "trunkline.origin" in replayed:
                # Dead again after a replay: keep where it first came from.
                origin = (replayed["trunkline.origin"] or b"").decode()
                details = {
                    k.removeprefix(HEADER): (v or b"").decode()
                    for k, v in replayed.items()
                    if k in ("trunkline.topic", "trunkline.partition", "trunkline.offset")
                }
            else:
                origin = f"{batch.topic}/{batch.partition}@{row['offset']}"
                details = {
                    "topic": topic,
                    "partition": str(batch.partition),
                    "offset": str(row["offset"]),
                }
            letters.append(
                DeadLetter(
                    value=row["value"],
                    key=row["key"],
                    error=error,
                    stage=stage,
                    origin=origin,
                    details=details,
                    headers=kept,
                )
            )
        self.write(letters)


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A dead-letter record as ``trunkline dlq show`` prints it."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def error(self) -> str:
        return self.headers.get("trunkline.error", "")

    @property
    def origin(self) -> str:
        return self.headers.get("trunkline.origin", "")

    @property
    def stage(self) -> str:
        return self.headers.get("trunkline.stage", "")


def dead_letter_topics(hub: Hub) -> list[str]:
    """Every dead-letter topic of the hub (``*.dlq``)."""
    return [t for t in hub.list_topics() if t.endswith(".dlq")]


def _entry(message: Message) -> DeadLetterEntry:
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in message.headers}
    return DeadLetterEntry(
        message.partition, message.offset, message.timestamp, message.key, message.value, headers
    )


def read_dead_letters(
    hub: Hub,
    topic: str,
    *,
    start: int = 0,
    limit: int = 100,
    partitions: Sequence[int] | None = None,
) -> Iterator[DeadLetterEntry]:
    """Dead letters of ``topic`` from ``start`` (per partition), at most ``limit``."""
    count = 0
    for partition, end in sorted(hub.end_offsets(topic).items()):
        if partitions is not None and partition not in partitions:
            continue
        offset = max(start, hub.start_offsets(topic)[partition])
        while offset < end and count < limit:
            batch = hub.fetch(topic, partition, offset, max_records=min(1000, limit - count))
            for message in batch.messages():
                yield _entry(message)
                count += 1
                if count >= limit:
                    return
            offset = batch.next_offset


def replay(
    hub: Hub,
    connector: str,
    *,
    to: Literal["retry", "topic"] = "retry",
    timeout: float = 2.0,
) -> dict[str, int]:
    """Move the dead letters of ``connector`` not replayed yet; returns records per topic.

    Raises:
        ConfigError: dead letters of a source (what it could not read is not a record of
            any topic yet), or ``to="topic"`` for records without a ``trunkline.topic``.
    """
    source_topic = dead_letter_topic(connector)
    hub.describe_topic(source_topic)
    target_retry = retry_topic(connector)
    moved: dict[str, int] = {}
    with hub.consumer(f"dlq-replay-{connector}", [source_topic]) as consumer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = consumer.poll(0.2, max_records=10_000)
            if not batches:
                if consumer.assignment():
                    ends = hub.end_offsets(source_topic)
                    if all(
                        consumer.position(tp) >= ends[tp.partition] for tp in consumer.assignment()
                    ):
                        break
                continue
            for batch in batches:
                out: dict[str, list[Record]] = {}
                for message in batch.messages():
                    headers = dict(message.headers)
                    if headers.get("trunkline.stage") == b"source":
                        raise ConfigError(
                            f"{source_topic} holds input the source {connector!r} could not "
                            "read, which is not a record of any topic yet: fix it and give it "
                            f"to the source again (`trunkline dlq show {connector} --raw` "
                            "prints the original bytes)"
                        )
                    original = (headers.get("trunkline.topic") or b"").decode()
                    if to == "topic" and not original:
                        raise ConfigError(
                            f"record {message.offset} of {source_topic} does not say which "
                            "topic it belongs to (no trunkline.topic header)"
                        )
                    keep = tuple(
                        (k, v)
                        for k, v in message.headers
                        if not k.startswith(HEADER)
                        or k
                        in (
                            "trunkline.topic",
                            "trunkline.partition",
                            "trunkline.offset",
                            "trunkline.origin",
                        )
                    )
                    target = target_retry if to == "retry" else original
                    if to == "topic":
                        keep = tuple((k, v) for k, v in keep if not k.startswith(HEADER))
                    out.setdefault(target, []).append(
                        Record(message.value, key=message.key, headers=keep)
                    )
                for target, records in out.items():
                    ensure_topic(hub, target)
                    hub.produce(target, records)
                    moved[target] = moved.get(target, 0) + len(records)
            consumer.commit()
            deadline = time.monotonic() + timeout
    return moved
