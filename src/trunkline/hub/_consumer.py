"""A consumer-group member of the embedded hub.

Each poll heartbeats through :class:`~trunkline.hub._groups.GroupStore` (at most every
:data:`HEARTBEAT_INTERVAL` seconds), follows the assignment it gets back, and reads only the
partitions it owns, only while its lease is valid. Nothing is committed behind the user's
back: :meth:`EmbeddedConsumer.commit` after processing gives at-least-once delivery, and a
partition handed to another member continues from the last commit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from trunkline.errors import ConfigError, NotAssigned, OffsetOutOfRange, TopicNotFound
from trunkline.hub._groups import GroupStore, new_member_id
from trunkline.hub._notify import Waiter
from trunkline.hub._types import FetchedBatch, TopicPartition
from trunkline.hub.protocol import AutoOffsetReset

if TYPE_CHECKING:
    from trunkline.hub.embedded import EmbeddedHub

#: Longest time between heartbeats; also how quickly members hand partitions to a newcomer.
HEARTBEAT_INTERVAL = 0.5
_RESETS = ("earliest", "latest", "error")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EmbeddedConsumer:
    """Joins ``group`` on construction; see :class:`~trunkline.hub.protocol.Consumer`."""

    def __init__(
        self,
        hub: EmbeddedHub,
        group: str,
        topics: list[str],
        *,
        auto_offset_reset: AutoOffsetReset = "earliest",
        client: str = "",
        session_timeout_ms: int = 10_000,
    ) -> None:
        if auto_offset_reset not in _RESETS:
            raise ConfigError(
                f"auto_offset_reset must be one of {', '.join(_RESETS)}, "
                f"found {auto_offset_reset!r}"
            )
        self.hub = hub
        self.group = group
        self.topics = sorted(set(topics))
        hub.partition_counts(self.topics)  # unknown topics fail here, before joining
        self.auto_offset_reset = auto_offset_reset
        self.member_id = new_member_id(client)
        self._client = client
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat = min(HEARTBEAT_INTERVAL, session_timeout_ms / 3000)
        # Each consumer has its own connection, so consumers can live on different threads.
        self._store = GroupStore(hub.path)
        self._waiter = Waiter()
        self._positions: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._owned: list[TopicPartition] = []
        self._watched: dict[TopicPartition, Path] = {}
        self._lease_expires_ms = 0
        self._next_sync = 0.0
        self._turn = 0
        self._closed = False
        self._join()

    def _join(self) -> None:
        self._store.join(
            self.group,
            self.member_id,
            self.topics,
            client=self._client,
            session_timeout_ms=self._session_timeout_ms,
        )

    def _counts(self) -> dict[str, int]:
        counts = {}
        for topic in self.topics:
            try:
                counts[topic] = self.hub.partition_counts([topic])[topic]
            except TopicNotFound:
                continue  # deleted while subscribed: its partitions simply go away
        return counts

    def _sync(self) -> None:
        if time.monotonic() < self._next_sync and self._store.now_ms() < self._lease_expires_ms:
            return
        counts = self._counts()
        result = self._store.sync(self.group, self.member_id, counts)
        if result.fenced:
            # Our session expired and others may have taken over: positions are worthless.
            self._positions.clear()
            self._join()
            result = self._store.sync(self.group, self.member_id, counts)
        for tp in result.acquired:
            committed = result.committed.get(tp)
            self._positions[tp] = self._initial_position(tp) if committed is None else committed
            if committed is not None:
                self._committed[tp] = committed
        if result.to_release:
            self._store.release(self.group, self.member_id, result.to_release)
        keep = result.owned - result.to_release
        for tp in [tp for tp in self._positions if tp not in keep]:
            del self._positions[tp]
            self._committed.pop(tp, None)
        for tp in [tp for tp in self._watched if tp not in keep]:
            self._waiter.unwatch(self._watched.pop(tp))
        self._owned = sorted(keep, key=lambda tp: (tp.topic, tp.partition))
        for tp in self._owned:
            if tp not in self._watched:
                self._watched[tp] = self.hub.partition_log(tp.topic, tp.partition).hw_path
                self._waiter.watch(self._watched[tp])
        self._lease_expires_ms = result.lease_expires_ms
        self._next_sync = time.monotonic() + self._heartbeat

    def _initial_position(self, tp: TopicPartition) -> int:
        plog = self.hub.partition_log(tp.topic, tp.partition)
        if self.auto_offset_reset == "earliest":
            return plog.start_offset()
        if self.auto_offset_reset == "latest":
            return plog.end_offset()
        raise NotAssigned(
            f"group {self.group!r} has no committed offset for {tp.topic}[{tp.partition}] "
            "and auto_offset_reset is 'error'"
        )

    def poll(self, timeout: float = 1.0, max_records: int = 10_000) -> list[FetchedBatch]:
        self._check_open()
        deadline = time.monotonic() + timeout
        while True:
            self._sync()
            out = self._fetch(max_records) if self._store.now_ms() < self._lease_expires_ms else []
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._waiter.wait(max(0.0, min(remaining, self._next_sync - time.monotonic())))

    def _fetch(self, max_records: int) -> list[FetchedBatch]:
        out: list[FetchedBatch] = []
        owned = self._owned
        budget = max_records
        # Start each poll at a different partition so that one busy partition cannot starve
        # the others.
        for i in range(len(owned)):
            tp = owned[(self._turn + i) % len(owned)]
            plog = self.hub.partition_log(tp.topic, tp.partition)
            position = self._positions[tp]
            try:
                batches, nxt = plog.read(position, budget, 16 << 20)
            except OffsetOutOfRange as exc:
                if self.auto_offset_reset == "error":
                    raise
                self._positions[tp] = exc.start if self.auto_offset_reset == "earliest" else exc.end
                batches, nxt = plog.read(self._positions[tp], budget, 16 << 20)
            self._positions[tp] = nxt
            if batches:
                fetched = FetchedBatch(tp.topic, tp.partition, next_offset=nxt, batches=batches)
                out.append(fetched)
                budget -= len(fetched)
                if budget <= 0:
                    break
        self._turn += 1
        return out

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check_open()
        if offsets is None:
            offsets = {
                tp: pos for tp, pos in self._positions.items() if self._committed.get(tp) != pos
            }
        if not offsets:
            return
        self._store.commit(
            self.group,
            offsets,
            member_id=self.member_id,
            partition_counts=self._counts(),
        )
        self._committed.update(offsets)

    def assignment(self) -> set[TopicPartition]:
        self._check_open()
        self._sync()
        return set(self._owned) if self._store.now_ms() < self._lease_expires_ms else set()

    def position(self, tp: TopicPartition) -> int:
        if tp not in self._positions:
            raise NotAssigned(f"{tp.topic}[{tp.partition}] is not assigned to this consumer")
        return self._positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._positions:
            raise NotAssigned(f"{tp.topic}[{tp.partition}] is not assigned to this consumer")
        if offset < 0:
            raise ConfigError(f"offset must be >= 0, found {offset}")
        self._positions[tp] = offset

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._store.leave(self.group, self.member_id)
        finally:
            self._store.close()
            self._waiter.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError(f"consumer {self.member_id} of group {self.group!r} is closed")

    def __enter__(self) -> EmbeddedConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
