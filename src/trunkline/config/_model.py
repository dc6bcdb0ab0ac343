"""What ``trunkline.yaml`` may contain: the hub, the metadata store, topics, connectors, flows.

Field descriptions are the documentation (``trunkline config explain`` prints them), so they
are written for users. After validation, durations are milliseconds and sizes bytes.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from trunkline.config._base import ConfigModel
from trunkline.config._explain import TypeDoc
from trunkline.config._problems import invalid
from trunkline.config._units import (
    Duration,
    DurationOrForever,
    Size,
    SizeOrUnlimited,
    size_at_least,
)
from trunkline.errors import ConfigError, MissingDependency
from trunkline.hub import CleanupPolicy, Compression, TopicConfig
from trunkline.hub._types import check_topic_name
from trunkline.plugins import Registry

__all__ = [
    "DEFAULT_META_URL",
    "ConnectorSpec",
    "EmbeddedHub",
    "FlowSpec",
    "HubConfig",
    "KafkaHub",
    "ProjectConfig",
    "SinkSpec",
    "SourceSpec",
    "TopicSpec",
]

DEFAULT_META_URL = "sqlite:///.trunkline/meta.db"

#: One source of truth for topic defaults: the hub's own.
_TOPIC_DEFAULTS = TopicConfig()


class EmbeddedHub(ConfigModel):
    """The embedded hub: a durable log in local files, for one machine."""

    backend: Literal["embedded"] = Field(
        "embedded", description="Which hub to use: 'embedded' keeps the log in local files."
    )
    path: Path = Field(
        Path(".trunkline/hub"),
        description="Directory holding the log; relative paths start at the project directory.",
    )
    ack: Literal["fsync", "written"] = Field(
        "fsync",
        description="When a produce is acknowledged: 'fsync' once on disk (survives power "
        "loss), 'written' once handed to the OS (survives a crash of the process only).",
    )


_BOOTSTRAP = re.compile(r"^[A-Za-z0-9._\[\]:-]+:[0-9]{1,5}(,[A-Za-z0-9._\[\]:-]+:[0-9]{1,5})*$")


def _check_bootstrap(value: Any) -> Any:
    if isinstance(value, str) and not _BOOTSTRAP.match(value.strip()):
        raise invalid("a comma-separated list of host:port, such as '127.0.0.1:9092'")
    return value.strip() if isinstance(value, str) else value


class KafkaHub(ConfigModel):
    """Apache Kafka: the hub for projects that outgrow one machine."""

    backend: Literal["kafka"] = Field(
        description="Which hub to use: 'kafka' keeps the log in an Apache Kafka cluster."
    )
    bootstrap: Annotated[str, BeforeValidator(_check_bootstrap)] = Field(
        description="The cluster's bootstrap servers as host:port[,host:port...]."
    )
    group_protocol: Literal["consumer", "classic"] = Field(
        "consumer",
        description="Consumer group protocol: 'consumer' (KIP-848, Kafka 4's default) or "
        "'classic'.",
    )
    client_config: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka settings (e.g. security.protocol, sasl.mechanism); "
        "put secrets in ${VAR}. Settings trunkline relies on (acks, idempotence, "
        "partitioner, group.id, auto-commit) cannot be changed here.",
    )


#: The hub section, chosen by ``backend``. A new backend is a model with its own
#: ``backend: Literal[...]`` field, added to this union.
HubConfig = Annotated[EmbeddedHub | KafkaHub, Field(discriminator="backend")]


_META_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg://")
_META_EXPECTED = (
    "a SQLAlchemy URL starting with 'sqlite:///', 'postgresql://' or 'postgresql+psycopg://'"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")


def _check_meta_url(value: Any) -> Any:
    # The URL may hold a password, so errors describe it by its scheme only.
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        raise invalid(_META_EXPECTED)
    if any(value.startswith(s) and len(value) > len(s) for s in _META_SCHEMES):
        return value
    scheme, separator, _ = value.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        raise invalid(_META_EXPECTED, found="a value that is not a URL")
    hint = ""
    if scheme == "sqlite":
        hint = "write sqlite:///relative/path.db or sqlite:////absolute/path.db"
    elif scheme.startswith("postgres"):
        hint = "write postgresql://... or postgresql+psycopg://... (psycopg 3)"
    found = f"a URL starting with {scheme + '://'!r}"
    raise invalid(_META_EXPECTED, found=found, hint=hint)


MetaURL = Annotated[
    SecretStr,
    BeforeValidator(_check_meta_url),
    TypeDoc("SQLAlchemy URL (secret)", lambda v: v.get_secret_value()),
]


def _check_partitions(value: Any) -> Any:
    # Checked by hand: pydantic would take `true` as 1 and word the error without the bound.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid("an integer >= 1")
    return value


def _normalise_cleanup(value: Any) -> Any:
    # Kafka's cleanup.policy is a list, so "delete,compact" and "compact, delete" mean the same.
    if isinstance(value, str) and "," in value:
        parts = {p.strip() for p in value.split(",")}
        if parts == {"compact", "delete"}:
            return CleanupPolicy.COMPACT_DELETE.value
    return value


def _check_topic_name(name: str) -> str:
    try:
        return check_topic_name(name)
    except ConfigError:
        raise invalid(
            "a topic name of 1-249 letters, digits, '.', '_' or '-' (not '.' or '..')"
        ) from None


Partitions = Annotated[int, BeforeValidator(_check_partitions), TypeDoc("integer >= 1")]
TopicName = Annotated[str, AfterValidator(_check_topic_name)]


class TopicSpec(ConfigModel):
    """A topic: its partitions, retention and compaction (Kafka's meaning), and who owns it."""

    partitions: Partitions = Field(
        _TOPIC_DEFAULTS.partitions,
        description="Number of partitions: the unit of parallelism (one consumer per "
        "partition and group) and of ordering (records with one key stay in order).",
    )
    retention: DurationOrForever = Field(
        _TOPIC_DEFAULTS.retention_ms,
        description="How long records are kept before retention deletes them, or 'forever' "
        "(Kafka's retention.ms).",
    )
    retention_bytes: SizeOrUnlimited = Field(
        _TOPIC_DEFAULTS.retention_bytes,
        description="Largest size of each partition before its oldest segments are deleted, "
        "or 'unlimited' (Kafka's retention.bytes).",
    )
    cleanup: Annotated[CleanupPolicy, BeforeValidator(_normalise_cleanup)] = Field(
        _TOPIC_DEFAULTS.cleanup_policy,
        description="What removes old records: 'delete' (retention), 'compact' (keep the "
        "latest record of each key) or 'compact,delete' (both).",
    )
    segment_bytes: Annotated[Size, size_at_least(1024)] = Field(
        _TOPIC_DEFAULTS.segment_bytes,
        description="Size at which a partition's active segment file is closed and a new "
        "one started; retention and compaction work on closed segments.",
    )
    segment_age: Duration = Field(
        _TOPIC_DEFAULTS.segment_ms,
        description="Age at which the active segment is closed even if not full (Kafka's "
        "segment.ms), so that retention and compaction reach quiet topics too.",
    )
    delete_retention: Duration = Field(
        _TOPIC_DEFAULTS.delete_retention_ms,
        description="How long compaction keeps a tombstone (a deleted key), so that readers "
        "that are behind still see the deletion.",
    )
    min_compaction_lag: Duration = Field(
        _TOPIC_DEFAULTS.min_compaction_lag_ms,
        description="Minimum age of a record before compaction may remove it.",
    )
    max_message_bytes: Annotated[Size, size_at_least(1)] = Field(
        _TOPIC_DEFAULTS.max_message_bytes,
        description="Largest record batch a producer may write to this topic.",
    )
    compression: Compression = Field(
        _TOPIC_DEFAULTS.compression,
        description="Compression of record batches on disk: 'none', 'lz4' or 'zstd'.",
    )
    description: str = Field("", description="What the records of this topic are.")
    owner: str | None = Field(None, description="Who answers for this topic (team or person).")
    tags: tuple[str, ...] = Field((), description="Free-form labels, for search and grouping.")
    contract: str | None = Field(
        None,
        description="Path of the topic's data contract (YAML), relative to the project directory.",
    )
    on_violation: Literal["reject", "dead_letter"] | None = Field(
        None,
        description="What a produce does with records that break the contract: 'reject' the "
        "whole batch, or 'dead_letter' them to '<topic>.dlq' and write the others. Default: "
        "the contract's 'onViolation' custom property, else reject.",
    )

    def to_topic_config(self) -> TopicConfig:
        """The hub's settings for this topic (milliseconds, bytes; None for no limit).

        Example:
            >>> TopicSpec.model_validate({"retention": "36h"}).to_topic_config().retention_ms
            129600000
        """
        return TopicConfig(
            partitions=self.partitions,
            retention_ms=self.retention,
            retention_bytes=self.retention_bytes,
            cleanup_policy=self.cleanup,
            segment_bytes=self.segment_bytes,
            segment_ms=self.segment_age,
            delete_retention_ms=self.delete_retention,
            min_compaction_lag_ms=self.min_compaction_lag,
            max_message_bytes=self.max_message_bytes,
            compression=self.compression,
        )


def _registry(kind: str) -> Registry[type[Any]]:
    # Imported when used: connector modules import this package for ConfigModel, and the
    # attribute is read at call time so that tests can swap in their own registry.
    from trunkline import connectors

    return connectors.SOURCES if kind == "source" else connectors.SINKS


def _error_at(
    title: str, key: str, value: Any, error: PydanticCustomError | str
) -> ValidationError:
    detail: InitErrorDetails = {"type": error, "loc": (key,), "input": value}
    return ValidationError.from_exception_data(title, [detail])


_SETTINGS_DOC = TypeDoc("depends on 'type'", flat=True)


class ConnectorSpec(ConfigModel):
    """A source or sink entry: its ``type`` and the settings its connector defines.

    In the file the settings sit beside ``type``; they are validated by the ``Config`` model
    of the registered connector class, which must extend :class:`ConfigModel`.
    """

    kind: ClassVar[str] = "connector"

    type: str = Field(
        description="The connector to run: a name registered by trunkline or by an "
        "installed plugin package."
    )
    config: Annotated[SerializeAsAny[ConfigModel], _SETTINGS_DOC] = Field(
        description="The connector's settings, beside 'type'; they are documented by the "
        "connector (`trunkline config explain` with its type)."
    )

    @classmethod
    def settings_model(cls, type_name: object) -> builtins.type[ConfigModel] | None:
        """The ``Config`` model of the connector called ``type_name``, if it has one."""
        registry = _registry(cls.kind)
        if not isinstance(type_name, str) or type_name not in registry:
            return None
        try:
            model = getattr(registry.get(type_name), "Config", None)
        except ConfigError:
            return None
        if isinstance(model, type) and issubclass(model, ConfigModel):
            return model
        return None

    @model_validator(mode="before")
    @classmethod
    def _validate_settings(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data  # pydantic reports that a mapping was expected
        if set(data) == {"type", "config"} and isinstance(data["config"], BaseModel):
            return data  # built in code, already validated
        title = cls.__name__
        if "type" not in data:
            raise _error_at(title, "type", data, "missing")
        type_name = data["type"]
        registry = _registry(cls.kind)
        if not isinstance(type_name, str) or type_name not in registry:
            hint = registry.hint(type_name if isinstance(type_name, str) else "")
            raise _error_at(title, "type", type_name, invalid(f"a {cls.kind} type", hint=hint))
        try:
            plugin = registry.get(type_name)
        except MissingDependency as exc:
            error = invalid(
                message=f"this {cls.kind} type needs the {exc.package!r} package, which is "
                "not installed",
                hint=f"install it with: pip install 'trunkline[{exc.extra}]'",
            )
            raise _error_at(title, "type", type_name, error) from None
        except ConfigError as exc:
            raise _error_at(title, "type", type_name, invalid(message=str(exc))) from None
        model = cls.settings_model(type_name)
        if model is None:
            name = getattr(plugin, "__name__", type_name)
            error = invalid(
                message=f"the plugin {name!r} of this {cls.kind} type has no 'Config' model "
                "extending trunkline.config.ConfigModel"
            )
            raise _error_at(title, "type", type_name, error)
        settings = {key: value for key, value in data.items() if key != "type"}
        return {"type": type_name, "config": model.model_validate(settings, context=info.context)}

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Dump in the file's shape (settings beside `type`) so that a dump loads back.
        data = handler(self)
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            return {"type": data["type"], **data["config"]}
        return data


class SourceSpec(ConnectorSpec):
    """A source: a connector that writes into the hub."""

    kind: ClassVar[str] = "source"


class SinkSpec(ConnectorSpec):
    """A sink: a connector that reads from the hub and writes elsewhere."""

    kind: ClassVar[str] = "sink"


def _check_sql(value: str) -> str:
    if not value.strip():
        raise invalid("a non-empty SQL query")
    return value


class FlowSpec(ConfigModel):
    """A flow: a SQL query over catalog names whose result is written somewhere."""

    sql: Annotated[str, AfterValidator(_check_sql)] = Field(
        description="The query, over topic, table and dataset names of the catalog; the "
        "planner decides which engine runs each part."
    )
    into: str | None = Field(
        None, description="Where the result goes, as '<sink>.<table>'; omit to only query."
    )
    freshness: Duration | None = Field(
        None,
        description="How stale the result may get: the flow runs continuously to stay "
        "within it. Omit to run on demand, as a batch.",
    )
    description: str = Field("", description="What the flow computes, for people.")


def _none_as_empty(value: Any) -> Any:
    # A section whose entries are all commented out reads as null: treat it as empty.
    return {} if value is None else value


class ProjectConfig(ConfigModel):
    """A loaded project file, with the directory it came from.

    Build it with :func:`trunkline.config.load_project`; validating data directly needs the
    project directory in the context: ``ProjectConfig.model_validate(data,
    context={"root": path})``.

    Example:
        >>> config = ProjectConfig.model_validate({}, context={"root": Path("/srv/shop")})
        >>> config.hub_path(), config.meta_url()
        (PosixPath('/srv/shop/.trunkline/hub'), 'sqlite:////srv/shop/.trunkline/meta.db')
    """

    hub: HubConfig = Field(
        default_factory=EmbeddedHub,
        description="The log hub every source writes to and every sink reads from.",
    )
    meta: MetaURL = Field(
        SecretStr(DEFAULT_META_URL),
        description="The metadata store (catalog, lineage, schemas) as a SQLAlchemy URL: "
        "sqlite:///relative/path, sqlite:////absolute/path or postgresql://...; put "
        "passwords in ${VAR}.",
    )
    topics: dict[TopicName, TopicSpec] = Field(
        default_factory=dict, description="The hub's topics, by name."
    )
    sources: dict[str, SourceSpec] = Field(
        default_factory=dict, description="Connectors that write into the hub, by name."
    )
    sinks: dict[str, SinkSpec] = Field(
        default_factory=dict, description="Connectors that copy topics elsewhere, by name."
    )
    flows: dict[str, FlowSpec] = Field(
        default_factory=dict, description="SQL transformations run by the planner, by name."
    )

    _root: Path | None = None

    @field_validator("hub", mode="before")
    @classmethod
    def _default_backend(cls, value: Any) -> Any:
        if value is None:
            value = {}
        if isinstance(value, Mapping) and "backend" not in value:
            return {**value, "backend": "embedded"}
        return value

    @field_validator("topics", mode="before")
    @classmethod
    def _empty_topics(cls, value: Any) -> Any:
        # `orders:` with nothing under it is a topic with every default.
        if isinstance(value, Mapping):
            return {name: _none_as_empty(spec) for name, spec in value.items()}
        return _none_as_empty(value)

    @field_validator("sources", "sinks", "flows", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return _none_as_empty(value)

    @model_validator(mode="after")
    def _remember_root(self, info: ValidationInfo) -> Self:
        root = (info.context or {}).get("root")
        if root is not None:
            self._root = Path(root).absolute()
        return self

    @property
    def root(self) -> Path:
        """The absolute project directory; relative paths in the file start here."""
        if self._root is None:
            raise ConfigError(
                "this ProjectConfig has no project directory; load it with load_project() or "
                "validate it with context={'root': directory}"
            )
        return self._root

    def hub_path(self) -> Path:
        """The absolute directory of the embedded hub's log."""
        if not isinstance(self.hub, EmbeddedHub):
            raise ConfigError(f"the {self.hub.backend} hub has no local directory")
        return self.root / self.hub.path

    def meta_url(self) -> str:
        """The metadata store URL, with a relative SQLite path made absolute.

        The result may contain a password: never log it.
        """
        url = self.meta.get_secret_value()
        prefix = "sqlite:///"
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if not rest.startswith(("/", ":memory:")):
                return prefix + str(self.root / rest)
        return url

    def topic_configs(self) -> dict[str, TopicConfig]:
        """Every topic's hub settings, by topic name."""
        return {name: spec.to_topic_config() for name, spec in self.topics.items()}
