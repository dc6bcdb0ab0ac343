"""TopicConfig <-> Kafka topic configs, field by field, and the client settings trunkline owns.

Every :class:`~trunkline.hub.TopicConfig` field has exactly one Kafka topic config; trunkline
writes all of them when it creates a topic, so a topic reads back the same on any cluster,
whatever the broker's defaults. Values Kafka cannot hold (or TopicConfig cannot express)
raise a :class:`~trunkline.errors.ConfigError` / :class:`~trunkline.errors.Unsupported`
that names the field, instead of being approximated silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trunkline.errors import ConfigError, Unsupported
from trunkline.hub._types import CleanupPolicy, Compression, TopicConfig

#: TopicConfig field -> Kafka topic config (``partitions`` is not a config in Kafka).
TOPIC_KEYS: dict[str, str] = {
    "retention_ms": "retention.ms",
    "retention_bytes": "retention.bytes",
    "cleanup_policy": "cleanup.policy",
    "segment_bytes": "segment.bytes",
    "segment_ms": "segment.ms",
    "delete_retention_ms": "delete.retention.ms",
    "min_compaction_lag_ms": "min.compaction.lag.ms",
    "max_message_bytes": "max.message.bytes",
    "compression": "compression.type",
}

#: Kafka 4.x refuses smaller segments (KIP-1030); the embedded hub accepts down to 1 KiB.
KAFKA_MIN_SEGMENT_BYTES = 1024 * 1024
KAFKA_MIN_SEGMENT_MS = 1

_UNLIMITED = ("retention_ms", "retention_bytes")

#: ``uncompressed`` is the faithful twin of Compression.NONE (the broker stores records
#: uncompressed). ``producer`` (Kafka's default: keep whatever the producer sent) reads back as
#: NONE because trunkline's producer does not compress.
_COMPRESSION_TO_KAFKA = {
    Compression.NONE: "uncompressed",
    Compression.LZ4: "lz4",
    Compression.ZSTD: "zstd",
}
_COMPRESSION_FROM_KAFKA = {
    "uncompressed": Compression.NONE,
    "producer": Compression.NONE,
    "lz4": Compression.LZ4,
    "zstd": Compression.ZSTD,
}


def to_kafka(config: TopicConfig, fields: Any = None) -> dict[str, str]:
    """Kafka topic configs for ``config`` (all fields, or only those named in ``fields``).

    Values are passed as they are: the broker judges them (Kafka 4.x refuses segment_bytes
    below 1 MiB and segment_ms 0, which the embedded hub accepts) and its refusal comes back
    as a ConfigError. :func:`fit_for_kafka` adjusts a config to fit, for migrations.

    Example:
        >>> to_kafka(TopicConfig(retention_ms=None), ["retention_ms", "cleanup_policy"])
        {'retention.ms': '-1', 'cleanup.policy': 'delete'}
    """
    names = list(TOPIC_KEYS) if fields is None else [f for f in fields if f in TOPIC_KEYS]
    out: dict[str, str] = {}
    for name in names:
        value = getattr(config, name)
        if name in _UNLIMITED and value is None:
            out[TOPIC_KEYS[name]] = "-1"
        elif name == "cleanup_policy":
            out[TOPIC_KEYS[name]] = CleanupPolicy(value).value
        elif name == "compression":
            out[TOPIC_KEYS[name]] = _COMPRESSION_TO_KAFKA[Compression(value)]
        else:
            out[TOPIC_KEYS[name]] = str(int(value))
    return out


def fit_for_kafka(config: TopicConfig) -> tuple[TopicConfig, list[str]]:
    """``config`` with the values Kafka 4.x refuses raised to its minimums, and what changed.

    Example:
        >>> fitted, notes = fit_for_kafka(TopicConfig(segment_bytes=4096))
        >>> fitted.segment_bytes, notes
        (1048576, ['segment_bytes 4096 -> 1048576 (Kafka 4.x minimum)'])
    """
    changes: dict[str, int] = {}
    if config.segment_bytes < KAFKA_MIN_SEGMENT_BYTES:
        changes["segment_bytes"] = KAFKA_MIN_SEGMENT_BYTES
    if config.segment_ms < KAFKA_MIN_SEGMENT_MS:
        changes["segment_ms"] = KAFKA_MIN_SEGMENT_MS
    notes = [
        f"{name} {getattr(config, name)} -> {value} (Kafka 4.x minimum)"
        for name, value in changes.items()
    ]
    return (config.with_changes(changes) if changes else config), notes


def from_kafka(topic: str, partitions: int, configs: Mapping[str, str | None]) -> TopicConfig:
    """The TopicConfig of a Kafka topic from its described configs.

    Raises:
        Unsupported: the topic uses a value TopicConfig cannot express (gzip or snappy
            compression), so trunkline cannot report or copy it faithfully.
    """
    values: dict[str, Any] = {"partitions": partitions}
    for name, key in TOPIC_KEYS.items():
        raw = configs.get(key)
        if raw is None:
            continue  # an old broker without the config: keep TopicConfig's default
        if name in _UNLIMITED:
            number = int(raw)
            values[name] = None if number < 0 else number
        elif name == "cleanup_policy":
            values[name] = _cleanup(topic, raw)
        elif name == "compression":
            found = _COMPRESSION_FROM_KAFKA.get(raw.strip().lower())
            if found is None:
                raise Unsupported(
                    f"topic {topic!r} has compression.type={raw}; trunkline topics are "
                    f"none, lz4 or zstd (backend kafka), so this topic cannot be described"
                )
            values[name] = found
        else:
            values[name] = int(raw)
    return TopicConfig.from_dict(values)


def _cleanup(topic: str, raw: str) -> CleanupPolicy:
    parts = frozenset(p.strip() for p in raw.split(",") if p.strip())
    if parts == {"delete"}:
        return CleanupPolicy.DELETE
    if parts == {"compact"}:
        return CleanupPolicy.COMPACT
    if parts == {"compact", "delete"}:
        return CleanupPolicy.COMPACT_DELETE
    raise Unsupported(
        f"topic {topic!r} has cleanup.policy={raw!r}, which trunkline cannot express "
        "(backend kafka)"
    )


#: Client settings that carry trunkline's guarantees; a client_config may not change them.
OWNED_SETTINGS: dict[str, str] = {
    "acks": "all",
    "enable.idempotence": "true",
    "enable.auto.commit": "false",
    "partitioner": "murmur2_random",
}
_SAME = {"all": {"all", "-1"}, "true": {"true", "1"}, "false": {"false", "0"}}


def check_client_config(client_config: Mapping[str, Any]) -> dict[str, str]:
    """``client_config`` as strings; refuses changes to :data:`OWNED_SETTINGS` and reserved keys."""
    out: dict[str, str] = {}
    for key, value in client_config.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        wanted = OWNED_SETTINGS.get(key)
        if wanted is not None and text.lower() not in _SAME.get(wanted, {wanted}):
            raise ConfigError(
                f"client_config sets {key}={value!r}; the Kafka hub needs {key}={wanted} "
                "(produce is acknowledged only once every in-sync replica has the records, "
                "without duplicates, and placed by Kafka's Java partitioner)"
            )
        if key in {"bootstrap.servers", "group.id", "on_delivery", "logger"}:
            raise ConfigError(
                f"client_config may not set {key!r}: the Kafka hub sets it from its arguments"
            )
        out[key] = text
    return out
