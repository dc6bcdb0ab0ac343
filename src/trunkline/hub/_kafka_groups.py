"""Consumer groups of a Kafka cluster through the AdminClient: list, describe, offsets, reset.

:class:`GroupAdmin` does the group half of :class:`~trunkline.hub.kafka.KafkaHub`; the hub
delegates to it. Kafka's rule for admin offset changes holds here as on the embedded hub: a
group with live members cannot have its offsets set, reset or deleted; trunkline checks the
member list first and says so (Kafka would refuse with less helpful errors, or not at all
for a KIP-848 group).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trunkline.errors import ConfigError, HubError, PartitionNotFound, TopicNotFound
from trunkline.hub._kafka_errors import kafka_errors, retrying, translate
from trunkline.hub._types import (
    GroupDescription,
    MemberDescription,
    PartitionOffsets,
    TopicPartition,
)
from trunkline.hub.protocol import ResetTarget

if TYPE_CHECKING:
    from trunkline.hub.kafka import KafkaHub

_GROUP_STATES = {
    "STABLE": "Stable",
    "EMPTY": "Empty",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "DEAD": "Dead",
    "UNKNOWN": "Unknown",
}


class GroupAdmin:
    """The consumer-group operations of a KafkaHub (same contract as the Hub protocol's)."""

    def __init__(self, hub: KafkaHub, admin: Any, timeout: float) -> None:
        self._hub = hub
        self._admin = admin
        self._timeout = timeout

    def _describe(self, group: str) -> Any:
        """The admin description of ``group`` (None if the coordinator does not know it)."""
        what = f"describe consumer group {group!r}"
        with kafka_errors(what):
            futures = self._admin.describe_consumer_groups([group], request_timeout=self._timeout)
        from confluent_kafka import KafkaException

        try:
            return futures[group].result()
        except KafkaException as exc:
            if exc.args and exc.args[0].name() == "GROUP_ID_NOT_FOUND":
                return None
            raise translate(exc, what) from exc

    def live_members(self, group: str) -> set[str]:
        """Member ids the group coordinator lists for ``group`` now."""
        described = retrying(lambda: self._describe(group), self._timeout)
        return {m.member_id for m in described.members} if described is not None else set()

    def _refuse_if_live(self, group: str, action: str) -> None:
        live = self.live_members(group)
        if live:
            raise HubError(
                f"group {group!r} has live members {sorted(live)}; stop them (or wait for "
                f"their sessions to expire) before {action} (Kafka's rule: the group must be "
                "empty)"
            )

    def list_groups(self) -> list[str]:
        what = "list consumer groups"
        with kafka_errors(what):
            future = self._admin.list_consumer_groups(request_timeout=self._timeout)
        listed = _result(future, what)
        return sorted({g.group_id for g in listed.valid})

    def describe_group(self, group: str) -> GroupDescription:
        check_group(group)
        described = self._describe(group)
        committed = self._group_offsets(group)
        members = tuple(
            MemberDescription(
                member_id=m.member_id,
                client=m.client_id,
                assignment=tuple(
                    sorted(
                        (TopicPartition(tp.topic, tp.partition) for tp in _assigned(m)),
                        key=lambda tp: (tp.topic, tp.partition),
                    )
                ),
                last_heartbeat_ms=0,  # not reported by Kafka's admin API
            )
            for m in (described.members if described is not None else [])
        )
        state = _GROUP_STATES.get(described.state.name, "Unknown") if described else "Dead"
        if not members and not committed and state in {"Dead", "Unknown"}:
            raise HubError(
                f"consumer group {group!r} does not exist: it has no live members and no "
                "committed offsets"
            )
        topics = sorted(
            {tp.topic for tp in committed} | {tp.topic for m in members for tp in m.assignment}
        )
        offsets = []
        for topic in topics:
            try:
                ends = self._hub.end_offsets(topic)
            except TopicNotFound:
                continue
            for partition, end in ends.items():
                done = committed.get(TopicPartition(topic, partition))
                offsets.append(PartitionOffsets(topic, partition, done, end))
        return GroupDescription(group, state, members, tuple(offsets))

    def _group_offsets(
        self, group: str, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka import TopicPartition as ClientTP

        asked = (
            None if partitions is None else [ClientTP(tp.topic, tp.partition) for tp in partitions]
        )
        what = f"read the committed offsets of group {group!r}"
        with kafka_errors(what):
            futures = self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, asked)],
                request_timeout=self._timeout,
            )
        result = _result(futures[group], what)
        out = {}
        for tp in result.topic_partitions or []:
            if tp.error is not None:
                raise translate(tp.error, what)
            if tp.offset >= 0:
                out[TopicPartition(tp.topic, tp.partition)] = tp.offset
        return out

    def committed(self, group: str, topic: str) -> dict[int, int]:
        check_group(group)
        count = self._hub.partition_counts([topic])[topic]
        asked = [TopicPartition(topic, p) for p in range(count)]
        return {
            tp.partition: o
            for tp, o in sorted(
                self._group_offsets(group, asked).items(), key=lambda item: item[0].partition
            )
        }

    def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        check_group(group)
        for tp, offset in offsets.items():
            if not isinstance(tp, TopicPartition):
                raise ConfigError(f"expected TopicPartition keys, found {tp!r}")
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise ConfigError(
                    f"offset for {tp.topic}[{tp.partition}] must be an integer >= 0, "
                    f"found {offset!r}"
                )
            count = self._hub.partition_counts([tp.topic])[tp.topic]
            if not 0 <= tp.partition < count:
                raise PartitionNotFound(
                    f"topic {tp.topic!r} has {count} partitions; partition {tp.partition} "
                    "does not exist"
                )
        if not offsets:
            return
        self._refuse_if_live(group, "setting its offsets")
        self._alter_offsets(group, offsets)

    def _alter_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka import TopicPartition as ClientTP

        what = f"set the committed offsets of group {group!r}"
        asked = [ClientTP(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        with kafka_errors(what):
            futures = self._admin.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, asked)],
                request_timeout=self._timeout,
            )
        result = _result(futures[group], what)
        for tp in result.topic_partitions or []:
            if tp.error is not None:
                raise translate(tp.error, what)

    def reset_group(
        self, group: str, topic: str, to: ResetTarget, *, by_time: bool = False
    ) -> dict[int, int]:
        check_group(group)
        starts, ends = self._hub.start_offsets(topic), self._hub.end_offsets(topic)
        if by_time:
            if not isinstance(to, int) or isinstance(to, bool):
                raise ConfigError(f"a reset by time needs a timestamp in ms, found {to!r}")
            found = self._hub.offsets_for_time(topic, to)
            targets = {p: ends[p] if o is None else o for p, o in found.items()}
        elif to == "earliest":
            targets = starts
        elif to == "latest":
            targets = ends
        elif isinstance(to, int) and not isinstance(to, bool):
            targets = {p: min(max(to, starts[p]), ends[p]) for p in starts}
        else:
            raise ConfigError(
                f"expected 'earliest', 'latest' or an offset to reset to, found {to!r}"
            )
        self._refuse_if_live(group, "resetting its offsets")
        self._alter_offsets(group, {TopicPartition(topic, p): o for p, o in targets.items()})
        return targets

    def delete_group(self, group: str) -> None:
        check_group(group)
        self._refuse_if_live(group, "deleting it")
        what = f"delete consumer group {group!r}"
        with kafka_errors(what):
            futures = self._admin.delete_consumer_groups([group], request_timeout=self._timeout)
        _result(futures[group], what)


def _result(future: Any, what: str) -> Any:
    with kafka_errors(what):
        return future.result()


def _assigned(member: Any) -> list[Any]:
    assignment = getattr(member, "assignment", None)
    return list(getattr(assignment, "topic_partitions", None) or [])


def check_group(group: str) -> None:
    if not isinstance(group, str) or not group:
        raise ConfigError(f"consumer group must be a non-empty string, found {group!r}")
