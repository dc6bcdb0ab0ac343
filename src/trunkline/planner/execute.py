"""execute: run a plan's steps on their engines and move Arrow between them.

Steps run as soon as their inputs are ready; steps of different engines run at the same
time (a PostgreSQL fetch overlaps a topic scan), steps of one engine one after another.
A semi-join key set larger than :data:`MAX_KEYS` is not sent: its filter only reduces, so
the step runs without it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import pyarrow as pa
from sqlglot import exp

from trunkline.engines.base import Engine, Fragment
from trunkline.errors import EngineError
from trunkline.planner.build_steps import MAX_KEYS
from trunkline.planner.plan import Actual, Plan, PlanStep


def _without_keys(query: exp.Query, relation: str) -> exp.Query:
    """``query`` with its ``IN (SELECT key FROM relation)`` filter made TRUE."""

    def drop(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.In) and node.args.get("query") is not None:
            inner = node.args["query"]
            select = inner.this if isinstance(inner, exp.Subquery) else inner
            source = select.args.get("from_") if isinstance(select, exp.Select) else None
            if source is not None and source.this.name == relation:
                return exp.true()
        return node

    dropped = query.copy().transform(drop)
    assert isinstance(dropped, exp.Query)
    return dropped


def _run_step(engine: Engine, step: PlanStep, results: Mapping[str, pa.Table]) -> pa.Table:
    if step.same_as is not None:
        return results[step.same_as]
    query = step.query
    inputs = {}
    for step_id, relation in step.inputs.items():
        table = results[step_id]
        if step_id in step.key_inputs and table.num_rows > MAX_KEYS:
            query = _without_keys(query, relation)
            continue
        inputs[relation] = table
    return engine.run(Fragment(query, step.sources, inputs))


def execute(plan: Plan, engines: Mapping[str, Engine]) -> pa.Table:
    """Run ``plan``; returns the result and records each step's actual rows, bytes, time.

    Raises:
        EngineError: a step failed; the message names the step and its engine.
    """
    results: dict[str, pa.Table] = {}
    pending = list(plan.steps)
    running: dict[Future[pa.Table], tuple[PlanStep, float]] = {}
    busy: set[str] = set()
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="trunkline-step") as pool:
        while pending or running:
            for step in list(pending):
                ready = all(i in results for i in step.inputs)
                if ready and step.same_as is not None:
                    pending.remove(step)
                    results[step.id] = results[step.same_as]
                    step.actual = Actual(rows=0, bytes=0, seconds=0.0)
                    continue
                if ready and step.engine not in busy:
                    pending.remove(step)
                    busy.add(step.engine)
                    engine = engines[step.engine]
                    future = pool.submit(_run_step, engine, step, dict(results))
                    running[future] = (step, time.perf_counter())
            if not running:
                raise EngineError("the plan's steps wait on each other", engine="planner")
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                step, started = running.pop(future)
                busy.discard(step.engine)
                try:
                    table = future.result()
                except EngineError as exc:
                    for other in running:
                        other.cancel()
                    raise EngineError(
                        f"step {step.id} ({step.role} on {step.engine}) failed: {exc}",
                        engine=exc.engine,
                        retryable=exc.retryable,
                    ) from exc
                step.actual = Actual(
                    rows=table.num_rows, bytes=table.nbytes, seconds=time.perf_counter() - started
                )
                results[step.id] = table
    result = results[plan.result.id]
    if plan.output_names and len(plan.output_names) == result.num_columns:
        result = result.rename_columns(plan.output_names)
    return result
