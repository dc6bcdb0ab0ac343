"""A trunkline project: its project file, its hub and its metadata store, opened together.

This is the small public Python API the CLI itself uses.

Example:
    >>> import trunkline
    >>> with trunkline.open_project("shop") as project:  # doctest: +SKIP
    ...     project.create_topic("orders")
    ...     project.hub.produce("orders", [trunkline.Record(b'{"id": 1}', key=b"1")])
    ...     with project.hub.consumer("billing", ["orders"]) as consumer:
    ...         for batch in consumer.poll(timeout=1.0):
    ...             print(batch.records.num_rows)
    ...         consumer.commit()
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trunkline.config import EmbeddedHub as EmbeddedHubConfig
from trunkline.config import KafkaHub as KafkaHubConfig
from trunkline.config import ProjectConfig, load_project
from trunkline.errors import ConfigError, NotFound, TopicNotFound, Unsupported
from trunkline.hub import Hub, TopicConfig, TopicDescription
from trunkline.meta import KEEP, Dataset, MetaStore, SchemaRef

if TYPE_CHECKING:
    from trunkline.contracts._attach import Attachment, TopicContracts
    from trunkline.schemas import SchemaRegistry

log = logging.getLogger("trunkline")

#: The catalog's name for the project's own hub; its topics are datasets of this system.
HUB_SYSTEM = "hub"


def _open_embedded(config: ProjectConfig) -> Hub:
    from trunkline.hub.embedded import EmbeddedHub

    settings = config.hub
    assert isinstance(settings, EmbeddedHubConfig)
    hub = EmbeddedHub(config.hub_path(), ack=settings.ack)
    for report in hub.recovery_reports:
        log.warning("%s", report)
    return hub


def _open_kafka(config: ProjectConfig) -> Hub:
    from trunkline.hub.kafka import KafkaHub

    settings = config.hub
    assert isinstance(settings, KafkaHubConfig)
    return KafkaHub(
        settings.bootstrap,
        client_config=settings.client_config,
        group_protocol=settings.group_protocol,
    )


#: How each ``hub.backend`` of the project file is opened (dispatch by table).
HUB_OPENERS: dict[str, Callable[[ProjectConfig], Hub]] = {
    "embedded": _open_embedded,
    "kafka": _open_kafka,
}


@dataclass(frozen=True, slots=True)
class TopicChange:
    """What :meth:`Project.apply_topics` did to one declared topic."""

    topic: str
    action: str  # "created", "altered" or "unchanged"
    changes: Mapping[str, Any]


class Project:
    """An opened project. The hub and the metadata store open on first use."""

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config
        self._hub: Hub | None = None
        self._meta: MetaStore | None = None
        self._contracts: TopicContracts | None = None

    @classmethod
    def open(cls, path: Path | str = ".", *, env: Mapping[str, str] | None = None) -> Project:
        """Load ``trunkline.yaml`` from ``path`` (a directory or the file)."""
        return cls(load_project(path, env=os.environ if env is None else env))

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            backend = self.config.hub.backend
            opener = HUB_OPENERS.get(backend)
            if opener is None:
                raise ConfigError(
                    f"hub backend {backend!r} is not available; known: {', '.join(HUB_OPENERS)}"
                )
            hub = opener(self.config)
            if any(spec.contract for spec in self.config.topics.values()):
                # Every produce (CLI, API, connectors runtime) then checks topic contracts.
                from trunkline.contracts._hub import ContractedHub

                hub = ContractedHub(hub, self.contracts)
            self._hub = hub
        return self._hub

    @property
    def contracts(self) -> TopicContracts:
        """The data contracts of the project's topics (loaded when first used)."""
        if self._contracts is None:
            from trunkline.contracts._attach import TopicContracts

            self._contracts = TopicContracts(self.config, lambda: self.registry)
        return self._contracts

    @property
    def meta(self) -> MetaStore:
        if self._meta is None:
            self._meta = MetaStore.open(self.config.meta_url())
        return self._meta

    @property
    def registry(self) -> SchemaRegistry:
        """The schema registry, kept in the project's metadata store."""
        from trunkline.schemas import SchemaRegistry

        return SchemaRegistry(self.meta)

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()
            self._hub = None
        if self._meta is not None:
            self._meta.close()
            self._meta = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics -----------------------------------------------------------------------

    def topic_config(self, name: str) -> TopicConfig:
        """The declared settings of ``name`` in trunkline.yaml, or the defaults."""
        spec = self.config.topics.get(name)
        return spec.to_topic_config() if spec is not None else TopicConfig()

    def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicDescription:
        """Create a topic (declared settings by default) and register it in the catalog.

        A topic with a contract is created only if the contract is valid and its schema is
        accepted under ``<topic>-value``; the schema is registered with it.
        """
        attachment = self.contracts.prepare(name)
        described = self.hub.create_topic(name, config or self.topic_config(name))
        self._attach(described, attachment, created=True)
        return described

    def _attach(
        self, described: TopicDescription, attachment: Attachment | None, *, created: bool
    ) -> None:
        """Register the contract's schema and the topic's catalog entry; undo a creation if
        the schema cannot be registered, so that nothing is half-registered."""
        if attachment is None:
            self._register(described)
            return
        try:
            registered = attachment.register(self.registry)
        except BaseException:
            if created:
                with contextlib.suppress(TopicNotFound):
                    self.hub.delete_topic(described.name)
            raise
        self._register(described)
        spec = self.config.topics.get(described.name)
        contract = attachment.loaded.contract
        owner = (spec.owner if spec is not None else None) or contract.owner
        self.meta.upsert_dataset(
            HUB_SYSTEM,
            described.name,
            "topic",
            schema_ref=SchemaRef(registered.subject, registered.version),
            owner=owner if owner else KEEP,
        )

    def alter_topic(self, name: str, changes: Mapping[str, Any]) -> TopicDescription:
        described = self.hub.alter_topic(name, changes)
        self._register(described)
        return described

    def delete_topic(self, name: str) -> None:
        self.hub.delete_topic(name)
        with contextlib.suppress(NotFound):
            self.meta.delete_dataset(HUB_SYSTEM, name)

    def apply_topics(self) -> list[TopicChange]:
        """Create the declared topics that are missing; bring the others to their settings."""
        changes = []
        # Every contract is checked before anything changes: a broken one stops the apply.
        attachments = {name: self.contracts.prepare(name) for name in sorted(self.config.topics)}
        existing = set(self.hub.list_topics())
        for name, spec in sorted(self.config.topics.items()):
            wanted = spec.to_topic_config()
            if name not in existing:
                described = self.hub.create_topic(name, wanted)
                self._attach(described, attachments[name], created=True)
                changes.append(TopicChange(name, "created", wanted.to_dict()))
                continue
            current = self.hub.describe_topic(name).config.to_dict()
            diff = {k: v for k, v in wanted.to_dict().items() if current.get(k) != v}
            described = self.hub.alter_topic(name, diff) if diff else self.hub.describe_topic(name)
            self._attach(described, attachments[name], created=False)
            changes.append(TopicChange(name, "altered" if diff else "unchanged", diff))
        return changes

    # -- catalog ----------------------------------------------------------------------

    def _hub_location(self) -> str:
        return str(getattr(self.hub, "path", self.config.hub.backend))

    def _register(self, described: TopicDescription) -> Dataset:
        meta = self.meta
        meta.upsert_system(HUB_SYSTEM, "hub", self._hub_location())
        spec = self.config.topics.get(described.name)
        kwargs: dict[str, Any] = {}
        if spec is not None:
            kwargs = {"owner": spec.owner, "description": spec.description, "tags": spec.tags}
        meta.upsert_dataset(HUB_SYSTEM, described.name, "topic", **kwargs)
        size = sum(p.size_bytes or 0 for p in described.partitions)
        return meta.set_stats(
            HUB_SYSTEM,
            described.name,
            rows=described.records,
            size_bytes=size,
            source="hub offsets",
        )

    def sync_catalog(self) -> list[Dataset]:
        """Make the catalog's hub datasets match the hub's topics (stats included)."""
        registered = []
        topics = set()
        for name in self.hub.list_topics():
            try:
                registered.append(self._register(self.hub.describe_topic(name)))
                topics.add(name)
            except TopicNotFound:
                continue  # deleted meanwhile by another process
            except Unsupported as exc:
                # A shared Kafka cluster holds topics trunkline did not make (gzip ones):
                # they stay as the catalog has them rather than stopping every sync.
                log.warning("catalog: topic %r left as it was: %s", name, exc)
                topics.add(name)
        try:
            known = self.meta.list_datasets(system=HUB_SYSTEM)
        except NotFound:
            known = []
        for dataset in known:
            if dataset.name not in topics:
                self.meta.delete_dataset(HUB_SYSTEM, dataset.name)
        return registered


def open_project(path: Path | str = ".", *, env: Mapping[str, str] | None = None) -> Project:
    """Open the project in ``path``; see :class:`Project`."""
    return Project.open(path, env=env)
