"""Figures of running connectors: counters, gauges, time shares, and their Prometheus text.

Each task has one :class:`TaskMetrics`. The task says what it is doing (``busy``,
``idle``, ``backpressured``) as it goes; the time in each activity adds up, and
:meth:`TaskMetrics.sample` turns the totals into rates and shares over the last
:data:`WINDOW` seconds: the leading indicators of a pipeline about to fail (a sink busy
all the time, or backpressured, or checkpoints growing slower and bigger).

:func:`prometheus_text` exports the figures ``trunkline status`` shows, per connector
(labels ``connector``, ``kind``, ``type``):

- ``trunkline_connector_up{state}``: 1 while it runs; ``trunkline_rows_per_second``;
  ``trunkline_time_share{activity}``: busy, idle, backpressured;
- ``trunkline_<counter>_total`` for every counter: ``records``, ``dead_letters`` and
  ``restarts`` always (0 until counted), others (``bytes``, ``checkpoints``, ...) once
  counted;
- ``trunkline_<gauge>`` for every gauge, once set: ``lag_records`` and ``lag_seconds`` (of a
  sink or flow), ``backlog_<unit>`` (of a source), ``checkpoint_seconds``,
  ``checkpoint_bytes``, ...;
- ``trunkline_last_error_timestamp_seconds``: when the last error happened (its message is
  in ``trunkline status``: free text makes a poor label);

and per pipeline whose sink runs in the process (labels ``pipeline``, named as ``trunkline
status`` names it, and ``sink``), where its lag comes from (:mod:`trunkline.runtime._lag`)
as a state set: ``trunkline_pipeline_lag_origin{origin}`` is 1 for the origin and 0 for
each other one, so that every series stays put while the origin moves.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from trunkline.runtime._lag import ORIGINS

__all__ = ["ACTIVITIES", "WINDOW", "TaskMetrics", "prometheus_text"]

ACTIVITIES = ("busy", "idle", "backpressured")
#: Seconds over which rates and time shares are computed.
WINDOW = 30.0
#: Counters ``trunkline status`` shows as 0 before they are counted; exported likewise.
ALWAYS_COUNTED = ("records", "dead_letters", "restarts")


@dataclass
class _Sample:
    at: float
    records: float
    times: dict[str, float]


@dataclass
class TaskMetrics:
    """The figures of one connector task in this process (thread-safe)."""

    name: str
    kind: str  # source or sink
    type: str  # the connector type, e.g. duckdb
    state: str = "starting"
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    last_error: str = ""
    last_error_at: float | None = None
    position: Any = None
    _activity: str = "idle"
    _since: float = field(default_factory=time.monotonic)
    _times: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ACTIVITIES, 0.0))
    _samples: deque[_Sample] = field(default_factory=lambda: deque(maxlen=64))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what connectors call (the Metrics protocol) ------------------------------------

    def count(self, name: str, value: float = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + value

    def gauge(self, name: str, value: float) -> None:
        with self._lock:
            self.gauges[name] = value

    # -- what tasks call ------------------------------------------------------------------

    def activity(self, activity: str) -> None:
        """From now on the task is ``activity`` (busy, idle or backpressured)."""
        with self._lock:
            now = time.monotonic()
            self._times[self._activity] += now - self._since
            self._activity, self._since = activity, now

    def set_state(self, state: str) -> None:
        with self._lock:
            self.state = state

    def error(self, message: str) -> None:
        with self._lock:
            self.last_error = message
            self.last_error_at = time.time()

    def totals(self) -> dict[str, float]:
        with self._lock:
            times = dict(self._times)
            times[self._activity] += time.monotonic() - self._since
            return times

    def sample(self) -> dict[str, Any]:
        """The task's figures now, with rates and shares over the last WINDOW seconds."""
        times = self.totals()
        with self._lock:
            now = time.monotonic()
            records = self.counters.get("records", 0.0)
            self._samples.append(_Sample(now, records, times))
            while len(self._samples) > 2 and now - self._samples[0].at > WINDOW:
                self._samples.popleft()
            first = self._samples[0]
            span = now - first.at
            shares = dict.fromkeys(ACTIVITIES, 0.0)
            rate = 0.0
            if span > 0:
                rate = (records - first.records) / span
                spent = {a: times[a] - first.times[a] for a in ACTIVITIES}
                total = sum(spent.values()) or 1.0
                shares = {a: round(spent[a] / total, 3) for a in ACTIVITIES}
            elif sum(times.values()):
                total = sum(times.values())
                shares = {a: round(times[a] / total, 3) for a in ACTIVITIES}
            return {
                "name": self.name,
                "kind": self.kind,
                "type": self.type,
                "state": self.state,
                "rows_per_s": round(rate, 1),
                "share": shares,
                "counters": dict(self.counters),
                "gauges": dict(self.gauges),
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "position": self.position,
            }


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """``value`` in full: ``:g`` would round 12,345,678 records to 1.23457e+07."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _metric_name(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def prometheus_text(
    tasks: Iterable[dict[str, Any]], pipelines: Iterable[dict[str, Any]] = ()
) -> str:
    """The Prometheus text exposition (version 0.0.4) of task samples and pipeline lags.

    Args:
        tasks: samples (:meth:`TaskMetrics.sample`).
        pipelines: :func:`~trunkline.runtime._lag.lag_origin` answers.

    Example:
        >>> print(prometheus_text([{"name": "w", "kind": "sink", "type": "duckdb",
        ...     "state": "running", "rows_per_s": 5.0, "share": {"busy": 0.5},
        ...     "counters": {"records": 10}, "gauges": {"lag_records": 3}}]))
        ... # doctest: +ELLIPSIS
        # HELP trunkline_connector_up 1 if the connector runs in this process.
        # TYPE trunkline_connector_up gauge
        trunkline_connector_up{connector="w",kind="sink",type="duckdb",state="running"} 1
        ...
        trunkline_records_total{connector="w",kind="sink",type="duckdb"} 10
        ...
        >>> print(prometheus_text([], [{"pipeline": "o -> w", "sink": "w", "origin": "sink"}]))
        ... # doctest: +ELLIPSIS
        # HELP trunkline_pipeline_lag_origin ...
        # TYPE trunkline_pipeline_lag_origin gauge
        trunkline_pipeline_lag_origin{pipeline="o -> w",sink="w",origin="source"} 0
        trunkline_pipeline_lag_origin{pipeline="o -> w",sink="w",origin="hub"} 0
        trunkline_pipeline_lag_origin{pipeline="o -> w",sink="w",origin="sink"} 1
        ...
    """
    families: dict[str, tuple[str, str, list[str]]] = {}

    def add(name: str, kind: str, help_text: str, labels: str, value: float) -> None:
        family = families.setdefault(name, (kind, help_text, []))
        family[2].append(f"{name}{{{labels}}} {_number(value)}")

    for task in tasks:
        labels = (
            f'connector="{_escape(task["name"])}",kind="{_escape(task["kind"])}",'
            f'type="{_escape(task["type"])}"'
        )
        running = 1 if task["state"] in ("running", "backpressured") else 0
        add(
            "trunkline_connector_up",
            "gauge",
            "1 if the connector runs in this process.",
            f'{labels},state="{_escape(task["state"])}"',
            running,
        )
        add(
            "trunkline_rows_per_second",
            "gauge",
            f"Records per second over the last {WINDOW:g} s.",
            labels,
            task["rows_per_s"],
        )
        for activity, share in sorted(task.get("share", {}).items()):
            add(
                "trunkline_time_share",
                "gauge",
                "Share of time busy, idle or backpressured.",
                f'{labels},activity="{activity}"',
                share,
            )
        counters = {**dict.fromkeys(ALWAYS_COUNTED, 0), **task.get("counters", {})}
        for counter, value in sorted(counters.items()):
            add(
                f"trunkline_{_metric_name(counter)}_total",
                "counter",
                f"Total {counter.replace('_', ' ')}.",
                labels,
                value,
            )
        for gauge, value in sorted(task.get("gauges", {}).items()):
            add(
                f"trunkline_{_metric_name(gauge)}",
                "gauge",
                gauge.replace("_", " ").capitalize() + ".",
                labels,
                value,
            )
        if task.get("last_error_at") is not None:
            add(
                "trunkline_last_error_timestamp_seconds",
                "gauge",
                "Unix time of the last error (its message is in trunkline status).",
                labels,
                task["last_error_at"],
            )
    for lag in pipelines:
        labels = f'pipeline="{_escape(lag["pipeline"])}",sink="{_escape(lag["sink"])}"'
        for origin in ORIGINS:
            add(
                "trunkline_pipeline_lag_origin",
                "gauge",
                "1 for where the pipeline's lag comes from (source, hub, sink; none, or "
                "unknown while its sink has no figures), 0 for the others.",
                f'{labels},origin="{origin}"',
                1 if lag["origin"] == origin else 0,
            )
    lines = []
    for name, (kind, help_text, samples) in families.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
    return "\n".join(lines) + "\n"
