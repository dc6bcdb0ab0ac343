"""The log hub: topics, partitions, offsets and consumer groups behind one protocol."""

from __future__ import annotations

from trunkline.hub._types import (
    FETCH_SCHEMA,
    CleanupPolicy,
    Compression,
    FetchedBatch,
    GroupDescription,
    Message,
    PartitionInfo,
    ProduceResult,
    Record,
    TopicConfig,
    TopicDescription,
    TopicPartition,
)
from trunkline.hub.protocol import Consumer, Hub

__all__ = [
    "FETCH_SCHEMA",
    "CleanupPolicy",
    "Compression",
    "Consumer",
    "FetchedBatch",
    "GroupDescription",
    "Hub",
    "Message",
    "PartitionInfo",
    "ProduceResult",
    "Record",
    "TopicConfig",
    "TopicDescription",
    "TopicPartition",
]
