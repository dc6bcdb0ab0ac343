"""``trunkline perf cdc``: the ``postgres_cdc`` source against PostgreSQL's own tools, in one run.

Everything happens in a scratch database created on the given server (and dropped at the
end). Figures, each with its baseline measured in the same run:

* **snapshot**: the source reading a table of ``rows`` rows of about 150 bytes (seven
  columns: bigint, text, numeric, text, timestamptz, text, integer) into Debezium events,
  as Arrow record batches ready for the hub, from ``open`` to the last batch. Baselines:
  ``COPY (SELECT * FROM t) TO STDOUT`` read by ``psql`` into ``/dev/null`` (the server's
  pace: libpq, C) and by psycopg into Python (what a Python program gets from COPY).
* **streaming**: ``stream_rows`` inserts (transactions of 10,000) decoded by the source from
  its slot into events, against ``pg_recvlogical`` decoding the same changes with pgoutput
  from its own slot, created at the same point, into ``/dev/null``.
* **latency**: a writer commits ``rate`` rows per second for ``latency_seconds`` while
  ``trunkline run`` (in this process) copies them: PostgreSQL -> hub -> the ``postgres``
  sink (another schema of the same database, ``linger: 50ms``); a poller sees each row
  arrive. Commit-to-visible p50, p99 and max (the poller's 5 ms period included).
* **peer**: dlt (``sql_database``, pyarrow backend) loading the ``rows``-row table into
  DuckDB, against trunkline's snapshot -> hub -> ``duckdb`` sink (append), each until the
  rows are queryable; the two alternate ``repeats`` times, medians.
* **memory** (``big``): ``trunkline run`` as its own process snapshotting ``big_rows`` rows
  into DuckDB under the default memory budget; its peak resident memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from trunkline.connectors.base import ConnectorContext, JSONValue, SourceBatch
from trunkline.connectors.sources.postgres_cdc import PostgresCdcConfig, PostgresCdcSource
from trunkline.errors import ConfigError
from trunkline.perf._postgres import scratch_database

__all__ = ["run_cdc_benchmark"]

BENCH_TABLE = """
CREATE TABLE {table} (
    id bigint PRIMARY KEY, customer text, amount numeric(12, 2), status text,
    created timestamptz, note text, qty integer
)
"""
FILL = """
INSERT INTO {table}
SELECT g, 'customer-' || (g % 50000), (g % 100000) / 100.0,
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g % 4],
       timestamptz '2024-01-01' + g * interval '1 second',
       md5(g::text) || md5((g * 7)::text), g % 17
