"""``trunkline perf sink``: sink throughput through the runtime, with baselines in the same run.

Workload: ``rows`` order records (the demo's orders: six fields, about 135 bytes of JSON
each), produced into a topic of an embedded hub beforehand (not timed). Then, each timed
from the runner's start (opening the target included) until the rows are durable in the
target and their offsets committed:

* ``duckdb_sink``: ``trunkline run`` of a ``duckdb`` sink (append) in this process: fetch
  from the hub, decode the JSON values to Arrow, insert, store offsets in the same
  transaction, commit to the group;
* ``duckdb_upsert_sink``: the same with ``mode: upsert`` (key ``order_id``);
* ``parquet_sink``: a ``parquet`` sink (one file per partition, zstd);
* ``iceberg_sink``: an ``iceberg`` sink (append, default commit settings), with its commits
  per minute (when pyiceberg is installed);
* ``postgres_sink`` and ``postgres_upsert_sink`` (given a PostgreSQL server): the
  ``postgres`` sink appending, and upserting by ``order_id``, into a scratch database.

Baselines, on the same rows:

* ``duckdb_direct``: DuckDB inserting the typed Arrow table directly (``INSERT INTO ...
  SELECT * FROM arrow_table`` into a database file, one transaction): the ceiling, with no
  hub and no JSON;
* ``duckdb_read_json``: DuckDB loading the same JSON values itself (``read_json`` of a
  newline-delimited file of them): what the JSON decoding alone costs in DuckDB;
* ``parquet_write_table``: ``pyarrow.parquet.write_table`` of the typed table (zstd);
* ``iceberg_direct``: pyiceberg appending the typed table in one commit;
* ``postgres_copy``: PostgreSQL's own ``COPY`` of the typed rows (CSV written by Arrow) into
  a table, one transaction.

With pyiceberg, ``iceberg_metadata`` adds how table metadata grows over many tiny commits,
with pyiceberg's defaults and with the sink's maintenance (see :mod:`trunkline.perf.iceberg`).

Ratios are sink / baseline (rows per second). Every figure is the median of ``repeats``
runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trunkline.demo._data import generate
from trunkline.project import Project
from trunkline.runtime import Runner, RunOptions

__all__ = ["run_sink_benchmark"]

PROJECT = """\
hub: {{path: .trunkline/hub, ack: written}}
topics:
  bench: {{partitions: {partitions}}}
sinks:
  duck:
    type: duckdb
    path: duck.duckdb
    topics: [bench]
    batch_records: 200000
    batch_bytes: 64MiB
    linger: 100ms
  duck_upsert:
    type: duckdb
    path: duck_upsert.duckdb
    topics: [bench]
    mode: upsert
    key: [order_id]
    batch_records: 200000
    batch_bytes: 64MiB
    linger: 100ms
  lake:
    type: parquet
    path: lake
    topics: [bench]
    batch_records: 200000
    batch_bytes: 64MiB
    linger: 100ms
    target_file_size: 1GiB
    roll_interval: 10m
"""
#: Added to the project when pyiceberg is installed (the ``iceberg`` extra).
ICEBERG_SINK = """\
  ice:
    type: iceberg
    warehouse: ice
    topics: [bench]
    batch_records: 200000
    batch_bytes: 64MiB
    linger: 100ms
"""


def _orders(rows: int) -> tuple[pa.Table, pa.Table]:
    """The typed orders and their records (JSON values keyed by customer)."""
    data = generate(customers=max(10, rows // 20), orders=rows, clicks=0)
    con = duckdb.connect()
    try:
        con.register("v", data.orders)
        typed = con.sql(
            """SELECT o.order_id, o.customer_id, o.amount, o.currency, o.status,
                      CAST(o.ts AS TIMESTAMPTZ) AS ts
               FROM (SELECT json_transform(value, '{"order_id":"VARCHAR","customer_id":
                     "VARCHAR","amount":"DOUBLE","currency":"VARCHAR","status":"VARCHAR",
                     "ts":"TIMESTAMPTZ"}') AS o FROM v)"""
        ).to_arrow_table()
    finally:
        con.close()
    return typed, data.orders


def _run_sink(
    root: Path, sink: str, rows: int, *, drained: bool, counters: dict[str, float] | None = None
) -> float:
    """Seconds from ``trunkline run --only sink`` starting until ``rows`` records are durable.

    DuckDB rows are durable (and queryable) once their transaction commits, with their
    offsets; the clock stops when the group's committed offsets reach the end of the topic.
    Parquet records are durable once their file is in place: with ``drained`` the clock
    stops after the runner has drained (the last file put in place, its offsets committed).
    """
    with Project.open(root) as project:
        runner = Runner(project, RunOptions(only=(sink,), memory=512 * 1024 * 1024))
        ends = project.hub.end_offsets("bench")
        group = f"sink-{sink}"
        started = time.perf_counter()
        runner.start()
        try:
            while True:
                if runner.failed:
                    raise RuntimeError(f"sink {sink} failed: {runner.samples()}")
                if drained:
                    if runner.samples()[0]["counters"].get("records", 0) >= rows:
                        break
                elif project.hub.committed(group, "bench") == ends:
                    break
                time.sleep(0.002)
            elapsed = time.perf_counter() - started
        finally:
            runner.shutdown()
        if drained:
            elapsed = time.perf_counter() - started
        if counters is not None:
            counters.update(runner.samples()[0]["counters"])
        committed = project.hub.committed(group, "bench")
        if committed != ends:
            raise RuntimeError(f"sink {sink} committed {committed}, expected {ends}")
    return elapsed


