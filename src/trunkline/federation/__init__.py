"""The federated execution layer wired to a project: registering systems in the catalog and
measuring their statistics, calibrating engines, planning queries, and running flows.

Example:
    >>> import trunkline
    >>> from trunkline.federation import open_planner
    >>> with trunkline.open_project("shop") as project:  # doctest: +SKIP
    ...     planner = open_planner(project)
    ...     print(planner.query("select count(*) from orders"))
"""

from __future__ import annotations

from trunkline.federation.session import TopicLayouts, open_planner

__all__ = ["TopicLayouts", "open_planner"]