FROM generate_series({first}, {last}) g
"""


# -- a context for a source outside the runtime ------------------------------------------


class _Checkpoints:
    def __init__(self) -> None:
        self.saved: dict[str, JSONValue] = {}

    def load(self, name: str) -> JSONValue | None:
        return self.saved.get(name)

    def save(self, name: str, state: JSONValue) -> int:
        self.saved[name] = state
        return len(json.dumps(state))


class _DeadLetters:
    topic = "perf.dlq"

    def write(self, letters: Any, ids: Any = ()) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")

    def write_records(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("unexpected dead letters")


class _Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, float] = {}

    def count(self, name: str, value: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + value

    def gauge(self, name: str, value: float) -> None:
        pass


def _context(root: Path) -> ConnectorContext:
    return ConnectorContext(
        name="perf",
        kind="source",
        root=root,
        hub=None,  # type: ignore[arg-type]  # the source does not need it here
        meta=None,
        checkpoints=_Checkpoints(),
        dead_letters=_DeadLetters(),
        log=logging.getLogger("trunkline.perf.cdc"),
        metrics=_Metrics(),
    )


def _source(dsn: str, table: str, slot: str, **settings: Any) -> PostgresCdcSource:
    config = PostgresCdcConfig.model_validate(
        {"dsn": dsn, "tables": [table], "slot": slot, "publication": slot, **settings}
    )
    return PostgresCdcSource("perf", config)


# -- the scratch database ---------------------------------------------------------------


def _fill(dsn: str, table: str, rows: int, step: int = 500_000) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(BENCH_TABLE).format(table=sql.Identifier(table)))
        for first in range(0, rows, step):
            last = min(rows, first + step) - 1
            conn.execute(
                sql.SQL(FILL).format(
                    table=sql.Identifier(table), first=sql.Literal(first), last=sql.Literal(last)
                )
            )
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# -- snapshot -------------------------------------------------------------------------------


def _copy_psycopg(dsn: str, table: str) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(sql.Identifier(table))
        with cursor.copy(query) as copy:
            for _ in copy:
                pass


def _copy_psql(dsn: str, table: str) -> None:
    query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(sql.Identifier(table)).as_string()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["psql", "-X", "-q", "-d", dsn, "-c", query], stdout=sink, check=True)


def _snapshot(dsn: str, table: str, slot: str, root: Path) -> tuple[float, int]:
    source = _source(dsn, table, slot)
    rows = 0
    started = time.perf_counter()
    source.open(_context(root), None)
    last = started
    try:
        while True:
            batch: SourceBatch | None = source.poll(0.0)
            if batch is None or "snapshot" not in (batch.position or {}):
                return last - started, rows  # streaming now: the snapshot is over
            rows += batch.records.num_rows
            last = time.perf_counter()
    finally:
        source.close()


def _drop_slot(dsn: str, slot: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            [slot],
        )
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(slot)))


# -- streaming ------------------------------------------------------------------------------


def _streaming(dsn: str, rows: int, root: Path) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(BENCH_TABLE).format(table=sql.Identifier("stream")))
    source = _source(dsn, "stream", "perf_stream")
    source.open(_context(root), None)
    try:
        while (batch := source.poll(0.1)) is not None and batch.records.num_rows:
            pass
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot('perf_recv', 'pgoutput')")
            for first in range(0, rows, 10_000):
                conn.execute(
                    sql.SQL(FILL).format(
                        table=sql.Identifier("stream"),
                        first=sql.Literal(first),
                        last=sql.Literal(min(rows, first + 10_000) - 1),
                    )
                )
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            end = row[0] if row else ""
        seen = 0
        started = time.perf_counter()
        while seen < rows:
            batch = source.poll(1.0)
            if batch is not None:
                seen += batch.records.num_rows
        trunkline = time.perf_counter() - started
    finally:
        source.close()
    recv = shutil.which("pg_recvlogical")
    figures: dict[str, Any] = {
        "stream_rows": rows,
        "streaming_rows_s": round(rows / trunkline),
    }
    if recv:
        command = [recv, "-d", dsn, "--slot", "perf_recv", "--start", "-E", end, "-f", "-"]
        command += ["-o", "proto_version=1", "-o", "publication_names=perf_stream", "--no-loop"]
        with open(os.devnull, "wb") as sink:
            baseline = _timed(lambda: subprocess.run(command, stdout=sink, check=True))
        figures["pg_recvlogical_rows_s"] = round(rows / baseline)
        figures["streaming_ratio"] = round(baseline / trunkline, 3)
    return figures


# -- latency --------------------------------------------------------------------------------

LATENCY_PROJECT = """\
hub: {{path: .trunkline/hub}}
sources:
  shop:
    type: postgres_cdc
    dsn: ${{PERF_DSN}}
    tables: [public.lat]
    slot: perf_latency
    publication: perf_latency
sinks:
  replica:
    type: postgres
    dsn: ${{PERF_DSN}}
    db_schema: replica
    topics: [shop.public.lat]
    mode: upsert
    key: [id]
    linger: {linger}
