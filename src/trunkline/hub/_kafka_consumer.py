"""A consumer-group member of the Kafka hub: Kafka's group protocol behind trunkline's Consumer.

What this wrapper adds to confluent-kafka's ``Consumer``:

* **Joined on return.** :meth:`KafkaHub.consumer` returns once the group coordinator lists
  the member (or gave it partitions), like the embedded hub, whose constructor joins.
* **Known positions.** When partitions are assigned, their start offsets are resolved at once
  (the committed offset, else ``auto_offset_reset`` against the current log start/end) and
  assigned explicitly, so :meth:`position` is exact before the first record arrives and a
  ``latest`` consumer never skips records produced right after it got the partition.
* **Commit only what is owned.** Kafka's classic OffsetCommit does not check that the member
  owns the partition; the Consumer protocol does, so :meth:`commit` refuses partitions this
  member does not own with NotAssigned, and a commit the coordinator fences (the member was
  rebalanced out) is a NotAssigned too.
* **Arrow out.** :meth:`poll` returns one FetchedBatch per partition.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trunkline.errors import ConfigError, HubError, NotAssigned, TrunklineError
from trunkline.hub._kafka_errors import error_name, kafka_errors, translate
from trunkline.hub._kafka_records import to_table
from trunkline.hub._types import FetchedBatch, TopicPartition
from trunkline.hub.protocol import AutoOffsetReset

if TYPE_CHECKING:
    from trunkline.hub.kafka import KafkaHub

_RESETS = ("earliest", "latest", "error")
#: How long a commit refused for a stale member epoch is retried (KIP-848 groups).
STALE_EPOCH_RETRY_SECONDS = 5.0
_OFFSET_STORED = -1000  # librdkafka: start from the committed offset


def _key(partition: Any) -> TopicPartition:
    """A client TopicPartition as trunkline's."""
    return TopicPartition(partition.topic, partition.partition)


def _of(message: Any) -> TopicPartition:
    """The partition a client message came from."""
    return TopicPartition(message.topic(), message.partition())


