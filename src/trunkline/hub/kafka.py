"""The Apache Kafka backend of the Hub protocol, on confluent-kafka (librdkafka).

Changing ``hub:`` in trunkline.yaml to ``{backend: kafka, bootstrap: "host:port"}`` is the
only change a project needs: topics, partitions, offsets, configs and consumer groups map
one to one (see :mod:`trunkline.hub._kafka_config` for the configs).

How the protocol's promises are kept on Kafka:

* **Durability.** The producer is idempotent with ``acks=all``; :meth:`KafkaHub.produce`
  returns only when every record's delivery report has arrived, with its offset. Kafka does
  not fsync per write: an acknowledged record is in the page cache of every in-sync replica,
  and replication, not fsync, is what makes it survive a machine loss.
* **Placement.** Records are placed by trunkline (murmur2 of the key, as Kafka's Java client;
  keyless records stick to one partition per call), then produced to that partition, so a
  key lands on the same partition number on both backends. The producer is also configured
  with ``partitioner=murmur2_random``, librdkafka's Java-compatible partitioner, for any
  record sent without a partition.
* **Groups.** Kafka's own group protocol (KIP-848 ``consumer`` by default, ``classic`` on
  request) through :class:`~trunkline.hub._kafka_consumer.KafkaConsumer`.
* **Errors.** librdkafka errors become trunkline errors in one place,
  :mod:`trunkline.hub._kafka_errors`.

Differences from the embedded hub (also in docs/hub-backends.md):

* **Produce is not all-or-nothing** across librdkafka's request batches. Everything trunkline
  can check first is checked before the first record is sent (topic, partitions, keys on
  compacted topics, record sizes, types), so those refusals leave nothing behind; but a
  failure the broker reports midway (e.g. it stops) can leave part of a call written. The
  error is ``retryable`` and says so. Within one producer session the idempotent producer
  never writes a record twice.
* **Config limits.** Kafka 4.x refuses ``segment_bytes`` below 1 MiB and ``segment_ms`` of 0
  (ConfigError); :meth:`KafkaHub.fit_topic_config` raises them for migrations.
  ``max_message_bytes`` bounds a record *batch* on Kafka, a record on the embedded hub.
* **Compression.** ``none`` is Kafka's ``uncompressed``; topics made elsewhere with
  ``producer`` read back as ``none``; gzip/snappy topics raise Unsupported on describe.
* **Retention and compaction** run on the broker's schedule (``log.retention.check.
  interval.ms``, the log cleaner); there is no ``maintain()``.
* **Descriptions.** ``PartitionInfo.size_bytes``/``segments`` and
  ``MemberDescription.last_heartbeat_ms`` are not reported by Kafka's admin API (None / 0).
  Group states are Kafka's names (``Stable``, ``Empty``, ``PreparingRebalance``,
  ``CompletingRebalance``, ``Dead``; KIP-848's ``Assigning``/``Reconciling`` read
  ``Unknown`` through librdkafka).
* **Deleting a topic** removes its committed offsets on the broker's schedule, not at once.

Example:
    >>> hub = KafkaHub("127.0.0.1:9092")  # doctest: +SKIP
    >>> hub.create_topic("orders", TopicConfig(partitions=3))  # doctest: +SKIP
    >>> hub.produce("orders", [Record(b'{"total": 12}', key=b"c-1")]).as_pairs()  # doctest: +SKIP
    [(1, 0)]
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.errors import (
    ConfigError,
    HubError,
    InvalidRecord,
    MissingDependency,
    PartitionNotFound,
    TopicNotFound,
    TrunklineError,
)
from trunkline.hub._kafka_config import (
    TOPIC_KEYS,
    check_client_config,
    fit_for_kafka,
    from_kafka,
    to_kafka,
)
from trunkline.hub._kafka_errors import error_name, kafka_errors, retrying, translate
from trunkline.hub._kafka_groups import GroupAdmin, check_group
from trunkline.hub._kafka_produce import send
from trunkline.hub._kafka_records import PartitionReader
from trunkline.hub._records import assign_partitions
from trunkline.hub._records import to_table as records_to_table
from trunkline.hub._types import (
    FetchedBatch,
    GroupDescription,
    PartitionInfo,
    ProduceResult,
    TopicConfig,
    TopicDescription,
    TopicPartition,
    check_topic_name,
)
from trunkline.hub.protocol import AutoOffsetReset, Consumer, Producible, ResetTarget

log = logging.getLogger("trunkline.hub.kafka")

GroupProtocol = Literal["consumer", "classic"]

#: How long produce/describe information about a topic is reused before asking again.
TOPIC_CACHE_SECONDS = 2.0
#: Librdkafka accepts records up to this size when the topic allows them (Kafka's default
#: socket.request.max.bytes is 100 MiB; a topic's max_message_bytes decides below that).
_CLIENT_MAX_MESSAGE_BYTES = 100_000_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _TopicInfo:
    partitions: int
    config: TopicConfig
    seen: float  # time.monotonic() when read


class KafkaHub:
    """The Kafka backend of the :class:`~trunkline.hub.protocol.Hub` protocol.

    Args:
        bootstrap: ``host:port[,host:port...]`` of the cluster.
        client_config: extra librdkafka settings for every client (security, timeouts...).
            Settings that carry trunkline's guarantees (acks, idempotence, auto-commit,
            partitioner) cannot be changed; trying is a ConfigError.
        group_protocol: ``consumer`` (KIP-848, Kafka 4.0+ brokers; incremental, no global
            rebalance barrier) or ``classic`` (any broker; cooperative-sticky assignment).
        request_timeout: seconds an admin request or a group join may take.
        delivery_timeout: seconds :meth:`produce` waits for acknowledgements (librdkafka
            retries meanwhile, e.g. while a broker restarts).
    """

    backend = "kafka"

    def __init__(
        self,
        bootstrap: str,
        *,
        client_config: Mapping[str, str] | None = None,
        group_protocol: GroupProtocol = "consumer",
        request_timeout: float = 30.0,
        delivery_timeout: float = 120.0,
    ) -> None:
        admin = _admin_api()
        if not isinstance(bootstrap, str) or not bootstrap.strip():
            raise ConfigError(f"the Kafka hub needs a bootstrap address, found {bootstrap!r}")
        if group_protocol not in ("consumer", "classic"):
            raise ConfigError(
                f"group_protocol must be 'consumer' or 'classic', found {group_protocol!r}"
            )
        self.bootstrap = bootstrap
        self.group_protocol = group_protocol
        self.request_timeout = request_timeout
        self.delivery_timeout = delivery_timeout
        self._extra = check_client_config(client_config or {})
        self._lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._topics: dict[str, _TopicInfo] = {}
        self._sticky = itertools.count(int.from_bytes(os.urandom(2), "little"))
        self._producer: Any = None
        with kafka_errors(f"connect to {bootstrap}"):
            self._admin = admin.AdminClient(self._config())
        self._reader = PartitionReader(self._new_reader, request_timeout)
        self._groups = GroupAdmin(self, self._admin, request_timeout)
        self._closed = False

    # Clients --------------------------------------------------------------------------

    def _config(self, **settings: str) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, "logger": log, **self._extra, **settings}

    def _producer_client(self) -> Any:
        with self._lock:
            if self._producer is None:
                from confluent_kafka import Producer

                config = self._config(
                    **{
                        "enable.idempotence": "true",
                        "acks": "all",
                        "partitioner": "murmur2_random",
                        "message.max.bytes": str(_CLIENT_MAX_MESSAGE_BYTES),
                        "message.timeout.ms": str(int(self.delivery_timeout * 1000)),
                        "queue.buffering.max.messages": "1000000",
                        "linger.ms": "5",
                    }
                )
                with kafka_errors(f"create a producer for {self.bootstrap}"):
                    self._producer = Producer(config)
            return self._producer

    def _drop_producer(self) -> None:
        # An idempotent producer that hit a fatal error cannot go on; the next produce gets
        # a new one (with a new producer id).
        with self._lock:
            self._producer = None

    def _new_reader(self) -> Any:
        from confluent_kafka import Consumer as ClientConsumer

        # A group id is required by the client but never used: the reader only assigns.
        config = self._config(
            **{
                "group.id": f"trunkline-fetch-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": "false",
                "enable.auto.offset.store": "false",
                "auto.offset.reset": "error",
                "enable.partition.eof": "false",
                # The broker holds a fetch at the log end this long, and the reader's next
                # request (another partition, the offsets) waits behind it on the same
                # connection (Kafka's default is 500 ms).
                "fetch.wait.max.ms": "10",
                "receive.message.max.bytes": str(_CLIENT_MAX_MESSAGE_BYTES + 1_000_000),
            }
        )
        with kafka_errors(f"create a reader for {self.bootstrap}"):
            return ClientConsumer(config)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self._read_lock:
                self._reader.close()
            if self._producer is not None:
                with kafka_errors("flush the producer"):
                    self._producer.flush(self.delivery_timeout)
                self._producer = None

    def __enter__(self) -> KafkaHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _result(self, future: Any, what: str) -> Any:
        with kafka_errors(what):
            return future.result()

    # Topics -----------------------------------------------------------------------------

    def _topic(self, name: str, *, fresh: bool = False) -> _TopicInfo:
        """Partition count and config of ``name`` (cached briefly). Raises TopicNotFound."""
        check_topic_name(name)
        cached = self._topics.get(name)
        if cached and not fresh and time.monotonic() - cached.seen < TOPIC_CACHE_SECONDS:
            return cached
        count = retrying(lambda: self._partition_count(name), self.request_timeout)
        configs = retrying(lambda: self._topic_configs(name), self.request_timeout)
        info = _TopicInfo(count, from_kafka(name, count, configs), time.monotonic())
        self._topics[name] = info
        return info

    def _topic_configs(self, name: str) -> dict[str, str | None]:
        admin = _admin_api()
        what = f"describe topic {name!r}"
        with kafka_errors(what):
            futures = self._admin.describe_configs(
                [admin.ConfigResource(admin.ResourceType.TOPIC, name)],
                request_timeout=self.request_timeout,
            )
        entries = self._result(next(iter(futures.values())), what)
        return {key: entry.value for key, entry in entries.items()}

    def _partition_count(self, name: str) -> int:
        what = f"look up topic {name!r}"
        with kafka_errors(what):
            metadata = self._admin.list_topics(topic=name, timeout=self.request_timeout)
        found: Any = metadata.topics.get(name)
        error = found.error if found is not None else None
        if error is not None and error.name() not in {"UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"}:
            raise translate(error, what)
        if found is None or error is not None:
            self._topics.pop(name, None)
            raise TopicNotFound(f"topic {name!r} does not exist on Kafka at {self.bootstrap}")
        return len(found.partitions)

    def _forget(self, name: str) -> None:
        self._topics.pop(name, None)

    def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicDescription:
        admin = _admin_api()

        check_topic_name(name)
        config = config or TopicConfig()
        # replication_factor -1: the broker's default.replication.factor.
        new = admin.NewTopic(name, config.partitions, -1, config=to_kafka(config))
        what = f"create topic {name!r}"
        with kafka_errors(what):
            futures = self._admin.create_topics([new], request_timeout=self.request_timeout)
        self._result(futures[name], what)
        self._forget(name)
        self._wait_until(lambda: self._has_leaders(name, config.partitions), what)
        return self.describe_topic(name)

    def _has_leaders(self, name: str, partitions: int) -> bool:
        with kafka_errors(f"look up topic {name!r}"):
            found = self._admin.list_topics(topic=name, timeout=self.request_timeout).topics
        topic = found.get(name)
        return (
            topic is not None
            and topic.error is None
            and len(topic.partitions) >= partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        )

    def _wait_until(self, done: Callable[[], bool], what: str) -> None:
        # Admin calls return once the controller has committed the change; brokers learn of
        # it a moment later. Waiting here keeps create-then-produce free of races.
        deadline = time.monotonic() + self.request_timeout
        while not _quietly(done):
            if time.monotonic() >= deadline:
                error = HubError(
                    f"{what}: Kafka at {self.bootstrap} accepted the change but its brokers "
                    f"did not show it within {self.request_timeout:.0f}s"
                )
                error.retryable = True
                raise error
            time.sleep(0.05)

    def delete_topic(self, name: str) -> None:
        check_topic_name(name)
        what = f"delete topic {name!r}"
        with kafka_errors(what):
            futures = self._admin.delete_topics([name], request_timeout=self.request_timeout)
        self._result(futures[name], what)
        self._forget(name)
        self._wait_until(lambda: name not in self._all_topics(), what)

    def _all_topics(self) -> list[str]:
        with kafka_errors("list topics"):
            metadata = self._admin.list_topics(timeout=self.request_timeout)
        return list(metadata.topics)

    def list_topics(self) -> list[str]:
        # Kafka's internal topics (__consumer_offsets, __transaction_state...) start with "__".
        return sorted(t for t in self._all_topics() if not t.startswith("__"))

    def describe_topic(self, name: str) -> TopicDescription:
        info = self._topic(name, fresh=True)
        starts, ends = self.start_offsets(name), self.end_offsets(name)
        partitions = tuple(
            PartitionInfo(partition=p, start_offset=starts[p], end_offset=ends[p])
            for p in range(info.partitions)
        )
        return TopicDescription(name, info.config, partitions)

    def alter_topic(self, name: str, changes: Mapping[str, Any]) -> TopicDescription:
        admin = _admin_api()

        current = self._topic(name, fresh=True).config
        updated = current.with_changes(changes)
        if updated.partitions < current.partitions:
            raise ConfigError(
                f"topic {name!r} has {current.partitions} partitions; the count can only grow "
                f"(Kafka's rule), found {updated.partitions}"
            )
        changed = [f for f in TOPIC_KEYS if getattr(updated, f) != getattr(current, f)]
        what = f"alter topic {name!r}"
        if changed:
            entries = [
                admin.ConfigEntry(key, value, incremental_operation=admin.AlterConfigOpType.SET)
                for key, value in to_kafka(updated, changed).items()
            ]
            resource = admin.ConfigResource(
                admin.ResourceType.TOPIC, name, incremental_configs=entries
            )
            with kafka_errors(what):
                futures = self._admin.incremental_alter_configs(
                    [resource], request_timeout=self.request_timeout
                )
            for future in futures.values():
                self._result(future, what)
        if updated.partitions > current.partitions:
            with kafka_errors(what):
                futures = self._admin.create_partitions(
                    [admin.NewPartitions(name, updated.partitions)],
                    request_timeout=self.request_timeout,
                )
            self._result(futures[name], what)
            self._wait_until(lambda: self._has_leaders(name, updated.partitions), what)
        self._forget(name)
        self._wait_until(lambda: self._topic(name, fresh=True).config == updated, what)
        return self.describe_topic(name)

    def broker_settings(self) -> dict[str, str | None]:
        """The configs of one broker of the cluster (for reports: flush policy, replication).

        Example:
            >>> hub.broker_settings()["min.insync.replicas"]  # doctest: +SKIP
            '1'
        """
        admin = _admin_api()
        what = "describe the broker's configs"
        with kafka_errors(what):
            brokers = self._admin.list_topics(timeout=self.request_timeout).brokers
            node = str(min(brokers)) if brokers else "0"
            futures = self._admin.describe_configs(
                [admin.ConfigResource(admin.ResourceType.BROKER, node)],
                request_timeout=self.request_timeout,
            )
        entries = self._result(next(iter(futures.values())), what)
        return {key: entry.value for key, entry in entries.items()}

    def fit_topic_config(self, config: TopicConfig) -> tuple[TopicConfig, list[str]]:
        """``config`` adjusted to what Kafka accepts, and a note per adjusted field."""
        return fit_for_kafka(config)

    # Records ----------------------------------------------------------------------------

    def produce(
        self, topic: str, records: Producible, *, partition: int | None = None
    ) -> ProduceResult:
        info = self._topic(topic)
        table = records_to_table(records, now_ms())
        n = len(table)
        if n == 0:
            return ProduceResult(pa.array([], pa.int32()), pa.array([], pa.int64()))
        self._check_records(topic, info.config, table)
        sticky = next(self._sticky) % info.partitions
        slices = assign_partitions(table, info.partitions, partition, sticky)
        try:
            partitions, offsets = send(
                self._producer_client(),
                topic,
                slices,
                n,
                self.delivery_timeout,
                self._drop_producer,
            )
        except TopicNotFound:
            self._forget(topic)
            raise
        return ProduceResult(pa.array(partitions), pa.array(offsets))

    @staticmethod
    def _check_records(topic: str, config: TopicConfig, table: pa.Table) -> None:
        """What the broker would refuse part-way, refused here before anything is sent."""
        keys = table.column("key")
        if config.cleanup_policy.compacts and keys.null_count:
            first = int(np.flatnonzero(np.asarray(keys.is_null()))[0])
            raise InvalidRecord(
                f"topic {topic!r} is compacted (cleanup={config.cleanup_policy.value}) and "
                f"keeps the latest record per key; record {first} has no key"
            )
        sizes = np.asarray(
            pc.add(
                pc.fill_null(pc.binary_length(table.column("value")), 0),
                pc.fill_null(pc.binary_length(keys), 0),
            )
        )
        limit = min(config.max_message_bytes, _CLIENT_MAX_MESSAGE_BYTES)
        too_big = np.flatnonzero(sizes > limit)
        if len(too_big):
            first = int(too_big[0])
            raise InvalidRecord(
                f"record {first} has {int(sizes[first])} bytes (key + value); topic {topic!r} "
                f"allows {limit} (max_message_bytes)"
            )

    def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        """Partition count of each topic (TopicNotFound for a missing one)."""
        return {t: self._topic(t).partitions for t in topics}

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
        count = self._topic(topic).partitions
        if not isinstance(partition, int) or not 0 <= partition < count:
            raise PartitionNotFound(
                f"topic {topic!r} has {count} partition(s); partition {partition} does not exist"
            )
        with self._read_lock:
            return self._reader.read(
                topic,
                partition,
                offset,
                max_records=max_records,
                max_bytes=max_bytes,
                timeout=timeout,
            )

    def _list_offsets(self, topic: str, spec: Any) -> dict[int, int]:
        from confluent_kafka import TopicPartition as ClientTP

        count = self._topic(topic).partitions
        what = f"list the offsets of topic {topic!r}"
        asked = {ClientTP(topic, p): spec for p in range(count)}

        def ask() -> dict[int, int]:
            try:
                with kafka_errors(what):
                    futures = self._admin.list_offsets(asked, request_timeout=self.request_timeout)
                return {tp.partition: self._result(f, what).offset for tp, f in futures.items()}
            except HubError as exc:
                # Only partitions the metadata lists are asked for, so "no such partition"
                # (_NOENT, UNKNOWN_PARTITION) means the admin client's metadata cache lags
                # behind a topic just created or grown: worth asking again.
                if isinstance(exc, PartitionNotFound) or error_name(exc.__cause__) == "_NOENT":
                    exc.retryable = True
                raise

        return retrying(ask, self.request_timeout)

    def start_offsets(self, topic: str) -> dict[int, int]:
        admin = _admin_api()

        return dict(sorted(self._list_offsets(topic, admin.OffsetSpec.earliest()).items()))

    def end_offsets(self, topic: str) -> dict[int, int]:
        admin = _admin_api()

        return dict(sorted(self._list_offsets(topic, admin.OffsetSpec.latest()).items()))

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int | None]:
        admin = _admin_api()

        found = self._list_offsets(topic, admin.OffsetSpec.for_timestamp(timestamp_ms))
        return {p: (o if o >= 0 else None) for p, o in sorted(found.items())}

    # Consumer groups ----------------------------------------------------------------------

    def consumer(
        self,
        group: str,
        topics: Iterable[str],
        *,
        auto_offset_reset: AutoOffsetReset = "earliest",
        client: str = "",
    ) -> Consumer:
        from trunkline.hub._kafka_consumer import KafkaConsumer

        check_group(group)
        if isinstance(topics, str):
            raise ConfigError(f"topics must be a list of names, found the string {topics!r}")
        names = list(topics)
        for name in names:
            self._topic(name)  # unknown topics fail here, before joining
        settings = {
            "group.id": group,
            "client.id": client or "trunkline",
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "auto.offset.reset": auto_offset_reset,
            "group.protocol": self.group_protocol,
            "receive.message.max.bytes": str(_CLIENT_MAX_MESSAGE_BYTES + 1_000_000),
        }
        if self.group_protocol == "classic":
            # The embedded hub's session: a dead member's partitions move within seconds.
            settings |= {
                "session.timeout.ms": "10000",
                "heartbeat.interval.ms": "1000",
                "partition.assignment.strategy": "cooperative-sticky",
            }
        config = {**settings, **self._config()}
        config["group.id"] = group
        strategy = str(config.get("partition.assignment.strategy", ""))
        incremental = self.group_protocol == "consumer" or "cooperative" in strategy
        return KafkaConsumer(
            self,
            group,
            names,
            config=config,
            auto_offset_reset=auto_offset_reset,
            incremental=incremental,
            join_timeout=self.request_timeout,
        )

    def live_members(self, group: str) -> set[str]:
        """Member ids the group coordinator lists for ``group`` now."""
        return self._groups.live_members(group)

    def list_groups(self) -> list[str]:
        return self._groups.list_groups()

    def describe_group(self, group: str) -> GroupDescription:
        return self._groups.describe_group(group)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self._groups.committed(group, topic)

    def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        self._groups.commit_offsets(group, offsets)

    def reset_group(
        self, group: str, topic: str, to: ResetTarget, *, by_time: bool = False
    ) -> dict[int, int]:
        return self._groups.reset_group(group, topic, to, by_time=by_time)

    def delete_group(self, group: str) -> None:
        self._groups.delete_group(group)


def _quietly(check: Callable[[], bool]) -> bool:
    """``check()``, with a retryable error (a broker not caught up yet) counting as False."""
    try:
        return check()
    except TrunklineError as exc:
        if exc.retryable:
            return False
        raise


def _admin_api() -> Any:
    """``confluent_kafka.admin``, imported on first use (typed loosely: its stubs are partial)."""
    try:
        import confluent_kafka.admin
    except ImportError:
        raise MissingDependency("confluent-kafka", extra="kafka") from None
    return confluent_kafka.admin