"""


@contextlib.contextmanager
def _running(root: Path, dsn: str) -> Iterator[Any]:
    from trunkline.project import Project
    from trunkline.runtime import Runner, RunOptions

    project = Project.open(root, env={"PERF_DSN": dsn})
    runner = Runner(project, RunOptions())
    runner.start()
    try:
        yield runner
    finally:
        runner.shutdown()
        project.close()


def _latency(dsn: str, root: Path, rate: int, seconds: float, linger: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE lat (id bigint PRIMARY KEY, note text)")
        conn.execute("INSERT INTO lat VALUES (-1, 'ready')")
    root.mkdir(parents=True, exist_ok=True)
    (root / "trunkline.yaml").write_text(LATENCY_PROJECT.format(linger=linger))
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    with _running(root, dsn), psycopg.connect(dsn, autocommit=True) as poll:
        deadline = time.monotonic() + 120
        while not _visible(poll, -2):
            if time.monotonic() > deadline:
                raise RuntimeError("the latency pipeline did not start")
            time.sleep(0.05)
        stop = threading.Event()

        def write() -> None:
            per_commit = max(1, rate // 100)
            next_id = 0
            with psycopg.connect(dsn, autocommit=True) as conn:
                tick = time.perf_counter()
                while not stop.is_set():
                    ids = list(range(next_id, next_id + per_commit))
                    next_id += per_commit
                    with conn.cursor() as cursor:
                        cursor.execute(
                            "INSERT INTO lat SELECT g, 'x' FROM unnest(%s::bigint[]) g", [ids]
                        )
                    done = time.perf_counter()
                    committed.update(dict.fromkeys(ids, done))
                    tick += per_commit / rate
                    time.sleep(max(0.0, tick - time.perf_counter()))

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        # Poll the sink while the writer writes, and until every row has arrived.
        last = -1
        finish = time.monotonic() + seconds
        deadline = finish + 60
        while time.monotonic() < deadline:
            if time.monotonic() >= finish and not stop.is_set():
                stop.set()
                writer.join()
            found = poll.execute("SELECT id FROM replica.shop_public_lat WHERE id > %s", [last])
            now = time.perf_counter()
            for (row_id,) in found.fetchall():
                seen.setdefault(row_id, now)
                last = max(last, row_id)
            if stop.is_set() and len(seen) >= len(committed):
                break
            time.sleep(0.005)
        stop.set()
        writer.join()
    latencies = sorted(seen[i] - committed[i] for i in committed if i in seen)
    if not latencies:
        raise RuntimeError("no row arrived in the sink")
    return {
        "latency_rows_s": rate,
        "latency_rows": len(latencies),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1),
        "latency_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "latency_max_ms": round(1000 * latencies[-1], 1),
        "latency_sink_linger": linger,
    }


def _visible(conn: psycopg.Connection, after: int) -> bool:
    with contextlib.suppress(psycopg.Error):
        row = conn.execute("SELECT count(*) FROM replica.shop_public_lat WHERE id > %s", [after])
        found = row.fetchone()
        return bool(found and found[0])
    return False


# -- dlt side by side -----------------------------------------------------------------------

PEER_PROJECT = """\
hub: {path: .trunkline/hub}
sources:
  shop:
    type: postgres_cdc
    dsn: ${PERF_DSN}
    tables: [public.bench]
    slot: perf_peer
    publication: perf_peer
sinks:
  warehouse:
    type: duckdb
    path: warehouse.duckdb
    topics: [shop.public.bench]
    batch_records: 200000
    batch_bytes: 64MiB
    linger: 100ms
