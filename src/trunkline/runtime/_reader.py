"""Reading every partition of some topics under a lease, without joining a consumer group.

An exclusive sink (a DuckDB file has one writer) runs in one process at a time, guarded by
its lease (see :mod:`trunkline.runtime._lease`). It reads like Kafka's ``assign()``
rather than ``subscribe()``: all partitions, positions from its target or from the
group's committed offsets, commits as admin commits to the group ``sink-<name>``. A
process that takes over after a crash therefore starts at once: there is no dead group
member whose session must expire first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from trunkline.errors import OffsetOutOfRange, TopicNotFound
from trunkline.hub import FetchedBatch, Hub, TopicPartition

__all__ = ["LeasedReader"]

#: How often an idle reader looks for new records (the embedded hub's fetch can wait on one
#: partition only; a short sleep serves all of them).
_IDLE_SLEEP = 0.02
#: How often the partition counts of the topics are read again (partitions can be added).
_REFRESH = 5.0


class LeasedReader:
    """The subset of :class:`~trunkline.hub.protocol.Consumer` a sink task uses."""

    def __init__(self, hub: Hub, group: str, topics: list[str]) -> None:
        self.hub = hub
        self.group = group
        self.topics = topics
        self._positions: dict[TopicPartition, int] = {}
        self._owned: list[TopicPartition] = []
        self._next_refresh = 0.0
        self._turn = 0

    def _refresh(self) -> None:
        if time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + _REFRESH
        owned = []
        for topic in self.topics:
            try:
                ends = self.hub.end_offsets(topic)
            except TopicNotFound:
                continue
            committed = self.hub.committed(self.group, topic)
            starts = self.hub.start_offsets(topic)
            for partition in sorted(ends):
                tp = TopicPartition(topic, partition)
                owned.append(tp)
                if tp not in self._positions:
                    self._positions[tp] = committed.get(partition, starts[partition])
        self._owned = owned

    def assignment(self) -> set[TopicPartition]:
        self._refresh()
        return set(self._owned)

    def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def poll(self, timeout: float = 1.0, max_records: int = 10_000) -> list[FetchedBatch]:
        deadline = time.monotonic() + timeout
        while True:
            self._refresh()
            out = self._fetch(max_records)
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(_IDLE_SLEEP, max(0.0, deadline - time.monotonic())))

    def _fetch(self, max_records: int) -> list[FetchedBatch]:
        out: list[FetchedBatch] = []
        budget = max_records
        owned = self._owned
        for i in range(len(owned)):
            tp = owned[(self._turn + i) % len(owned)]
            position = self._positions[tp]
            try:
                batch = self.hub.fetch(tp.topic, tp.partition, position, max_records=budget)
            except OffsetOutOfRange as exc:
                # Retention removed what we had not read: continue at the oldest record kept.
                self._positions[tp] = exc.start if position < exc.start else exc.end
                continue
            except TopicNotFound:
                continue
            self._positions[tp] = batch.next_offset
            if len(batch):
                out.append(batch)
                budget -= len(batch)
                if budget <= 0:
                    break
        self._turn += 1
        return out

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if offsets is None:
            offsets = dict(self._positions)
        if offsets:
            self.hub.commit_offsets(self.group, offsets)

    def close(self) -> None:
        self._positions.clear()
