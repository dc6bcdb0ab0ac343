"""calibrate: measure each engine's speed factors on this machine (``trunkline calibrate``).

Small, fixed workloads (a second or two each), the median of three runs:

* duckdb: an aggregate over an in-memory Arrow table (seconds per row) and over a Parquet
  file (seconds per byte read);
* hub: decoding JSON values the way a topic scan does (seconds per byte and per row);
* each PostgreSQL system: a generated result fetched through ADBC's binary COPY (seconds
  per row and per byte handed over) and a scan of it inside PostgreSQL (seconds per row);
* spark (with ``--spark``): session start and one small job.

Factors are stored per engine kind in the metadata store; the planner reads them next time.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trunkline.engines._topics import decode
from trunkline.engines.duckdb import DuckDBEngine
from trunkline.project import Project

ROWS = 1_000_000


def _median(run: Callable[[], Any], repeats: int = 3) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _duckdb() -> dict[str, float]:
    engine = DuckDBEngine()
    try:
        table = engine.query(
            "SELECT i AS k, i % 1000 AS g, i * 0.5 AS v, 'x' || (i % 77) AS s "
            f"FROM range({ROWS}) t(i)"
        )
        seconds = _median(
            lambda: engine.query("SELECT g, sum(v), count(*) FROM t GROUP BY g", {"t": table})
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "t.parquet"
            pq.write_table(table, path)
            # Per byte of the columns as Arrow holds them: estimates count bytes that way.
            size = table.nbytes
            scan = _median(lambda: engine.query(f"SELECT sum(v), count(DISTINCT s) FROM '{path}'"))
    finally:
        engine.close()
    return {"row": seconds / ROWS, "scan_byte": scan / size, "startup": 0.001}


def _hub() -> dict[str, float]:
    count = ROWS // 4
    values = pa.array(
        [
            json.dumps(
                {"id": i, "amount": i * 0.25, "kind": "abc"[i % 3], "day": "2024-01-02"}
            ).encode()
            for i in range(count)
        ],
        pa.binary(),
    )
    fields = [("id", pa.int64()), ("amount", pa.float64()), ("kind", pa.string())]
    seconds = _median(lambda: decode(values, fields, "calibration"))
    size = values.nbytes
    return {"scan_byte": seconds / size, "row": 0.2 * seconds / count, "startup": 0.001}


def _postgres(dsn: str) -> dict[str, float]:
    import adbc_driver_postgresql.dbapi as adbc

    rows = ROWS // 2
    with adbc.connect(dsn) as conn:
        cursor = conn.cursor()
        # A real (temporary) table: a sequential scan reads pages, as scans of user tables do.
        cursor.execute(
            "CREATE TEMP TABLE trunkline_calibration AS SELECT g AS k, g % 1000 AS grp, "
            f"(g * 0.5)::float8 AS v, 'x' || (g % 77) AS s FROM generate_series(1, {rows}) g"
        )
        cursor.execute("SELECT pg_total_relation_size('trunkline_calibration')")
        size = float(cursor.fetch_arrow_table().column(0)[0].as_py())

        def scan() -> None:
            cursor.execute("SELECT count(*) FROM trunkline_calibration WHERE v > 0")
            cursor.fetch_arrow_table()

        def fetch() -> pa.Table:
            cursor.execute("SELECT * FROM trunkline_calibration")
            return cursor.fetch_arrow_table()

        scanned = _median(scan)
        fetched = _median(fetch)
        table = fetch()
        conn.rollback()
    transfer = max(fetched - scanned, fetched * 0.2)
    return {
        "row": 0.5 * scanned / rows,
        "scan_byte": 0.5 * scanned / size,
        "transfer_row": 0.5 * transfer / rows,
        "transfer_byte": 0.5 * transfer / table.nbytes,
        "startup": 0.003,
    }


def _spark() -> dict[str, float]:
    from trunkline.engines.spark import SparkEngine

    started = time.perf_counter()
    engine = SparkEngine()
    session = engine.session()
    start = time.perf_counter() - started
    job = _median(lambda: session.range(ROWS).selectExpr("sum(id)").collect())
    return {"session": start, "startup": job, "row": job / ROWS}


def calibrate(project: Project, *, spark: bool = False) -> dict[str, dict[str, float]]:
    """Measure, store and return ``{engine kind: {factor: value}}``."""
    from trunkline.engines.postgres import connect_dsn

    factors = {"duckdb": _duckdb(), "hub": _hub()}
    for system in project.meta.list_systems():
        if system.kind == "postgres":
            dsn = connect_dsn(system.location, system.options, os.environ)
            factors[system.name] = _postgres(dsn)
            factors.setdefault("postgres", factors[system.name])
    if spark:
        factors["spark"] = _spark()
    for engine, values in factors.items():
        project.meta.set_calibration(engine, values)
    return factors
