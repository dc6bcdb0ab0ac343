"""The demo's pipeline: CSV files -> the ``files`` source -> hub -> DuckDB and Parquet sinks.

Payment exports land as CSV files in ``incoming/`` (each with one damaged line, which
ends up in the dead-letter topic with its file and line). The runtime runs in-process
until every file is read and both sinks have caught up, then stops cleanly; the result is
queried in the DuckDB file the sink wrote.
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
from trunkline.project import Project
from trunkline.runtime import Runner, RunOptions, read_dead_letters

__all__ = ["PIPELINE", "PipelineResult", "run_pipeline"]

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
  lake:
    type: parquet
    path: lake
    topics: [payments]
    partition_by: ["date(paid_at)"]
    roll_interval: 1s
    linger: 200ms
"""

METHODS = ["card", "paypal", "sepa", "klarna", "apple_pay"]
METHOD_WEIGHTS = [0.45, 0.2, 0.15, 0.1, 0.1]


@dataclass
class PipelineResult:
    """What the pipeline did."""

    files: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    table_rows: int = 0
    parquet_files: int = 0
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
    result.parquet_files = len(list((project.root / "lake").rglob("*.parquet")))
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
    for edge in project.meta.lineage("warehouse.main.payments", depth=3):
        result.lineage.append(f"{edge.source} -> {edge.target} ({edge.job_kind} {edge.job})")
    return result


def _done(project: Project, runner: Runner, expected: int, files: int) -> bool:
    samples = {s["name"]: s for s in runner.samples()}
    source = samples["payment_exports"]["counters"]
    if source.get("records", 0) + source.get("dead_letters", 0) < expected + files:
        return False
    hub = project.hub
    ends = hub.end_offsets("payments")
    return all(hub.committed(f"sink-{sink}", "payments") == ends for sink in ("warehouse", "lake"))
