"""Lineage of a connector, recorded by its task at start: dataset -> topic -> dataset.

A connector names the datasets it reads or writes (:meth:`Source.lineage`,
:meth:`Sink.lineage`); the task registers them in the connector's catalog system, which
``open`` registered, and records one edge per topic with the connector as the job.
Recording the same edges at every start only refreshes them (and adds the run).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from trunkline.connectors.base import ConnectorContext, LineageDataset
from trunkline.errors import NotFound
from trunkline.meta import DatasetRef
from trunkline.project import HUB_SYSTEM

__all__ = ["record_lineage"]


def record_lineage(
    context: ConnectorContext, datasets: Sequence[LineageDataset], routes: Iterable[str] = ()
) -> int:
    """Register ``datasets`` and record their edges; returns how many edges were recorded.

    A source's dataset feeds its topic, and the topics its ``route`` transforms may send
    records to (``routes``); a sink's topic feeds its dataset.
    """
    if context.meta is None:
        return 0
    extra = tuple(routes)
    edges: list[tuple[DatasetRef, DatasetRef]] = []
    for dataset in datasets:
        context.register_dataset(dataset.name, dataset.kind)
        own = DatasetRef(context.name, dataset.name)
        if context.kind == "source":
            edges += [(own, DatasetRef(HUB_SYSTEM, t)) for t in (dataset.topic, *extra)]
        else:
            edges.append((DatasetRef(HUB_SYSTEM, dataset.topic), own))
    recorded = 0
    for source, target in dict.fromkeys(edges):
        try:
            context.record_lineage(source, target)
            recorded += 1
        except NotFound as exc:
            # The runtime registers every topic before tasks start; one deleted meanwhile
            # is the task's problem to report, not the catalog's to stop it for.
            context.log.warning("lineage %s -> %s not recorded: %s", source, target, exc)
    return recorded
