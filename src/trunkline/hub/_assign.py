"""The target assignment: which live member of a group should own which partition.

A pure function of the members' subscriptions and the topics' partition counts, so every
process of a group computes the same answer from the same rows of ``groups.db`` and a group
whose membership does not change never moves a partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping

from trunkline.hub._types import TopicPartition


def assign(
    subscriptions: Mapping[str, Collection[str]], partition_counts: Mapping[str, int]
) -> dict[str, frozenset[TopicPartition]]:
    """Split each topic's partitions into contiguous ranges over the members subscribed to it.

    This is Kafka's range assignor, topic by topic: the subscribed members in sorted order
    take ``partitions // members`` consecutive partitions each, and the first
    ``partitions % members`` of them one more. Range moves fewer partitions than round-robin
    when a member joins or leaves, which is the frequent change.

    Unlike Kafka, the member list is rotated by a hash of the topic name before the split. Plain
    range gives every single-partition topic to the first member in sorted order; ETL projects
    have many such topics (one per CDC table), and the rotation spreads them over the group.

    Topics without a partition count (not created yet) get no partitions.

    Example:
        >>> target = assign({"b": ["orders"], "a": ["orders"]}, {"orders": 4})
        >>> sorted(tp.partition for tp in target["a"]), sorted(tp.partition for tp in target["b"])
        ([0, 1], [2, 3])
    """
    members_by_topic: dict[str, list[str]] = {}
    for member, topics in subscriptions.items():
        for topic in topics:
            members_by_topic.setdefault(topic, []).append(member)
    target: dict[str, set[TopicPartition]] = {member: set() for member in subscriptions}
    for topic, members in members_by_topic.items():
        members.sort()
        start = zlib.crc32(topic.encode()) % len(members)
        rotated = members[start:] + members[:start]
        share, extra = divmod(partition_counts.get(topic, 0), len(rotated))
        first = 0
        for i, member in enumerate(rotated):
            size = share + (1 if i < extra else 0)
            target[member].update(TopicPartition(topic, p) for p in range(first, first + size))
            first += size
    return {member: frozenset(parts) for member, parts in target.items()}