class KafkaConsumer:
    """Joins ``group`` on construction; see :class:`~trunkline.hub.protocol.Consumer`.

    ``incremental`` says which assignment calls the group's rebalance protocol takes
    (cooperative: only the changes; eager: the whole assignment each time).
    """

    def __init__(
        self,
        hub: KafkaHub,
        group: str,
        topics: list[str],
        *,
        config: Mapping[str, str],
        auto_offset_reset: AutoOffsetReset,
        incremental: bool,
        join_timeout: float,
    ) -> None:
        from confluent_kafka import Consumer as ClientConsumer

        if auto_offset_reset not in _RESETS:
            raise ConfigError(
                f"auto_offset_reset must be one of {', '.join(_RESETS)}, "
                f"found {auto_offset_reset!r}"
            )
        self.hub = hub
        self.group = group
        self.topics = sorted(set(topics))
        self.auto_offset_reset = auto_offset_reset
        self._incremental = incremental
        self._timeout = hub.request_timeout
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._buffer: list[Any] = []  # records taken from the client but not returned yet
        self._pending: TrunklineError | None = None  # raised by the next poll
        self._joined = False
        self._closed = False
        with kafka_errors(f"join consumer group {group!r}"):
            self._client = ClientConsumer(dict(config))
            self._client.subscribe(
                self.topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
        try:
            self._wait_joined(join_timeout)
        except BaseException:
            self.close()
            raise

    # Group membership ------------------------------------------------------------------

    @property
    def member_id(self) -> str:
        return str(self._client.memberid() or "")

    def _wait_joined(self, timeout: float) -> None:
        # A member that gets no partitions yet is not told so by a callback under KIP-848;
        # the coordinator's member list is the proof of membership then.
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + 0.2
        while not self._joined:
            self._pump(0.1)
            now = time.monotonic()
            if now >= next_check:
                member = self.member_id
                if member and member in self.hub.live_members(self.group):
                    return
                next_check = now + 0.25
            if now >= deadline:
                error = HubError(
                    f"could not join consumer group {self.group!r} on Kafka at "
                    f"{self.hub.bootstrap} within {timeout:.0f}s"
                )
                error.retryable = True
                raise error

    def _pump(self, timeout: float) -> None:
        with kafka_errors(f"poll consumer group {self.group!r}"):
            message = self._client.poll(timeout)
        if message is not None:
            self._buffer.append(message)

    def _on_assign(self, client: Any, partitions: list[Any]) -> None:
        # Runs inside the client's poll(); an exception here would be lost in the C layer,
        # so it waits in _pending for the next poll() to raise.
        from confluent_kafka import KafkaException

        self._joined = True
        try:
            starts = self._start_offsets(client, partitions)
        except (KafkaException, TrunklineError) as exc:
            self._pending = (
                exc
                if isinstance(exc, TrunklineError)
                else translate(exc, f"find the start offsets of group {self.group!r}")
            )
            starts = {}
        from confluent_kafka import TopicPartition as ClientTP

        chosen = [
            ClientTP(p.topic, p.partition, starts.get(_key(p), _OFFSET_STORED)) for p in partitions
        ]
        self._apply(client, chosen, incremental=self._incremental)
        if not self._incremental:
            self._forget(self._assigned - {_key(p) for p in partitions})
        for p in partitions:
            tp = _key(p)
            self._assigned.add(tp)
            if tp in starts:
                self._positions[tp] = starts[tp]

    def _apply(self, client: Any, chosen: list[Any], *, incremental: bool) -> None:
        from confluent_kafka import KafkaException

        try:
            if incremental:
                client.incremental_assign(chosen)
            else:
                client.assign(chosen)
        except KafkaException:
            # A custom assignment strategy whose protocol we guessed wrong: the client says
            # which call it wants by refusing the other one.
            self._incremental = not incremental
            if self._incremental:
                client.incremental_assign(chosen)
            else:
                client.assign(chosen)

    def _on_revoke(self, client: Any, partitions: list[Any]) -> None:
        del client
        gone = set(self._assigned) if not self._incremental else {_key(p) for p in partitions}
        self._forget(gone)

    def _forget(self, gone: set[TopicPartition]) -> None:
        self._assigned -= gone
        for tp in gone:
            self._positions.pop(tp, None)
            self._committed.pop(tp, None)
        self._buffer = [m for m in self._buffer if _of(m) not in gone]

    def _start_offsets(self, client: Any, partitions: list[Any]) -> dict[TopicPartition, int]:
        """Committed offsets, else auto_offset_reset applied to the log's current bounds."""
        from confluent_kafka import TopicPartition as ClientTP

        if not partitions:
            return {}
        asked = [ClientTP(p.topic, p.partition) for p in partitions]
        with kafka_errors(f"read the committed offsets of group {self.group!r}"):
            committed = client.committed(asked, timeout=self._timeout)
        starts: dict[TopicPartition, int] = {}
        missing = []
        for p in committed:
            if p.error is not None:
                raise translate(p.error, f"read the committed offsets of group {self.group!r}")
            if p.offset >= 0:
                starts[_key(p)] = p.offset
                self._committed[_key(p)] = p.offset
            else:
                missing.append(p)
        if missing and self.auto_offset_reset == "error":
            names = ", ".join(f"{p.topic}[{p.partition}]" for p in missing)
            raise NotAssigned(
                f"group {self.group!r} has no committed offset for {names} and "
                "auto_offset_reset is 'error'"
            )
        for p in missing:
            with kafka_errors(f"read the offsets of {p.topic}[{p.partition}]"):
                low, high = client.get_watermark_offsets(
                    ClientTP(p.topic, p.partition), timeout=self._timeout, cached=False
                )
            starts[_key(p)] = low if self.auto_offset_reset == "earliest" else high
        return starts

    # Consumer protocol --------------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_records: int = 10_000) -> list[FetchedBatch]:
        self._check_open()
        self._raise_pending()
        messages = self._take_buffer(max_records)
        if not messages:
            with kafka_errors(f"poll consumer group {self.group!r}"):
                first = self._client.poll(timeout)
                if first is not None:
                    messages = [first]
                    if max_records > 1:
                        # consume(n, 0) takes what already arrived; consume(n, t) would wait
                        # for all n records.
                        messages += self._client.consume(max_records - 1, 0)
        batches = self._batches(messages)
        if not batches:
            self._raise_pending()
        return batches

    def _take_buffer(self, max_records: int) -> list[Any]:
        taken = self._buffer[:max_records]
        self._buffer = self._buffer[max_records:]
        return taken

    def _batches(self, messages: list[Any]) -> list[FetchedBatch]:
        from confluent_kafka import Message

        if any(map(Message.error, messages)):
            messages = self._without_errors(messages)
        # Group by partition, keeping each partition's order: one pass over two columns.
        keys = list(
            zip(map(Message.topic, messages), map(Message.partition, messages), strict=True)
        )
        grouped: dict[tuple[Any, Any], list[Any]] = {}
        if keys and keys.count(keys[0]) == len(keys):
            grouped[keys[0]] = messages
        else:
            for key, message in zip(keys, messages, strict=True):
                grouped.setdefault(key, []).append(message)
        out = []
        for (topic, partition), rows in grouped.items():
            tp = TopicPartition(topic, partition)
            if tp not in self._assigned:  # records of a partition revoked meanwhile
                continue
            next_offset = rows[-1].offset() + 1
            self._positions[tp] = next_offset
            out.append(FetchedBatch(topic, partition, to_table(rows), next_offset))
        return out

    def _without_errors(self, messages: list[Any]) -> list[Any]:
        """The records; the first error (other than end-of-partition) waits in _pending."""
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error_name(error) != "_PARTITION_EOF" and self._pending is None:
                self._pending = translate(error, f"poll consumer group {self.group!r}")
        return kept

    def _raise_pending(self) -> None:
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check_open()
        from confluent_kafka import TopicPartition as ClientTP

        if offsets is None:
            chosen = {
                tp: pos
                for tp, pos in self._positions.items()
                if tp in self._assigned and self._committed.get(tp) != pos
            }
        else:
            chosen = dict(offsets)
            for tp, offset in chosen.items():
                if not isinstance(tp, TopicPartition):
                    raise ConfigError(f"expected TopicPartition keys, found {tp!r}")
                if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                    raise ConfigError(
                        f"offset for {tp.topic}[{tp.partition}] must be an integer >= 0, "
                        f"found {offset!r}"
                    )
            unowned = sorted(
                (tp for tp in chosen if tp not in self._assigned),
                key=lambda tp: (tp.topic, tp.partition),
            )
            if unowned:
                names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in unowned)
                raise NotAssigned(
                    f"member {self.member_id!r} of group {self.group!r} does not own {names}; "
                    "nothing was committed"
                )
        if not chosen:
            return
        what = f"commit offsets of group {self.group!r}"
        asked = [ClientTP(tp.topic, tp.partition, o) for tp, o in chosen.items()]
        results = self._commit_with_current_epoch(asked, what)
        for result in results or []:
            if result.error is not None:
                raise translate(result.error, what)
        self._committed.update(chosen)

    def _commit_with_current_epoch(self, asked: list[Any], what: str) -> Any:
        """Commit; retried while the coordinator calls the member epoch stale.

        Under KIP-848 a rebalance bumps the member epoch, and a commit sent before the
        client has heard the new epoch (in a background heartbeat) is refused although the
        partitions are still this member's. Java's consumer retries such commits with the
        new epoch; librdkafka does not, so this does, for up to STALE_EPOCH_RETRY_SECONDS.
        Partitions that really moved are refused differently (or are not ours any more, see
        :meth:`commit`).
        """
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + STALE_EPOCH_RETRY_SECONDS
        while True:
            try:
                return self._client.commit(offsets=asked, asynchronous=False)
            except KafkaException as exc:
                stale = error_name(exc) == "STALE_MEMBER_EPOCH"
                if not stale or time.monotonic() >= deadline:
                    raise translate(exc, what) from exc
            time.sleep(0.1)

    def assignment(self) -> set[TopicPartition]:
        self._check_open()
        return set(self._assigned)

    def position(self, tp: TopicPartition) -> int:
        if tp not in self._assigned:
            raise NotAssigned(f"{tp.topic}[{tp.partition}] is not assigned to this consumer")
        if tp not in self._positions:
            from confluent_kafka import TopicPartition as ClientTP

            # The start offset could not be resolved at assignment (see _on_assign).
            with kafka_errors(f"read the position of {tp.topic}[{tp.partition}]"):
                found = self._client.position([ClientTP(tp.topic, tp.partition)])[0].offset
            if found < 0:
                found = self._start_offsets(self._client, [ClientTP(tp.topic, tp.partition)])[tp]
            self._positions[tp] = found
        return self._positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        from confluent_kafka import TopicPartition as ClientTP

        if tp not in self._assigned:
            raise NotAssigned(f"{tp.topic}[{tp.partition}] is not assigned to this consumer")
        if not isinstance(offset, int) or offset < 0:
            raise ConfigError(f"offset must be >= 0, found {offset}")
        with kafka_errors(f"seek {tp.topic}[{tp.partition}] to {offset}"):
            self._client.seek(ClientTP(tp.topic, tp.partition, offset))
        self._buffer = [m for m in self._buffer if _of(m) != tp]
        self._positions[tp] = offset

    def close(self) -> None:
        """Leave the group (partitions move to the other members at once)."""
        if self._closed:
            return
        self._closed = True
        client = getattr(self, "_client", None)
        if client is not None:
            with kafka_errors(f"leave consumer group {self.group!r}"):
                client.close()
        self._assigned.clear()
        self._buffer = []

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError(f"consumer {self.member_id!r} of group {self.group!r} is closed")

    def __enter__(self) -> KafkaConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
