"""The planner as one object: a catalog, engines and a cost model, ready to plan and run."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from trunkline.engines._topics import LayoutLookup
from trunkline.engines.base import Engine
from trunkline.meta import MetaStore
from trunkline.planner.bind import bind
from trunkline.planner.catalog import Catalog
from trunkline.planner.cost import CostModel
from trunkline.planner.execute import execute
from trunkline.planner.optimize import optimize
from trunkline.planner.place import place
from trunkline.planner.plan import Plan


class Planner:
    """Plans SQL over a catalog's names and runs the plans on ``engines``.

    Speed factors come from the metadata store (``trunkline calibrate``) when measured.
    """

    def __init__(self, meta: MetaStore, engines: Sequence[Engine], layouts: LayoutLookup) -> None:
        self.meta = meta
        self.engines = list(engines)
        self.catalog = Catalog(meta, layouts)
        self.costs = CostModel(meta.calibration())

    def plan(self, sql: str) -> Plan:
        """Bind, optimise and place ``sql``. Raises PlanningError for bad input."""
        bound = bind(sql, self.catalog)
        return place(bound, optimize(bound), self.engines, self.costs)

    def run(self, plan: Plan) -> pa.Table:
        """Run a plan; its steps' ``actual`` figures are filled in."""
        return execute(plan, {e.name: e for e in self.engines})

    def query(self, sql: str) -> pa.Table:
        """Plan and run ``sql``."""
        return self.run(self.plan(sql))

    def close(self) -> None:
        for engine in self.engines:
            engine.close()