def _direct_duckdb(path: Path, typed: pa.Table) -> float:
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE TABLE orders AS SELECT * FROM typed LIMIT 0")
        started = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO orders SELECT * FROM typed")
        con.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        con.close()


def _read_json_duckdb(path: Path, records: pa.Table, directory: Path) -> float:
    """DuckDB loading the records' JSON values from a newline-delimited file."""
    ndjson = directory / "values.jsonl"
    values = records.column("value").combine_chunks().cast(pa.binary())
    whole = pc.binary_join(
        pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values), b"\n"
    )
    ndjson.write_bytes(whole[0].as_py() + b"\n")
    con = duckdb.connect(str(path))
    try:
        started = time.perf_counter()
        con.execute(f"CREATE TABLE orders AS SELECT * FROM read_json('{ndjson}')")  # noqa: S608
        return time.perf_counter() - started
    finally:
        con.close()


def run_sink_benchmark(
    directory: Path | None = None,
    *,
    rows: int = 1_000_000,
    partitions: int = 1,
    repeats: int = 3,
    postgres_dsn: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns the figures (see the module docstring).

    Each figure is the median of ``repeats`` runs; baseline and sink runs alternate, so that
    the disk's and the machine's moods hit both alike.
    """
    base = Path(tempfile.mkdtemp(prefix="trunkline-perf-sink-", dir=directory))
    postgres = contextlib.ExitStack()
    try:
        pg_dsn = ""
        if postgres_dsn:
            from trunkline.perf._postgres import scratch_database

            pg_dsn = postgres.enter_context(scratch_database(postgres_dsn))
            os.environ["TRUNKLINE_PERF_PG_DSN"] = pg_dsn  # the project file's ${...}
        typed, records = _orders(rows)
        value_bytes = sum(len(v) for v in records.column("value").to_pylist()[:1000]) / 1000
        figures: dict[str, Any] = {
            "rows": rows,
            "value_bytes_avg": round(value_bytes, 1),
            "partitions": partitions,
            "repeats": repeats,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "pyarrow": pa.__version__,
        }
        times: dict[str, list[float]] = {}
        iceberg = importlib.util.find_spec("pyiceberg") is not None
        commits: list[float] = []
        if iceberg:
            from trunkline.perf.iceberg import direct_append_seconds, metadata_growth

            figures["iceberg_metadata"] = metadata_growth(
                base / "metadata", commits=100 if rows < 100_000 else 400
            )

        def timed(name: str, seconds: float) -> None:
            times.setdefault(name, []).append(seconds)

        for round_no in range(repeats):
            work = base / f"round-{round_no}"
            root = work / "project"
            root.mkdir(parents=True)
            text = PROJECT.format(partitions=partitions) + (ICEBERG_SINK if iceberg else "")
            if pg_dsn:
                from trunkline.perf._postgres import PG_SINKS

                text += PG_SINKS
            (root / "trunkline.yaml").write_text(text)
            with Project.open(root) as project:
                project.apply_topics()
                for batch in records.to_batches(max_chunksize=50_000):
                    project.hub.produce("bench", batch)
            timed("duckdb_direct", _direct_duckdb(work / "direct.duckdb", typed))
            timed("duckdb_sink", _run_sink(root, "duck", rows, drained=False))
            timed("duckdb_read_json", _read_json_duckdb(work / "json.duckdb", records, work))
            timed("duckdb_upsert_sink", _run_sink(root, "duck_upsert", rows, drained=False))
            started = time.perf_counter()
            pq.write_table(typed, work / "direct.parquet", compression="zstd")
            timed("parquet_write_table", time.perf_counter() - started)
            timed("parquet_sink", _run_sink(root, "lake", rows, drained=True))
            if iceberg:
                timed("iceberg_direct", direct_append_seconds(work / "direct-ice", typed))
                counters: dict[str, float] = {}
                seconds = _run_sink(root, "ice", rows, drained=True, counters=counters)
                timed("iceberg_sink", seconds)
                commits.append(counters.get("commits", 0) / (seconds / 60))
            if pg_dsn:
                from trunkline.perf._postgres import copy_seconds, drop_schemas

                drop_schemas(pg_dsn)
                timed("postgres_copy", copy_seconds(pg_dsn, typed, f"direct_{round_no}"))
                timed("postgres_sink", _run_sink(root, "pg", rows, drained=False))
                timed("postgres_upsert_sink", _run_sink(root, "pg_upsert", rows, drained=False))
            shutil.rmtree(work, ignore_errors=True)
        median = {name: statistics.median(values) for name, values in times.items()}
        for name, seconds in median.items():
            figures[f"{name}_rows_s"] = round(rows / seconds)
        figures |= {
            "duckdb_ratio_vs_direct": round(median["duckdb_direct"] / median["duckdb_sink"], 3),
            "duckdb_ratio_vs_read_json": round(
                median["duckdb_read_json"] / median["duckdb_sink"], 3
            ),
            "parquet_ratio": round(median["parquet_write_table"] / median["parquet_sink"], 3),
        }
        if pg_dsn:
            figures["postgres_ratio_vs_copy"] = round(
                median["postgres_copy"] / median["postgres_sink"], 3
            )
            figures["postgres_upsert_ratio_vs_copy"] = round(
                median["postgres_copy"] / median["postgres_upsert_sink"], 3
            )
        if iceberg:
            figures["iceberg_ratio"] = round(median["iceberg_direct"] / median["iceberg_sink"], 3)
            figures["iceberg_sink_commits_per_minute"] = round(statistics.median(commits), 1)
        return figures
    finally:
        postgres.close()
        os.environ.pop("TRUNKLINE_PERF_PG_DSN", None)
        shutil.rmtree(base, ignore_errors=True)
