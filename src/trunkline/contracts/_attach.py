"""Which topics have contracts, loading them, and registering their schemas.

:class:`TopicContracts` is what the :class:`~trunkline.project.Project` holds: it reads the
contract paths from the project file, loads each contract when first needed (again when the
file changes), registers its JSON Schema under ``<topic>-value`` and builds the
:class:`Enforcement` the hub wrapper uses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from trunkline.contracts._load import LoadedContract, read_contract
from trunkline.contracts._rules import POLICIES
from trunkline.contracts._schema import json_schema_text, subject_for
from trunkline.contracts._validator import ContractValidator
from trunkline.errors import IncompatibleSchema

if TYPE_CHECKING:
    from trunkline.config import ProjectConfig
    from trunkline.schemas import RegisteredSchema, SchemaRegistry

Policy = Literal["reject", "dead_letter"]


def dead_letter_topic(topic: str) -> str:
    """Where a contracted topic's failing records go: ``<topic>.dlq``."""
    return f"{topic}.dlq"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A topic's contract, loaded and checked against the registry, ready to register."""

    topic: str
    loaded: LoadedContract
    subject: str
    schema: str

    def register(self, registry: SchemaRegistry) -> RegisteredSchema:
        return registry.register(self.subject, self.schema, schema_type="JSON")


@dataclass(slots=True)
class Enforcement:
    """Everything produce needs for one contracted topic."""

    topic: str
    validator: ContractValidator
    schema_id: int
    policy: Policy
    stamp: int
    _registry: Callable[[], SchemaRegistry] = field(repr=False)
    _known_ids: frozenset[int] | None = None

    @property
    def contract_label(self) -> str:
        return self.validator.contract.label

    def known_ids(self) -> frozenset[int]:
        """Schema ids of the subject's versions: values already in the wire format must use
        one of them (a replayed dead letter, a Confluent serializer upstream)."""
        if self._known_ids is None:
            registry = self._registry()
            subject = subject_for(self.topic)
            self._known_ids = frozenset(
                int(registry.get_version(subject, version).id)
                for version in registry.versions(subject)
            )
        return self._known_ids

    def unknown_ids(self, ids: np.ndarray) -> np.ndarray:
        known = np.array(sorted(self.known_ids()), dtype=np.uint32)
        return ~np.isin(ids, known)


class TopicContracts:
    """The contracts of a project's topics, loaded on first use and when their files change."""

    def __init__(self, config: ProjectConfig, registry: Callable[[], SchemaRegistry]) -> None:
        self.config = config
        self._registry = registry
        self._lock = threading.Lock()
        self._enforcements: dict[str, Enforcement] = {}

    def path(self, topic: str) -> Path | None:
        spec = self.config.topics.get(topic)
        if spec is None or spec.contract is None:
            return None
        return self.config.root / spec.contract

    def topics(self) -> list[str]:
        return sorted(name for name, spec in self.config.topics.items() if spec.contract)

    def load(self, topic: str) -> LoadedContract | None:
        """The topic's contract, or None. Raises InvalidContract with positions."""
        path = self.path(topic)
        return None if path is None else read_contract(path)

    def policy(self, topic: str, loaded: LoadedContract) -> Policy:
        spec = self.config.topics.get(topic)
        chosen = getattr(spec, "on_violation", None) or loaded.contract.custom("onViolation")
        return chosen if chosen in POLICIES else "reject"

    def prepare(self, topic: str) -> Attachment | None:
        """Load the topic's contract and check its schema against the subject (no write).

        Raises:
            InvalidContract: the contract file is broken (with file:line:column).
            IncompatibleSchema: the subject's compatibility level refuses the schema.
        """
        loaded = self.load(topic)
        if loaded is None:
            return None
        ContractValidator(loaded.contract)  # compiles: the loader checked it already
        subject = subject_for(topic)
        schema = json_schema_text(loaded.contract)
        report = self._registry().check(subject, schema, schema_type="JSON")
        if not report.compatible:
            raise IncompatibleSchema(
                f"the contract of topic {topic!r} ({loaded.contract.label}) changes the "
                f"schema of {subject!r} in a way its compatibility level "
                f"({report.compatibility}) refuses: " + "; ".join(report.messages),
                messages=report.messages,
            )
        return Attachment(topic, loaded, subject, schema)

    def enforcement(self, topic: str) -> Enforcement | None:
        """What produce to ``topic`` must enforce (None: no contract).

        The schema is registered here if it is not yet (a topic created before its contract
        was attached); registering an existing schema returns its id.
        """
        path = self.path(topic)
        if path is None:
            return None
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = -1  # read_contract reports the missing file
        with self._lock:
            cached = self._enforcements.get(topic)
            if cached is not None and cached.stamp == stamp:
                return cached
            loaded = read_contract(path)
            validator = ContractValidator(loaded.contract)
            registered = self._registry().register(
                subject_for(topic), json_schema_text(loaded.contract), schema_type="JSON"
            )
            made = Enforcement(
                topic,
                validator,
                int(registered.id),
                self.policy(topic, loaded),
                stamp,
                self._registry,
            )
            self._enforcements[topic] = made
            return made
