"""trunkline: a log hub as the ETL backbone of a data platform.

The public Python API: open a project, use its hub and its catalog.

Example:
    >>> import trunkline
    >>> with trunkline.open_project("shop") as project:  # doctest: +SKIP
    ...     project.hub.produce("orders", [trunkline.Record(b"{}", key=b"1")])
"""

from __future__ import annotations

from trunkline.config import load_project, write_starter
from trunkline.hub import Record, TopicConfig, TopicPartition
from trunkline.project import Project, open_project

__version__ = "0.1.0"

__all__ = [
    "Project",
    "Record",
    "TopicConfig",
    "TopicPartition",
    "__version__",
    "load_project",
    "open_project",
    "write_starter",
]
