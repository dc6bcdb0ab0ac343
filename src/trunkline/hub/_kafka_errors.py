"""The one place where confluent-kafka's errors become trunkline's (see :mod:`trunkline.errors`).

Every call into the client goes through :func:`kafka_errors` (a context manager) or, for
errors that arrive as values (delivery reports, error events of a consumer), through
:func:`translate`. The mapping is a table from librdkafka's error names to trunkline's error
classes; anything not in the table becomes a plain :class:`~trunkline.errors.HubError`.
Errors that librdkafka marks retriable, and transport errors, come out with
``retryable = True`` so retry policies treat them as "try again later".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from trunkline.errors import (
    ConfigError,
    HubError,
    InvalidRecord,
    NotAssigned,
    OffsetOutOfRange,
    PartitionNotFound,
    TopicExists,
    TopicNotFound,
    TrunklineError,
)

T = TypeVar("T")

# librdkafka error names (KafkaError.name()) -> trunkline error class.
_BY_NAME: dict[str, type[HubError] | type[ConfigError]] = {
    "UNKNOWN_TOPIC_OR_PART": TopicNotFound,
    "_UNKNOWN_TOPIC": TopicNotFound,
    "UNKNOWN_TOPIC_ID": TopicNotFound,
    "TOPIC_ALREADY_EXISTS": TopicExists,
    "INVALID_PARTITIONS": PartitionNotFound,
    "_UNKNOWN_PARTITION": PartitionNotFound,
    "OFFSET_OUT_OF_RANGE": OffsetOutOfRange,
    "_AUTO_OFFSET_RESET": OffsetOutOfRange,
    "MSG_SIZE_TOO_LARGE": InvalidRecord,
    "_MSG_SIZE_TOO_LARGE": InvalidRecord,
    "RECORD_LIST_TOO_LARGE": InvalidRecord,
    "INVALID_RECORD": InvalidRecord,
    "INVALID_MSG": InvalidRecord,
    "INVALID_MSG_SIZE": InvalidRecord,
    "INVALID_TIMESTAMP": InvalidRecord,
    "CORRUPT_MESSAGE": InvalidRecord,
    "INVALID_CONFIG": ConfigError,
    "POLICY_VIOLATION": ConfigError,
    "INVALID_REPLICATION_FACTOR": ConfigError,
    "INVALID_REPLICA_ASSIGNMENT": ConfigError,
    "UNSUPPORTED_COMPRESSION_TYPE": ConfigError,
    "INVALID_GROUP_ID": ConfigError,
    "INVALID_SESSION_TIMEOUT": ConfigError,
    "_INVALID_ARG": ConfigError,
    "UNKNOWN_MEMBER_ID": NotAssigned,
    "ILLEGAL_GENERATION": NotAssigned,
    "REBALANCE_IN_PROGRESS": NotAssigned,
    "STALE_MEMBER_EPOCH": NotAssigned,
    "FENCED_MEMBER_EPOCH": NotAssigned,
    "FENCED_INSTANCE_ID": NotAssigned,
    "_ASSIGNMENT_LOST": NotAssigned,
}

# The cluster could not be reached or was busy: the same call can succeed later.
_TRANSIENT = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_MSG_TIMED_OUT",
        "_RESOLVE",
        "_WAIT_COORD",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "COORDINATOR_NOT_AVAILABLE",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "NOT_COORDINATOR",
        "NOT_CONTROLLER",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "KAFKA_STORAGE_ERROR",
        "THROTTLING_QUOTA_EXCEEDED",
        "_QUEUE_FULL",
        # Metadata still spreading after a topic change, a leader election or a restart.
        "UNKNOWN_LEADER_EPOCH",
        "FENCED_LEADER_EPOCH",
        "OFFSET_NOT_AVAILABLE",
        "REPLICA_NOT_AVAILABLE",
        "PREFERRED_LEADER_NOT_AVAILABLE",
        "REBOOTSTRAP_REQUIRED",
        "UNSTABLE_OFFSET_COMMIT",
        "_NODE_UPDATE",
        "_WAIT_CACHE",
        "_RETRY",
    }
)


def error_name(error: Any) -> str:
    """The librdkafka name of a KafkaError (or of the KafkaError inside a KafkaException)."""
    inner = _inner(error)
    name = getattr(inner, "name", None)
    return str(name()) if callable(name) else type(error).__name__


def _inner(error: Any) -> Any:
    if isinstance(error, BaseException) and error.args and hasattr(error.args[0], "code"):
        return error.args[0]
    return error


def translate(
    error: Any,
    what: str,
    *,
    offsets: tuple[int, int, int] = (-1, -1, -1),
) -> TrunklineError:
    """The trunkline error for a KafkaError or KafkaException raised while doing ``what``.

    Args:
        error: a ``KafkaError``, or an exception carrying one (``KafkaException``).
        what: the operation, for the message (``"produce to 'orders'"``).
        offsets: (start, end, requested) for an OffsetOutOfRange, when the caller knows them.
    """
    inner = _inner(error)
    name = error_name(error)
    detail = inner.str() if hasattr(inner, "str") else str(error)
    message = f"Kafka refused to {what}: {detail} ({name})"
    kind = _BY_NAME.get(name, HubError)
    out: TrunklineError
    if kind is OffsetOutOfRange:
        start, end, requested = offsets
        out = OffsetOutOfRange(message, start=start, end=end, requested=requested)
    else:
        out = kind(message)
    retriable = getattr(inner, "retriable", None)
    if name in _TRANSIENT or (kind is HubError and callable(retriable) and retriable()):
        out.retryable = True
    return out


@contextmanager
def kafka_errors(what: str, *, offsets: tuple[int, int, int] = (-1, -1, -1)) -> Iterator[None]:
    """Run a block of client calls; a KafkaException leaves it as a trunkline error.

    Trunkline errors raised inside pass through unchanged.

    Example:
        >>> with kafka_errors("list topics"):
        ...     pass
    """
    from confluent_kafka import KafkaException

    try:
        yield
    except KafkaException as exc:
        raise translate(exc, what, offsets=offsets) from exc


def retrying(call: Callable[[], T], timeout: float) -> T:
    """``call()``, tried again while it fails with a retryable error, for up to ``timeout`` s.

    For reads only (offsets, configs, descriptions): right after a topic is created or a
    broker restarts, brokers answer "not leader" or "coordinator loading" for a moment.
    """
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        try:
            return call()
        except TrunklineError as exc:
            if not exc.retryable or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
