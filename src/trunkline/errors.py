"""Every error trunkline raises, in one tree.

```
TrunklineError                  root; `retryable` tells retry policies whether to try again
├── ConfigError                 a project file, CLI argument or connector config is wrong (exit 2)
│   ├── MissingDependency       an optional extra is not installed; names the pip command
│   ├── InvalidContract         a data contract file is broken: ``problems`` with file:line:column
│   └── PlanningError           SQL the planner cannot place: unknown or ambiguous names (with
│                               a "did you mean"), a construct no engine runs, types that do
│                               not match across sources
├── HubError                    the log hub refused or failed an operation
│   ├── TopicNotFound
│   ├── TopicExists
│   ├── PartitionNotFound
│   ├── InvalidRecord           a record or batch does not fit the topic (e.g. no key on a
│   │   │                       compacted topic, value larger than the topic allows)
│   │   └── ContractViolation   records break the topic's data contract and its policy is
│   │                           ``reject``: nothing of the batch was written; ``failures``
│   │                           name each rule, field, count and first examples
│   ├── OffsetOutOfRange        a fetch below the log start or beyond the log end
│   ├── CorruptSegment          a checksum failed inside the log; names the file and offset
│   ├── StorageFull             the disk is full (ENOSPC); retryable once space is back
│   ├── NotAssigned             a consumer touched a partition it does not own (rebalanced)
│   └── Unsupported             the backend cannot do this; says which backend and why
├── MetaError                   the metadata store failed
│   ├── NotFound                a catalog entry (system, dataset) does not exist
│   ├── AmbiguousName           a short dataset name matches several datasets; lists them
│   └── MetaUnavailable         the store cannot be reached or stayed locked; retryable
├── EngineError                 an engine (DuckDB, PostgreSQL, Spark, the hub) failed to run a
│                               plan step; names the engine and the step
├── ConnectorError              a source or sink failed; `retryable` may be set per error
│   ├── Backpressure            the target cannot take more now; retry after `retry_after`
│   ├── TargetUnavailable       the target cannot be reached (network, lock, disk); retryable
│   └── IncompatibleChange      the data no longer fits the target (a column changed type);
│                               stops the connector until someone changes the target
├── LeaseLost                   this process no longer holds the lease of an exclusive task
│                               (another took over): its writes (checkpoints) are refused
└── SchemaError                 the schema registry refused a request (each maps to the HTTP
    │                           status and error code of Confluent's API: ``http_status``,
    │                           ``error_code``)
    ├── InvalidSchema           not a valid Avro / JSON Schema, or a reference that does not
    │                           resolve (42201)
    ├── IncompatibleSchema      breaks the subject's compatibility level; ``messages`` name
    │                           the path and rule of each incompatibility (409)
    ├── InvalidSubject          an empty or over-long subject name (42208)
    ├── InvalidVersion          not a version number, ``latest`` or -1 (42202)
    ├── InvalidCompatibility    an unknown compatibility level or JSON policy (42203)
    ├── InvalidMode             a registry mode other than READWRITE (42204)
    ├── ReferenceExists         the version is referenced by another schema (42206)
    ├── SubjectNotFound         no (live) version under that subject (40401)
    ├── VersionNotFound         the subject has no such version (40402)
    ├── SchemaNotFound          no schema with that id, or not under that subject (40403)
    ├── SubjectSoftDeleted      deleting again what is soft-deleted without permanent (40404)
    ├── SubjectNotSoftDeleted   a permanent delete of a subject not soft-deleted first (40405)
    ├── VersionSoftDeleted      the same for one version (40406)
    ├── VersionNotSoftDeleted   the same for one version (40407)
    └── ConfigNotFound          the subject has no compatibility level of its own (40408)
```

Driver errors (sqlite3, SQLAlchemy, psycopg, confluent-kafka) are translated into this tree
once, at the boundary where trunkline calls the driver, with ``raise ... from exc``.
Messages say what was expected, what was found and where.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmbiguousName",
    "Backpressure",
    "ConfigError",
    "ConfigNotFound",
    "ConnectorError",
    "ContractViolation",
    "CorruptSegment",
    "EngineError",
    "HubError",
    "IncompatibleChange",
    "IncompatibleSchema",
    "InvalidCompatibility",
    "InvalidContract",
    "InvalidMode",
    "InvalidRecord",
    "InvalidSchema",
    "InvalidSubject",
    "InvalidVersion",
    "LeaseLost",
    "MetaError",
    "MetaUnavailable",
    "MissingDependency",
    "NotAssigned",
    "NotFound",
    "OffsetOutOfRange",
    "PartitionNotFound",
    "PlanningError",
    "ReferenceExists",
    "SchemaError",
    "SchemaNotFound",
    "StorageFull",
    "SubjectNotFound",
    "SubjectNotSoftDeleted",
    "SubjectSoftDeleted",
    "TargetUnavailable",
    "TopicExists",
    "TopicNotFound",
    "TrunklineError",
    "Unsupported",
    "VersionNotFound",
    "VersionNotSoftDeleted",
    "VersionSoftDeleted",
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


class InvalidContract(ConfigError):
    """A data contract file cannot be used: broken YAML, unknown keys or rule types, rules on
    unknown fields, a regex or SQL expression that does not compile.

    ``problems`` holds each one with its file, line and column (the project file's
    :class:`~trunkline.config.Problem`); ``str()`` lists them one per line.
    """

    def __init__(self, message: str, *, problems: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class PlanningError(ConfigError):
    """The planner cannot place this SQL; nothing was run or written.

    ``construct`` names what stopped it when that is one piece of the query (a function, a
    column, a table); ``candidates`` lists the names meant, for ambiguous names.
    """

    def __init__(
        self, message: str, *, construct: str | None = None, candidates: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.construct = construct
        self.candidates = candidates


class EngineError(TrunklineError):
    """An engine failed to run a step of a plan; the message names the engine and the step.

    Connection failures are ``retryable``; errors in the SQL an engine was sent are not.
    """

    def __init__(self, message: str, *, engine: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.engine = engine
        self.retryable = retryable


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


class ContractViolation(InvalidRecord):
    """Records of a produce break the topic's data contract, and the topic rejects them.

    Nothing of the batch was written. ``failures`` holds one entry per rule broken (see
    :class:`trunkline.contracts.RuleFailure`: rule, field, reason, count, first examples,
    with values of ``pii`` fields never shown); ``records`` is how many records broke at
    least one rule, out of ``total``.
    """

    def __init__(
        self,
        message: str,
        *,
        topic: str,
        failures: tuple[Any, ...],
        records: int,
        total: int,
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.failures = failures
        self.records = records
        self.total = total


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


class SchemaError(TrunklineError):
    """The schema registry refused a request.

    ``http_status`` and ``error_code`` are what Confluent's Schema Registry answers for the
    same condition, so the HTTP API can map every subclass without a table of its own.
    """

    http_status: int = 500
    error_code: int = 50001


class InvalidSchema(SchemaError):
    """The schema text is not valid for its type, or one of its references does not resolve."""

    http_status = 422
    error_code = 42201


class IncompatibleSchema(SchemaError):
    """A schema breaks the subject's compatibility level.

    ``messages`` holds one line per incompatibility, each naming the path, the rule broken
    and the version compared with, e.g.
    ``"READER_FIELD_MISSING_DEFAULT_VALUE at /fields/2: ... (version 3)"``.
    """

    http_status = 409
    error_code = 409

    def __init__(self, message: str, *, messages: tuple[str, ...]) -> None:
        super().__init__(message)
        self.messages = messages


class InvalidSubject(SchemaError):
    """A subject name is empty, too long or holds control characters."""

    http_status = 422
    error_code = 42208


class InvalidVersion(SchemaError):
    """A version is neither a number from 1 to 2**31-1, ``latest`` nor -1."""

    http_status = 422
    error_code = 42202


class InvalidCompatibility(SchemaError):
    """An unknown compatibility level (or JSON compatibility policy)."""

    http_status = 422
    error_code = 42203


class InvalidMode(SchemaError):
    """A registry mode this registry does not support (only READWRITE is)."""

    http_status = 422
    error_code = 42204


class ReferenceExists(SchemaError):
    """The version cannot be deleted: another schema references it."""

    http_status = 422
    error_code = 42206


class SubjectNotFound(SchemaError):
    """The subject has no version (no live one, unless deleted ones were asked for)."""

    http_status = 404
    error_code = 40401


class VersionNotFound(SchemaError):
    """The subject exists but has no such version."""

    http_status = 404
    error_code = 40402


class SchemaNotFound(SchemaError):
    """No schema has that id, or the schema is not registered under the subject."""

    http_status = 404
    error_code = 40403


class SubjectSoftDeleted(SchemaError):
    """A soft delete of a subject whose versions are all soft-deleted already."""

    http_status = 404
    error_code = 40404


class SubjectNotSoftDeleted(SchemaError):
    """A permanent delete of a subject that still has live versions."""

    http_status = 404
    error_code = 40405


class VersionSoftDeleted(SchemaError):
    """A soft delete of a version that is soft-deleted already."""

    http_status = 404
    error_code = 40406


class VersionNotSoftDeleted(SchemaError):
    """A permanent delete of a version that was not soft-deleted first."""

    http_status = 404
    error_code = 40407


class ConfigNotFound(SchemaError):
    """The subject has no compatibility level of its own (it follows the global one)."""

    http_status = 404
    error_code = 40408


class ConnectorError(TrunklineError):
    """A source or a sink failed.

    Connectors translate their driver's errors into this branch once, at the boundary, with
    ``raise ... from exc``. ``retryable`` may be set per error: the runtime retries retryable
    errors with backoff and stops the connector on the others (``trunkline status`` shows why).
    """

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class Backpressure(ConnectorError):
    """The target cannot take more data now; the runtime pauses and retries the batch.

    Nothing of the batch that raised it was written. The runtime stops fetching for this
    sink, releases what it buffered, and tries again after ``retry_after`` seconds from the
    same offsets, so memory stays bounded however long the target is slow.

    Example:
        >>> raise Backpressure("warehouse is compacting", retry_after=2.0)
        Traceback (most recent call last):
        ...
        trunkline.errors.Backpressure: warehouse is compacting (retry after 2.0s)
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(f"{message} (retry after {retry_after:g}s)")
        self.retry_after = max(0.0, float(retry_after))


class TargetUnavailable(ConnectorError):
    """The system a connector reads or writes cannot be reached right now."""

    retryable = True


class IncompatibleChange(ConnectorError):
    """The data changed in a way the target cannot follow, such as a column changing type.

    Not retryable: the connector stops with this message until the target is changed.
    """


class LeaseLost(TrunklineError):
    """The lease of an exclusive task passed to another process; this one must stop it.

    Raised where a write checks the lease's fencing token (a checkpoint save) and finds that
    another holder took over. Retryable: the task stands by and may own the lease again.
    """

    retryable = True
