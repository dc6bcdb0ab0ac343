"""A planner wired to a project: its catalog, its hub, its topics' layouts, its engines."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from trunkline.engines import open_engines
from trunkline.engines._topics import (
    RAW,
    TopicLayout,
    contract_fields,
    envelope_of,
    json_schema_fields,
)
from trunkline.errors import SchemaError
from trunkline.planner import Planner
from trunkline.project import Project


class TopicLayouts:
    """What each topic of a project holds: from its contract, else its registered schema."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self._cache: dict[str, TopicLayout] = {}

    def __call__(self, topic: str) -> TopicLayout:
        if topic not in self._cache:
            self._cache[topic] = self._layout(topic)
        return self._cache[topic]

    def _layout(self, topic: str) -> TopicLayout:
        loaded = self._project.contracts.load(topic)
        if loaded is not None:
            fields = contract_fields(loaded.contract.object.properties)
            path = self._project.contracts.path(topic)
            return TopicLayout(fields, f"contract {path}", envelope_of(fields))
        with contextlib.suppress(SchemaError):
            registered = self._project.registry.get_version(f"{topic}-value")
            if registered.schema.schema_type.value == "JSON":
                fields = json_schema_fields(registered.text)
                if fields:
                    origin = f"registry {registered.subject} v{registered.version}"
                    return TopicLayout(fields, origin, envelope_of(fields))
        return RAW


def open_planner(
    project: Project,
    *,
    spark: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Planner:
    """A planner over ``project``'s catalog (hub topics synced first) and engines.

    Args:
        spark: Spark settings (``{}`` for local defaults) to add Spark as an engine.
        env: where DSN passwords come from (``os.environ`` by default).
    """
    project.sync_catalog()
    layouts = TopicLayouts(project)
    engines = open_engines(
        project.meta.list_systems(),
        hub=project.hub,
        layouts=layouts,
        env=os.environ if env is None else env,
        spark=spark,
    )
    return Planner(project.meta, engines, layouts)
