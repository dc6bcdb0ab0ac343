"""The demo's pipeline: CSV files -> the ``files`` source -> hub -> DuckDB and Iceberg sinks,
then a flow over catalog names, planned across engines, with its EXPLAIN.

Payment exports land as CSV files in ``incoming/`` (each with one damaged line, which
ends up in the dead-letter topic with its file and line). The runtime runs in-process
until every file is read and both sinks have caught up, then stops cleanly. The result is
read back from the DuckDB file and from the Iceberg table (through the catalog's Iceberg
system), and the flow ``large_payments_by_method`` runs over the Iceberg table: the planner
scans it on the Iceberg engine with the filter pushed into the scan and aggregates in
DuckDB, and writes the result into the warehouse.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from trunkline.demo._data import EPOCH_MS, MONTH_MS
from trunkline.federation import open_planner
from trunkline.federation.catalog import add_system
from trunkline.federation.flows import run_flow
from trunkline.planner.explain import explain
from trunkline.project import Project
from trunkline.runtime import Runner, RunOptions, read_dead_letters

__all__ = ["FLOW", "PIPELINE", "FlowResult", "PipelineResult", "run_pipeline"]

#: The flow the demo plans, explains and runs.
FLOW = "large_payments_by_method"
ICEBERG_COUNT = "select count(*) as n from lakehouse.demo.payments"

#: Appended to the demo's project file.
PIPELINE = """\
sources:
  payment_exports:
    type: files
    path: incoming
    glob: "payments-*.csv"
    topic: payments
    key: payment_id
    settle: 0s
    poll_interval: 100ms
sinks:
  warehouse:
    type: duckdb
    path: warehouse.duckdb
    topics: [payments]
    mode: upsert
    key: [payment_id]
    linger: 200ms
  lakehouse:
    type: iceberg
    warehouse: lakehouse
    namespace: demo
    topics: [payments]
    mode: upsert
    key: [payment_id]
    commit_interval: 1s
    linger: 200ms
flows:
  large_payments_by_method:
    description: Payments over 50 EUR per method, computed from the Iceberg table.
    sql: >-
      select method, count(*) as payments, round(sum(amount), 2) as amount
      from lakehouse.demo.payments where amount > 50 group by method
    into: warehouse.main.large_payments_by_method
"""

METHODS = ["card", "paypal", "sepa", "klarna", "apple_pay"]
METHOD_WEIGHTS = [0.45, 0.2, 0.15, 0.1, 0.1]


@dataclass
class FlowResult:
    """The demo's planned flow: its SQL, its EXPLAIN, the engines it ran on, its result."""

    name: str
    sql: str
    into: str
    explain: str
    engines: list[str]
    rows: list[tuple[str, int, float]]


@dataclass
class PipelineResult:
    """What the pipeline did."""

    files: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    table_rows: int = 0
    iceberg_rows: int = 0
    flow: FlowResult | None = None
    dead_letters: list[tuple[str, str]] = field(default_factory=list)
    by_method: list[tuple[str, int, float]] = field(default_factory=list)
    lineage: list[str] = field(default_factory=list)


