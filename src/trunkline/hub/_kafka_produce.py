"""Produce Arrow rows through confluent-kafka and wait until every record is acknowledged.

confluent-kafka takes one ``produce()`` call per record (there is no batch API that accepts
columns), so the Arrow columns are turned into Python lists once per partition and the loop
below does nothing but the call. librdkafka batches the records again on its side.

Offsets come from the delivery reports. librdkafka reports a partition's messages in the
order they were produced (guaranteed with the idempotent producer), so each partition's
reports are matched to its rows by position; that order is checked, not assumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from trunkline.errors import HubError
from trunkline.hub._kafka_errors import error_name, kafka_errors, translate
from trunkline.hub._records import PartitionSlice

#: How long a partition the cluster has (a topic just grown) may stay unknown to the producer.
PARTITION_WAIT = 10.0


class _Reports:
    """Delivery reports of one partition's records, in the order librdkafka gives them."""

    __slots__ = ("errors", "offsets")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.errors: list[Any] = []

    def __call__(self, error: Any, message: Any) -> None:
        if error is None:
            self.offsets.append(message.offset())
        else:
            self.errors.append(error)
            self.offsets.append(-1)


def _headers(rows: pa.Table) -> list[Any]:
    column = rows.column("headers")
    if column.null_count == len(column) or not any(len(chunk.values) for chunk in column.chunks):
        return [None] * len(rows)
    return [
        [(h["key"], h["value"]) for h in headers] if headers else None
        for headers in column.to_pylist()
    ]


def send(
    producer: Any,
    topic: str,
    slices: Sequence[PartitionSlice],
    total: int,
    timeout: float,
    on_fatal: Callable[[], None],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Produce every slice and wait for all delivery reports: (partition, offset) per row.

    ``on_fatal`` is called when the producer reports a fatal error (an idempotent producer
    that lost its sequence cannot go on; the caller replaces it).

    Raises:
        HubError: (or a subclass) when any record was refused or not acknowledged within
            ``timeout`` seconds. Records of the same call may have been written meanwhile.
    """
    from confluent_kafka import KafkaException

    partitions = np.empty(total, dtype=np.int32)
    offsets = np.empty(total, dtype=np.int64)
    reports: list[tuple[PartitionSlice, _Reports]] = []
    what = f"produce to {topic!r}"
    for part in slices:
        report = _Reports()
        reports.append((part, report))
        rows = part.rows
        keys = rows.column("key").to_pylist()
        values = rows.column("value").to_pylist()
        stamps = rows.column("timestamp").cast(pa.int64()).to_pylist()
        headers = _headers(rows)
        produce = producer.produce
        p = part.partition
        with kafka_errors(what):
            for key, value, stamp, header in zip(keys, values, stamps, headers, strict=True):
                try:
                    produce(
                        topic, value, key, p, on_delivery=report, timestamp=stamp, headers=header
                    )
                except (BufferError, KafkaException) as exc:
                    _retry(exc, producer, topic, value, key, p, report, stamp, header)
    deadline = time.monotonic() + timeout
    pending = total
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            error = HubError(
                f"Kafka did not acknowledge {pending} of {total} record(s) produced to "
                f"{topic!r} within {timeout:.0f}s; some of them may have been written"
            )
            error.retryable = True
            raise error
        with kafka_errors(what):
            producer.flush(min(remaining, 1.0))
        pending = total - sum(len(r.offsets) for _, r in reports)
    for part, report in reports:
        if report.errors:
            if any(e.fatal() for e in report.errors):
                on_fatal()
            raise translate(report.errors[0], what)
        got = np.asarray(report.offsets, dtype=np.int64)
        if len(got) > 1 and not (np.diff(got) > 0).all():
            raise HubError(
                f"delivery reports for {topic}[{part.partition}] came out of order; "
                "cannot tell which record got which offset"
            )
        partitions[part.positions] = part.partition
        offsets[part.positions] = got
    return partitions, offsets


def _retry(
    first: BaseException,
    producer: Any,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    partition: int,
    report: _Reports,
    stamp: int,
    header: Any,
) -> None:
    """Queue one record that the client refused for a reason that passes.

    * BufferError: the client's queue is full; serving delivery reports makes room.
    * _UNKNOWN_PARTITION: the hub saw the partition in the cluster's metadata (it checks
      every partition before sending), but this producer's metadata is older: the topic has
      just grown. Ask for the topic's metadata, which refreshes the client's cache.

    Anything else, or a partition still unknown after PARTITION_WAIT seconds, is raised.
    """
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + PARTITION_WAIT
    error = first
    while True:
        if isinstance(error, BufferError):
            producer.poll(0.05)
        elif error_name(error) == "_UNKNOWN_PARTITION" and time.monotonic() < deadline:
            producer.list_topics(topic=topic, timeout=1.0)
            time.sleep(0.05)
        else:
            raise error
        try:
            producer.produce(
                topic, value, key, partition, on_delivery=report, timestamp=stamp, headers=header
            )
            return
        except (BufferError, KafkaException) as exc:
            error = exc
