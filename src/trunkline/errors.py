"""Every error trunkline raises, in one tree.

```
TrunklineError                  root; `retryable` tells retry policies whether to try again
├── ConfigError                 a project file, CLI argument or connector config is wrong (exit 2)
│   └── MissingDependency       an optional extra is not installed; names the pip command
├── HubError                    the log hub refused or failed an operation
│   ├── TopicNotFound
│   ├── TopicExists
│   ├── PartitionNotFound
│   ├── InvalidRecord           a record or batch does not fit the topic (e.g. no key on a
│   │                           compacted topic, value larger than the topic allows)
│   ├── OffsetOutOfRange        a fetch below the log start or beyond the log end
│   ├── CorruptSegment          a checksum failed inside the log; names the file and offset
│   ├── StorageFull             the disk is full (ENOSPC); retryable once space is back
│   ├── NotAssigned             a consumer touched a partition it does not own (rebalanced)
│   └── Unsupported             the backend cannot do this; says which backend and why
└── MetaError                   the metadata store failed
    ├── NotFound                a catalog entry (system, dataset) does not exist
    ├── AmbiguousName           a short dataset name matches several datasets; lists them
    └── MetaUnavailable         the store cannot be reached or stayed locked; retryable
```

Driver errors (sqlite3, SQLAlchemy, psycopg, confluent-kafka) are translated into this tree
once, at the boundary where trunkline calls the driver, with ``raise ... from exc``.
Messages say what was expected, what was found and where.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousName",
    "ConfigError",
    "CorruptSegment",
    "HubError",
    "InvalidRecord",
    "MetaError",
    "MetaUnavailable",
    "MissingDependency",
    "NotAssigned",
    "NotFound",
    "OffsetOutOfRange",
    "PartitionNotFound",
    "StorageFull",
    "TopicExists",
    "TopicNotFound",
    "TrunklineError",
    "Unsupported",
]


class TrunklineError(Exception):
    """Root of every error trunkline raises on purpose."""

    #: Whether the same call may succeed if simply tried again later.
    retryable: bool = False


class ConfigError(TrunklineError):
    """A project file, a CLI argument or a connector config is invalid.

    Raised before anything is written; the CLI exits with code 2.
    """


class MissingDependency(ConfigError):
    """An optional dependency is not installed.

    Example:
        >>> raise MissingDependency("psycopg", extra="postgres")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trunkline.errors.MissingDependency: this needs the 'psycopg' package; install it ...
    """

    def __init__(self, package: str, *, extra: str) -> None:
        super().__init__(
            f"this needs the {package!r} package; install it with: pip install 'trunkline[{extra}]'"
        )
        self.package = package
        self.extra = extra


class HubError(TrunklineError):
    """The hub refused or failed an operation."""


class TopicNotFound(HubError):
    """The topic does not exist."""


class TopicExists(HubError):
    """A topic with that name exists already."""


class PartitionNotFound(HubError):
    """The partition number is outside the topic's partitions."""


class InvalidRecord(HubError):
    """A record or batch does not fit the topic it was produced to."""


class OffsetOutOfRange(HubError):
    """A fetch asked for an offset the partition does not hold (any more)."""

    def __init__(self, message: str, *, start: int, end: int, requested: int) -> None:
        super().__init__(message)
        self.start = start
        self.end = end
        self.requested = requested


class CorruptSegment(HubError):
    """A checksum failed inside a segment; the message names the file and byte position."""

    def __init__(self, message: str, *, path: str, position: int) -> None:
        super().__init__(message)
        self.path = path
        self.position = position


class StorageFull(HubError):
    """The disk holding the hub is full; nothing of the failed write was acknowledged."""

    retryable = True


class NotAssigned(HubError):
    """A consumer used a partition the group no longer assigns to it."""

    retryable = True


class Unsupported(HubError):
    """The backend cannot perform the operation."""


class MetaError(TrunklineError):
    """The metadata store failed."""


class NotFound(MetaError):
    """A catalog entry does not exist."""


class AmbiguousName(MetaError):
    """A short name matches more than one dataset; ``candidates`` are their qualified names."""

    def __init__(self, message: str, *, candidates: tuple[str, ...]) -> None:
        super().__init__(message)
        self.candidates = candidates


class MetaUnavailable(MetaError):
    """The metadata database cannot be reached, or stayed locked past the busy timeout."""

    retryable = True