def write_exports(folder: Path, rows: int, files: int = 4, seed: int = 7) -> int:
    """CSV exports of ``rows`` payments in ``files`` files, one damaged line in each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    numbers = np.arange(1, rows + 1)
    ids = pc.binary_join_element_wise(
        "p-", pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=7, padding="0"), ""
    )
    # A few payments appear twice (a retried export): the upsert keeps one row each.
    repeat = rng.integers(0, rows, max(1, rows // 50))
    index = np.concatenate([np.arange(rows), repeat])
    table = pa.table(
        {
            "payment_id": ids,
            "order_id": pc.binary_join_element_wise(
                "o-",
                pc.utf8_lpad(
                    pc.cast(pa.array(rng.integers(1, rows * 2, rows)), pa.string()),
                    width=6,
                    padding="0",
                ),
                "",
            ),
            "method": pa.array(METHODS).take(
                pa.array(rng.choice(len(METHODS), size=rows, p=METHOD_WEIGHTS))
            ),
            "amount": pa.array(np.round(rng.lognormal(3.5, 0.8, rows), 2)),
            "paid_at": pa.array(np.sort(EPOCH_MS + rng.integers(0, MONTH_MS, rows))).cast(
                pa.timestamp("ms", tz="UTC")
            ),
        }
    ).take(pa.array(index))
    per_file = -(-table.num_rows // files)
    past = time.time() - 5
    for n in range(files):
        part = table.slice(n * per_file, per_file)
        path = folder / f"payments-{n + 1:02d}.csv"
        sink = pa.BufferOutputStream()
        pcsv.write_csv(part, sink)
        text = sink.getvalue().to_pybytes()
        # One damaged line in the middle of each file, as real exports have.
        lines = text.split(b"\n")
        lines.insert(len(lines) // 2, b'"p-damaged","o-1",card')
        path.write_bytes(b"\n".join(lines))
        os.utime(path, (past, past))
    return int(table.num_rows)


def run_pipeline(project: Project, rows: int, timeout: float = 60.0) -> PipelineResult:
    """Run the project's connectors until the exports are in DuckDB and Parquet."""
    result = PipelineResult(files=4)
    expected = write_exports(project.root / "incoming", rows, files=result.files)
    runner = Runner(project, RunOptions(status_interval=0.5))
    started = time.perf_counter()
    runner.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not _done(project, runner, expected, result.files):
            time.sleep(0.1)
    finally:
        runner.shutdown()
    result.seconds = time.perf_counter() - started
    samples = {s["name"]: s for s in runner.samples()}
    result.rows_written = int(samples["payment_exports"]["counters"].get("records", 0))
    result.dead_letters = [
        (e.origin, e.error) for e in read_dead_letters(project.hub, "payment_exports.dlq")
    ]
    with duckdb.connect(str(project.root / "warehouse.duckdb"), read_only=True) as con:
        count = con.sql("SELECT count(*) FROM payments").fetchone()
        result.table_rows = int(count[0]) if count else 0
        result.by_method = [
            (str(m), int(n), float(a))
            for m, n, a in con.sql(
                "SELECT method, count(*), round(sum(amount), 2) FROM payments "
                "GROUP BY method ORDER BY 3 DESC"
            ).fetchall()
        ]
    # The Iceberg table as any reader sees it, through the catalog's Iceberg system.
    add_system(project, "iceberg", "lakehouse", "lakehouse")
    result.iceberg_rows = int(_query(project, ICEBERG_COUNT).column(0)[0].as_py())
    result.flow = run_planned_flow(project, FLOW)
    for dataset in ("warehouse.main.payments", f"warehouse.main.{FLOW}"):
        for edge in project.meta.lineage(dataset, depth=3):
            line = f"{edge.source} -> {edge.target} ({edge.job_kind} {edge.job})"
            if line not in result.lineage:
                result.lineage.append(line)
    return result


def _query(project: Project, sql: str) -> pa.Table:
    planner = open_planner(project)
    try:
        return planner.query(sql)
    finally:
        planner.close()


def run_planned_flow(project: Project, name: str) -> FlowResult:
    """Plan flow ``name`` (the EXPLAIN of ``trunkline plan``), run it, read its target."""
    spec = project.config.flows[name]
    planner = open_planner(project)
    try:
        plan = planner.plan(spec.sql)
    finally:
        planner.close()
    report = run_flow(project, name)
    with duckdb.connect(str(project.root / "warehouse.duckdb"), read_only=True) as con:
        target = con.table(name).select("method, payments, amount")
        rows = target.order("amount DESC").fetchall()
    return FlowResult(
        name=name,
        sql=spec.sql,
        into=str(report["into"]),
        explain=explain(plan),
        engines=sorted({step.engine for step in plan.steps}),
        rows=[(str(m), int(n), float(a)) for m, n, a in rows],
    )


def _done(project: Project, runner: Runner, expected: int, files: int) -> bool:
    samples = {s["name"]: s for s in runner.samples()}
    source = samples["payment_exports"]["counters"]
    if source.get("records", 0) + source.get("dead_letters", 0) < expected + files:
        return False
    hub = project.hub
    ends = hub.end_offsets("payments")
    return all(
        hub.committed(f"sink-{sink}", "payments") == ends for sink in ("warehouse", "lakehouse")
    )