"""


def _trunkline_to_duckdb(dsn: str, root: Path, rows: int) -> float:
    root.mkdir(parents=True)
    (root / "trunkline.yaml").write_text(PEER_PROJECT)
    started = time.perf_counter()
    with _running(root, dsn) as runner:
        hub = runner.project.hub
        while True:
            if runner.failed:
                raise RuntimeError(f"the pipeline failed: {runner.samples()}")
            # Only the sink's committed offsets are read while waiting (they are stored
            # with the rows, so all rows are queryable once they cover the snapshot): this
            # loop shares the two cores with the pipeline it measures.
            committed = hub.committed("sink-warehouse", "shop.public.bench")
            if sum(committed.values()) >= rows and committed == hub.end_offsets(
                "shop.public.bench"
            ):
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    import duckdb

    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        found = con.sql("SELECT count(*) FROM shop_public_bench").fetchone()
    if not found or found[0] != rows:
        raise RuntimeError(f"DuckDB holds {found} rows, expected {rows}")
    return elapsed


def _peer(dsn: str, base: Path, rows: int, repeats: int) -> dict[str, Any]:
    """trunkline and dlt alternately, ``repeats`` times each; medians (the end-to-end time
    of either moves by 10-15 % between runs on two cores)."""
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(repeats):
        ours.append(_trunkline_to_duckdb(dsn, base / f"peer-trunkline-{i}", rows))
        _drop_slot(dsn, "perf_peer")
        dlt_seconds = _dlt_to_duckdb(dsn, base / f"peer-dlt-{i}", rows)
        if dlt_seconds is not None:
            theirs.append(dlt_seconds)
    figures: dict[str, Any] = {
        "end_to_end_duckdb_rows_s": round(rows / statistics.median(ours)),
        "end_to_end_runs_s": [round(t, 3) for t in ours],
    }
    if theirs:
        figures["dlt_duckdb_rows_s"] = round(rows / statistics.median(theirs))
        figures["dlt_runs_s"] = [round(t, 3) for t in theirs]
        figures["end_to_end_ratio_vs_dlt"] = round(
            statistics.median(theirs) / statistics.median(ours), 3
        )
    return figures


def _dlt_to_duckdb(dsn: str, root: Path, rows: int) -> float | None:
    try:
        import dlt
        from dlt.sources.sql_database import sql_database
    except ImportError:
        return None
    parts = conninfo_to_dict(dsn)
    url = "postgresql+psycopg://{user}{password}@{host}:{port}/{dbname}".format(
        user=parts.get("user", ""),
        password=f":{parts['password']}" if parts.get("password") else "",
        host=parts.get("host", "localhost"),
        port=parts.get("port", 5432),
        dbname=parts.get("dbname", ""),
    )
    root.mkdir(parents=True)
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    started = time.perf_counter()
    pipeline = dlt.pipeline(
        pipeline_name="perf_cdc",
        destination=dlt.destinations.duckdb(str(root / "dlt.duckdb")),
        dataset_name="bench",
        pipelines_dir=str(root / "pipelines"),
    )
    pipeline.run(sql_database(credentials=url, table_names=["bench"], backend="pyarrow"))
    elapsed = time.perf_counter() - started
    import duckdb

    with duckdb.connect(str(root / "dlt.duckdb"), read_only=True) as con:
        found = con.sql("SELECT count(*) FROM bench.bench").fetchone()
    if not found or found[0] != rows:
        raise RuntimeError(f"dlt loaded {found} rows, expected {rows}")
    return elapsed


#: The sink with its default batching: what "the default budget" means.
MEMORY_PROJECT = """\
hub: {path: .trunkline/hub}
sources:
  shop:
    type: postgres_cdc
    dsn: ${PERF_DSN}
    tables: [public.big]
    slot: perf_big
    publication: perf_big
sinks:
  warehouse:
    type: duckdb
    path: warehouse.duckdb
    topics: [shop.public.big]
