"""Running a continuous flow (``flows:`` with ``freshness:``) as a task of ``trunkline run``.

One life: open a planner over the project, then run increments
(:class:`~trunkline.federation._continuous.ContinuousFlow`) until told to stop. Each
increment commits on its own (rows and offsets in one DuckDB transaction, or produce then
commit for a topic target), so draining is finishing the increment under way, and a life
that dies anywhere leaves the flow at its last committed increment. While the flow keeps up
it waits half its ``freshness`` between increments; while it is behind it runs the next one
at once.
"""

from __future__ import annotations

import threading

from trunkline.config._model import FlowSpec
from trunkline.project import Project
from trunkline.runtime._metrics import TaskMetrics
from trunkline.runtime._task import Task, TaskEnv

__all__ = ["FlowTask"]

#: The shortest wait between two increments of a flow that keeps up, in seconds.
MIN_INTERVAL = 0.2


class FlowTask(Task):
    """One continuous flow of the project, supervised like a connector."""

    kind = "flow"

    def __init__(
        self, name: str, project: Project, spec: FlowSpec, env: TaskEnv, metrics: TaskMetrics
    ) -> None:
        super().__init__(name, "flow", env, metrics)
        self.project = project
        self.spec = spec
        freshness_ms = spec.freshness or 0
        self.interval = max(MIN_INTERVAL, freshness_ms / 1000 / 2)

    def run_once(self, stop: threading.Event) -> None:
        from trunkline.federation import open_planner
        from trunkline.federation.flows import continuous_flow, register

        planner = open_planner(self.project)
        try:
            flow = continuous_flow(self.project, planner, self.name)
            registered = False
            while not stop.is_set():
                self.metrics.activity("busy")
                done = flow.step()
                if done.records:
                    self.progressed = True
                    self.metrics.count("records", done.records)
                    self.metrics.count("rows_written", done.rows)
                    self.metrics.count("increments")
                    if not registered:
                        plan = planner.plan(self.spec.sql)
                        register(self.project, flow.target, plan, self.name, self.env.run_id)
                        registered = True
                behind, age = flow.lag()
                self.metrics.gauge("lag_records", behind)
                self.metrics.gauge("lag_seconds", age)
                self.metrics.position = {"topic": flow.topic, "plan": done.plan_hash}
                self.metrics.activity("idle")
                if not behind:
                    stop.wait(self.interval)
        finally:
            self.metrics.activity("idle")
            planner.close()
