"""A placed plan: its steps, the candidates that were weighed, and what EXPLAIN shows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from trunkline.engines.base import Source


@dataclass
class Actual:
    """What a step did when it ran (``--analyze``)."""

    rows: int
    bytes: int
    seconds: float


@dataclass
class PlanStep:
    """One piece of work on one engine.

    ``output`` is the relation id its result has in the steps that read it; ``inputs`` maps
    the ids of steps it reads to those relation ids.
    """

    id: str
    role: str  # "scan", "join", "subquery", "keys", "final"
    engine: str
    reason: str
    query: exp.Query
    sources: dict[str, Source]
    inputs: dict[str, str]
    output: str
    reads: list[str]
    est_rows: float
    est_bytes: float
    est_seconds: float
    text: str = ""
    boundary: str | None = None
    #: Relation ids of semi-join key sets, by the id of the step that computes them; if a
    #: set turns out too large at run time the filter is dropped (it only reduces).
    key_inputs: dict[str, str] = field(default_factory=dict)
    #: The id of an identical earlier step whose result this one reuses (a table read twice
    #: in one query, with the same columns and filters, is read once).
    same_as: str | None = None
    actual: Actual | None = None


@dataclass
class Candidate:
    """A placement that was costed."""

    name: str
    seconds: float
    chosen: bool = False


@dataclass
class Plan:
    """Where each step of a query runs, and why.

    The last step is the one whose result is the query's. ``hash`` depends only on the
    steps' engines, roles and texts: the same query over the same catalog and statistics
    plans to the same hash.
    """

    sql: str
    optimized: str
    steps: list[PlanStep]
    candidates: list[Candidate]
    not_pushed: list[str]
    statistics: list[dict[str, Any]]
    output_names: list[str]
    hash: str = ""

    def finish(self) -> Plan:
        canonical = [[s.role, s.engine, s.text, sorted(s.inputs.values())] for s in self.steps]
        digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
        self.hash = digest[:16]
        return self

    @property
    def result(self) -> PlanStep:
        return self.steps[-1]

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-able data (``trunkline plan --json``)."""
        chosen = next((c for c in self.candidates if c.chosen), None)
        return {
            "hash": self.hash,
            "sql": self.sql,
            "optimized_sql": self.optimized,
            "estimated_seconds": None if chosen is None else round(chosen.seconds, 6),
            "steps": [
                {
                    "id": s.id,
                    "role": s.role,
                    "engine": s.engine,
                    "reason": s.reason,
                    "sent": s.text,
                    "inputs": sorted(s.inputs),
                    "reads": s.reads,
                    "boundary": s.boundary,
                    "estimated": {
                        "rows": round(s.est_rows),
                        "bytes": round(s.est_bytes),
                        "seconds": round(s.est_seconds, 6),
                    },
                    "actual": None
                    if s.actual is None
                    else {
                        "rows": s.actual.rows,
                        "bytes": s.actual.bytes,
                        "seconds": round(s.actual.seconds, 6),
                    },
                }
                for s in self.steps
            ],
            "candidates": [
                {"name": c.name, "estimated_seconds": round(c.seconds, 6), "chosen": c.chosen}
                for c in self.candidates
            ],
            "not_pushed_down": self.not_pushed,
            "statistics": self.statistics,
        }