"""

# -- memory ---------------------------------------------------------------------------------


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MB; ``RssAnon`` leaves out mapped files (the hub's
    segments, read through memory maps, which the kernel drops whenever it needs the room)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _memory(dsn: str, root: Path, rows: int) -> dict[str, Any]:
    from trunkline.hub.embedded import EmbeddedHub

    _fill(dsn, "big", rows)
    root.mkdir(parents=True)
    (root / "trunkline.yaml").write_text(MEMORY_PROJECT)
    env = {**os.environ, "PERF_DSN": dsn, "PYTHONUNBUFFERED": "1"}
    log = open(root / "run.log", "wb")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trunkline", "-p", str(root), "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    peak = anonymous = 0.0
    try:
        hub_path = root / ".trunkline" / "hub"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"trunkline run exited: {(root / 'run.log').read_text()[-2000:]}"
                )
            peak = max(peak, _rss_mb(proc.pid))
            anonymous = max(anonymous, _rss_mb(proc.pid, "RssAnon"))
            checkpoint = root / ".trunkline" / "checkpoints" / "source-shop.json"
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(checkpoint.read_text())["state"]
                if state["tables"]["public.big"]["done"] and hub_path.exists():
                    with EmbeddedHub(hub_path) as hub:
                        ends = hub.end_offsets("shop.public.big")
                        if hub.committed("sink-warehouse", "shop.public.big") == ends:
                            break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(120)
        log.close()
    return {
        "memory_rows": rows,
        "memory_peak_rss_mb": round(peak),
        "memory_peak_rss_anon_mb": round(anonymous),
        "memory_budget": "256MiB (trunkline run's default)",
        "memory_seconds": round(elapsed, 1),
    }


# -- the benchmark ------------------------------------------------------------------------------


def run_cdc_benchmark(
    dsn: str,
    directory: Path | None = None,
    *,
    rows: int = 1_000_000,
    stream_rows: int = 1_000_000,
    repeats: int = 3,
    rate: int = 1000,
    latency_seconds: float = 10.0,
    linger: str = "50ms",
    peer: bool = True,
    big_rows: int = 0,
) -> dict[str, Any]:
    """Run the benchmark on the server at ``dsn`` (which must allow CREATE DATABASE and
    logical replication); returns the figures (see the module docstring)."""
    if not dsn:
        raise ConfigError("--dsn postgresql://... is needed (scripts/services/postgres start)")
    import pyarrow as pa

    base = Path(tempfile.mkdtemp(prefix="trunkline-perf-cdc-", dir=directory))
    try:
        with scratch_database(dsn) as db:
            with psycopg.connect(db) as conn:
                version = conn.info.server_version
            figures: dict[str, Any] = {
                "rows": rows,
                "repeats": repeats,
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "postgres": version,
                "pyarrow": pa.__version__,
            }
            _fill(db, "bench", rows)
            with psycopg.connect(db) as conn:
                row = conn.execute("SELECT avg(pg_column_size(b.*)) FROM bench b").fetchone()
            figures["row_bytes_avg"] = round(float(row[0]), 1) if row else None
            times: dict[str, list[float]] = {}
            psql = shutil.which("psql") is not None
            for round_no in range(repeats):
                if psql:
                    times.setdefault("copy_psql", []).append(
                        _timed(lambda: _copy_psql(db, "bench"))
                    )
                times.setdefault("copy_psycopg", []).append(
                    _timed(lambda: _copy_psycopg(db, "bench"))
                )
                slot = f"perf_snap_{round_no}"
                elapsed, read = _snapshot(db, "bench", slot, base)
                _drop_slot(db, slot)
                if read != rows:
                    raise RuntimeError(f"the snapshot read {read} rows, expected {rows}")
                times.setdefault("snapshot", []).append(elapsed)
            median = {name: statistics.median(values) for name, values in times.items()}
            for name, seconds in median.items():
                figures[f"{name}_rows_s"] = round(rows / seconds)
            figures["snapshot_ratio_vs_copy_psycopg"] = round(
                median["copy_psycopg"] / median["snapshot"], 3
            )
            if psql:
                figures["snapshot_ratio_vs_copy_psql"] = round(
                    median["copy_psql"] / median["snapshot"], 3
                )
            figures |= _streaming(db, stream_rows, base)
            figures |= _latency(db, base / "latency", rate, latency_seconds, linger)
            if peer:
                figures |= _peer(db, base, rows, repeats)
            if big_rows:
                figures |= _memory(db, base / "memory", big_rows)
        return figures
    finally:
        shutil.rmtree(base, ignore_errors=True)
