"""Records between confluent-kafka and Arrow: reading (fetch) and the Arrow form of messages.

confluent-kafka hands out one ``Message`` object per record, so turning a poll's worth of
messages into an Arrow table is one pass over the list per column, with the columns built by
``pa.array`` in C. That per-record Python is the Kafka backend's floor; the embedded hub
reads its stored Arrow batches without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from trunkline.errors import OffsetOutOfRange
from trunkline.hub._kafka_errors import error_name, kafka_errors, retrying, translate
from trunkline.hub._records import _no_headers as no_headers
from trunkline.hub._types import FETCH_SCHEMA, HEADER_TYPE, TIMESTAMP_TYPE, FetchedBatch

#: How long a fetch below the high watermark waits for records that exist but have not
#: arrived over the network yet (its ``timeout`` only bounds waiting for *new* records).
DATA_WAIT = 30.0


def to_table(messages: Sequence[Any]) -> pa.Table:
    """Messages of one partition, in offset order, as a table in FETCH_SCHEMA."""
    from confluent_kafka import Message

    # map() over the unbound methods: no attribute lookup per record.
    stamps = [stamp for _kind, stamp in map(Message.timestamp, messages)]
    headers = list(map(Message.headers, messages))
    return pa.Table.from_arrays(
        [
            pa.array(list(map(Message.offset, messages)), pa.int64()),
            pa.array(stamps, pa.int64()).cast(TIMESTAMP_TYPE),
            pa.array(list(map(Message.key, messages)), pa.binary()),
            pa.array(list(map(Message.value, messages)), pa.binary()),
            # Most records have no headers; then the column is one zeroed offsets buffer.
            pa.array([h or () for h in headers], HEADER_TYPE)
            if any(headers)
            else no_headers(len(messages)),
        ],
        schema=FETCH_SCHEMA,
    )


def consume(consumer: Any, n: int) -> list[Any]:
    """Up to ``n`` records the client already holds, without waiting."""
    return list(consumer.consume(n, 0)) if n > 0 else []


def record_bytes(message: Any) -> int:
    key, value = message.key(), message.value()
    return (len(key) if key else 0) + (len(value) if value else 0)


class PartitionReader:
    """Reads one partition at a time for :meth:`KafkaHub.fetch`, without a consumer group.

    A group-less consumer is assigned the requested partition at the requested offset.
    Reading on from where the previous fetch stopped keeps the assignment, so what the client
    fetched ahead (and any records this reader took but did not return) serves the next call
    without another round trip. Not thread-safe: the hub holds a lock around it.
    """

    def __init__(self, factory: Callable[[], Any], timeout: float) -> None:
        self._factory = factory
        self._timeout = timeout
        self._consumer: Any = None
        self._at: tuple[str, int] | None = None  # the assigned partition
        self._next = -1  # the offset after what the previous fetch returned
        self._high = -1  # the high watermark last seen for the assigned partition
        self._leftover: list[Any] = []  # taken from the client but not returned yet

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            self._at = None
            consumer.close()

    def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int,
        max_bytes: int,
        timeout: float,
    ) -> FetchedBatch:
        continuing = self._at == (topic, partition) and self._next == offset
        if not continuing or offset >= self._high:
            low, high = self.watermarks(topic, partition)
            if not low <= offset <= high:
                raise OffsetOutOfRange(
                    f"{topic}[{partition}] holds offsets {low} to {high} (end); offset "
                    f"{offset} is out of range",
                    start=low,
                    end=high,
                    requested=offset,
                )
            self._high = high
        if not continuing:
            self._assign(topic, partition, offset)
        wait = timeout if offset >= self._high else max(timeout, DATA_WAIT)
        messages = self._take(topic, partition, offset, max_records, wait)
        chosen: list[Any] = []
        size = 0
        for message in messages:
            if chosen and (len(chosen) >= max_records or size + record_bytes(message) > max_bytes):
                break
            chosen.append(message)
            size += record_bytes(message)
        self._leftover = messages[len(chosen) :]
        next_offset = chosen[-1].offset() + 1 if chosen else offset
        self._next = next_offset
        if next_offset >= self._high and not self._leftover:
            # Caught up: stop the client's background fetching. An idle fetch at the log end
            # waits on the broker (fetch.wait.max.ms), and requests behind it on the same
            # connection, such as the next partition's, wait with it.
            self._release()
        return FetchedBatch(topic, partition, to_table(chosen), next_offset)

    def _release(self) -> None:
        if self._at is not None and self._consumer is not None:
            self._at = None
            with kafka_errors("stop reading"):
                self._consumer.unassign()

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start, log end) of a partition, asked of the broker now."""
        from confluent_kafka import TopicPartition

        def ask() -> tuple[int, int]:
            with kafka_errors(f"read the offsets of {topic}[{partition}]"):
                low, high = self._client().get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self._timeout, cached=False
                )
            return int(low), int(high)

        return retrying(ask, self._timeout)

    def _client(self) -> Any:
        if self._consumer is None:
            self._consumer = self._factory()
        return self._consumer

    def _assign(self, topic: str, partition: int, offset: int) -> None:
        from confluent_kafka import TopicPartition

        self._at = None
        self._leftover = []
        with kafka_errors(f"read {topic}[{partition}]"):
            self._client().assign([TopicPartition(topic, partition, offset)])
        self._at = (topic, partition)
        self._next = offset

    def _take(
        self, topic: str, partition: int, offset: int, max_records: int, wait: float
    ) -> list[Any]:
        """Records from ``offset`` on: the leftover topped up with what arrived, else what
        arrives within ``wait`` seconds."""
        consumer = self._client()
        out, self._leftover = self._leftover, []
        deadline = time.monotonic() + wait
        what = f"read {topic}[{partition}]"
        while True:
            with kafka_errors(what):
                # consume(n, 0) takes what has arrived; consume(n, t) would wait for all n.
                if len(out) < max_records:
                    out += consume(consumer, max_records - len(out))
                if not out:
                    # poll() returns as soon as one record is there.
                    first = consumer.poll(max(0.0, deadline - time.monotonic()))
                    if first is None:
                        return []
                    out = [first]
                    continue
            kept = [m for m in out if self._keep(m, topic, partition, offset)]
            if kept or time.monotonic() >= deadline:
                return kept
            out = []

    def _keep(self, message: Any, topic: str, partition: int, offset: int) -> bool:
        error = message.error()
        if error is None:
            # Records of a partition read before are dropped by the client on assign(); this
            # only makes sure of it.
            return bool(message.partition() == partition and message.topic() == topic)
        if error_name(error) == "_PARTITION_EOF":
            return False
        self._at = None  # the client's position is unknown now: assign again next time
        low, high = (-1, -1)
        if error_name(error) in {"_AUTO_OFFSET_RESET", "OFFSET_OUT_OF_RANGE"}:
            low, high = self.watermarks(topic, partition)
        raise translate(error, f"read {topic}[{partition}]", offsets=(low, high, offset))
