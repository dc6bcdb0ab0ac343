"""The project file, ``trunkline.yaml``: its model, loading with positioned errors, the starter.

Example:
    >>> from trunkline.config import load_project
    >>> config = load_project(".")  # the directory or the file  # doctest: +SKIP
    >>> config.topics["orders"].to_topic_config().partitions  # doctest: +SKIP
    3
    >>> config.hub_path()  # absolute, from the project directory  # doctest: +SKIP
    PosixPath('/srv/shop/.trunkline/hub')
"""

from __future__ import annotations

from trunkline.config._base import ConfigModel
from trunkline.config._explain import KeyDoc, explain
from trunkline.config._load import PROJECT_FILE, load_project, load_settings
from trunkline.config._model import (
    DEFAULT_META_URL,
    ConnectorSpec,
    EmbeddedHub,
    FlowSpec,
    HubConfig,
    KafkaHub,
    ProjectConfig,
    SinkSpec,
    SourceSpec,
    TopicSpec,
)
from trunkline.config._problems import Problem, ProjectFileError
from trunkline.config._starter import write_starter
from trunkline.config._units import (
    Duration,
    DurationOrForever,
    Size,
    SizeOrUnlimited,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

__all__ = [
    "DEFAULT_META_URL",
    "PROJECT_FILE",
    "ConfigModel",
    "ConnectorSpec",
    "Duration",
    "DurationOrForever",
    "EmbeddedHub",
    "FlowSpec",
    "HubConfig",
    "KafkaHub",
    "KeyDoc",
    "Problem",
    "ProjectConfig",
    "ProjectFileError",
    "SinkSpec",
    "Size",
    "SizeOrUnlimited",
    "SourceSpec",
    "TopicSpec",
    "explain",
    "format_duration",
    "format_size",
    "load_project",
    "load_settings",
    "parse_duration",
    "parse_size",
    "write_starter",
]
