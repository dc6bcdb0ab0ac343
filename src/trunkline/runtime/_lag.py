"""Where a pipeline's lag comes from: its source, the hub, or a slow sink.

A pipeline is a sink with the topics it reads and the sources of the project that write
them. Its lag is judged from the figures ``trunkline status`` shows: records the sink has
not committed yet are waiting in the hub; if the sink is busy or backpressured most of the
time, the sink is too slow for its input; otherwise it is not taking them (stopped, failed,
restarting, or idle between polls), so they wait in the hub. With no records waiting, input
the sources have not read yet is lag at the source.

``trunkline status`` judges from every process's last status; a ``trunkline run`` process's
``/metrics`` judges, with :func:`lag_origins_here`, the pipelines whose sink it runs, from
its own figures. Both read the figures through :func:`status_row`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from trunkline.config import ProjectConfig
from trunkline.connectors import SOURCES
from trunkline.connectors.base import SinkSettings, SourceSettings
from trunkline.connectors.transforms import route_topics
from trunkline.errors import MissingDependency

__all__ = ["ORIGINS", "Pipeline", "lag_origin", "lag_origins_here", "pipelines", "status_row"]

#: A sink busy (writing) or backpressured this share of its time is slower than its input.
BUSY = 0.8
BACKPRESSURED = 0.2

Origin = Literal["source", "hub", "sink", "none", "unknown"]
#: Every answer of :func:`lag_origin`, for exports that show all of them (one series each).
ORIGINS: tuple[Origin, ...] = get_args(Origin)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Sources -> topics -> one sink, as the project file connects them."""

    sources: tuple[str, ...]
    topics: tuple[str, ...]
    sink: str

    def __str__(self) -> str:
        return " -> ".join(
            part for part in (", ".join(self.sources), ", ".join(self.topics), self.sink) if part
        )


def pipelines(config: ProjectConfig) -> list[Pipeline]:
    """One pipeline per sink, with the sources that write any topic it reads."""
    writes: dict[str, set[str]] = {}
    for name, spec in config.sources.items():
        settings = spec.config
        assert isinstance(settings, SourceSettings)
        # Building a source is cheap and does no I/O (the Source contract); its topics may
        # depend on its settings (postgres_cdc: one per table).
        try:
            topics = SOURCES.get(spec.type)(name, settings).topics()
        except MissingDependency:
            topics = ()  # status still shows the rest; `trunkline run` names the package
        writes[name] = {*topics, *route_topics(settings.transforms)}
    found = []
    for name, sink_spec in config.sinks.items():
        sink_settings = sink_spec.config
        assert isinstance(sink_settings, SinkSettings)
        read = set(sink_settings.topics)
        sources = tuple(sorted(s for s, topics in writes.items() if topics & read))
        found.append(Pipeline(sources, tuple(sink_settings.topics), name))
    return found


def status_row(task: Mapping[str, Any], alive: bool = True, process: str = "") -> dict[str, Any]:
    """The figures of one task's sample (:meth:`TaskMetrics.sample`) as ``trunkline status``
    shows them: the row :func:`lag_origin` judges.

    Args:
        task: the sample, as published in a status document.
        alive: whether the process that published it still runs.
        process: where it runs (``host:pid``).
    """
    gauges = task.get("gauges", {})
    counters = task.get("counters", {})
    state = str(task.get("state", "?"))
    if not alive and state not in ("stopped", "failed"):
        state = "not running (its process is gone)"
    backlog = next((v for k, v in gauges.items() if k.startswith("backlog_")), None)
    return {
        "name": task["name"],
        "kind": task["kind"],
        "type": task["type"],
        "state": state,
        "process": process,
        "rows_per_s": task.get("rows_per_s", 0.0),
        "records": counters.get("records", 0),
        "lag_records": gauges.get("lag_records"),
        "lag_seconds": gauges.get("lag_seconds"),
        "source_backlog": backlog,
        "busy": task.get("share", {}).get("busy", 0.0),
        "backpressured": task.get("share", {}).get("backpressured", 0.0),
        "idle": task.get("share", {}).get("idle", 0.0),
        "checkpoint_seconds": gauges.get("checkpoint_seconds"),
        "checkpoint_bytes": gauges.get("checkpoint_bytes"),
        "dead_letters": counters.get("dead_letters", 0),
        "restarts": counters.get("restarts", 0),
        "last_error": task.get("last_error", ""),
        "position": task.get("position"),
    }


def lag_origins_here(found: list[Pipeline], samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`lag_origin` of each pipeline whose sink runs in this process, from its samples.

    A sink that stands by here runs in another process, which answers for it. Only the
    sources running here are seen: the backlog of one running elsewhere is exported by its
    own process (``trunkline_backlog_*``) and does not make this one answer "source".
    """
    rows = {(s["kind"], s["name"]): status_row(s) for s in samples}
    here = {name for kind, name in rows if kind == "sink"}
    return [
        lag_origin(p, rows)
        for p in found
        if p.sink in here and rows["sink", p.sink]["state"] != "standby"
    ]


def lag_origin(
    pipeline: Pipeline, rows: Mapping[tuple[str, str], Mapping[str, Any]]
) -> dict[str, Any]:
    """Where ``pipeline`` lags, from status rows keyed by (kind, name); see the module."""
    sink = rows.get(("sink", pipeline.sink), {})
    origin: Origin = "none"
    why = ""
    lag = sink.get("lag_records")
    if lag:
        busy, bp = sink.get("busy", 0.0), sink.get("backpressured", 0.0)
        behind = f"{int(lag):,} records ({sink.get('lag_seconds') or 0:.1f}s) behind"
        if busy > BUSY or bp > BACKPRESSURED:
            origin = "sink"
            why = f"sink {pipeline.sink} is slow: busy {busy:.0%}, backpressured {bp:.0%}; {behind}"
        else:
            origin = "hub"
            why = f"{behind} wait in the hub; sink {pipeline.sink} is {sink.get('state')}"
    elif lag is None and "rows_per_s" not in sink:
        origin = "unknown"
        why = f"sink {pipeline.sink}: {sink.get('state', 'never run')}"
    else:
        backlogs = {s: rows.get(("source", s), {}).get("source_backlog") for s in pipeline.sources}
        waiting = [f"{s} ({int(b):,} to read)" for s, b in backlogs.items() if b]
        if waiting:
            origin = "source"
            why = f"input not read yet by {', '.join(waiting)}"
    return {"pipeline": str(pipeline), "sink": pipeline.sink, "origin": origin, "why": why}
