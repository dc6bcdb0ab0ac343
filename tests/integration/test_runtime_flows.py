"""Continuous flows inside ``trunkline run`` as a real process: kill -9 while a flow runs,
restart, and the flow's aggregate equals DuckDB's over all input (no double counting)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from trunkline.hub.embedded import EmbeddedHub

sys.path.insert(0, str(Path(__file__).parent))
from _runtime_helpers import (
    Files,
    files_done,
    run_log,
    start_run,
    stop,
    wait_for,
    write_project,
)

CONTRACT = """\
apiVersion: v3.0.2
kind: DataContract
id: orders
version: 1.0.0
status: active
schema:
  - name: orders
    properties:
      - {name: id, logicalType: integer, required: true}
      - {name: seq, logicalType: integer, required: true}
      - {name: payload, logicalType: string}
"""

PROJECT = """\
topics:
  orders: {partitions: 3, contract: contracts/orders.yaml}
sources:
  incoming:
    type: files
    path: incoming
    glob: "*.csv"
    topic: orders
    key: id
    settle: 0s
    poll_interval: 100ms
    chunk_size: 8KiB
    checkpoint_interval: 200ms
sinks:
  warehouse:
    type: duckdb
    path: warehouse.duckdb
    topics: [orders]
    linger: 100ms
flows:
  by_bucket:
    sql: >-
      select id % 7 as bucket, count(*) as n, sum(seq) as total, max(seq) as last
      from hub.orders group by 1
    into: warehouse.main.by_bucket
    freshness: 1s
  by_bucket_topic:
    sql: select id % 7 as bucket, count(*) as n, sum(seq) as total from hub.orders group by 1
    into: hub.bucket_totals
    freshness: 1s
"""

EXPECTED = (
    "SELECT id % 7 AS bucket, count(*) AS n, sum(seq) AS total, max(seq) AS last "
    "FROM read_csv('{folder}/*.csv') GROUP BY 1 ORDER BY 1"
)


def _flow_tasks(root: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in (root / ".trunkline" / "status").glob("*.json"):
        try:
            document = json.loads(path.read_text())
        except ValueError:
            continue
        for task in document.get("tasks", []):
            if task["kind"] == "flow":
                found[task["name"]] = task
    return found


def _flows_caught_up(root: Path) -> bool:
    tasks = _flow_tasks(root)
    return len(tasks) == 2 and all(
        t["state"] == "running" and t["gauges"].get("lag_records") == 0 for t in tasks.values()
    )


def _committed_everything(root: Path) -> bool:
    """After a clean stop: both flows committed the topic's end offsets."""
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        end = sum(hub.end_offsets("orders").values())
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        (done,) = con.sql(
            "SELECT coalesce(sum(next_offset), 0) FROM _trunkline.flow_offsets "
            "WHERE flow = 'by_bucket'"
        ).fetchone() or (0,)
    with duckdb.connect(
        str(root / ".trunkline" / "flows" / "by_bucket_topic.duckdb"), read_only=True
    ) as con:
        (topic_done,) = con.sql(
            "SELECT coalesce(sum(next_offset), 0) FROM _trunkline.flow_offsets"
        ).fetchone() or (0,)
    return bool(done == end and topic_done == end)


@pytest.mark.slow
def test_kill_9_while_flows_run_then_restart_counts_each_record_once(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", PROJECT)
    (root / "contracts").mkdir()
    (root / "contracts" / "orders.yaml").write_text(CONTRACT)
    files = Files(root / "incoming")
    for _ in range(3):
        files.write()
    for round_ in range(3):
        proc = start_run(root)
        # Kill only once the flows are folding increments, so a kill lands mid-flow.
        wait_for(lambda: bool(_flow_tasks(root)), 60, "the flows to start", status=root)
        for _ in range(3 + round_):
            files.write()
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # A stale status file of the killed process would read as caught up.
        for path in (root / ".trunkline" / "status").glob("*.json"):
            path.unlink()
    files.write()
    for _ in range(5):
        proc = start_run(root)
        try:
            wait_for(
                lambda: files_done(root, "incoming") == set(files.names) and _flows_caught_up(root),
                120,
                "every file read and both flows caught up",
                status=root,
            )
        finally:
            assert stop(proc) == 0, run_log(root)[-3000:]
        # The flows may have reported "caught up" just before the last file's records
        # arrived: run again until a clean stop leaves everything committed.
        if _committed_everything(root):
            break
    else:
        raise AssertionError("the flows never committed the topic's end offsets")
    assert not re.search(r"flow by_bucket\S* (failed|stopped)", run_log(root)), run_log(root)

    with duckdb.connect() as con:
        expected = con.sql(EXPECTED.format(folder=root / "incoming")).fetchall()
    assert sum(r[1] for r in expected) == files.seq
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        got = con.sql("SELECT bucket, n, total, last FROM by_bucket ORDER BY 1").fetchall()
    assert got == expected

    # Into the topic: the newest record per key is the group's whole value.
    latest: dict[str, dict[str, Any]] = {}
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        for partition, end in hub.end_offsets("bucket_totals").items():
            offset = 0
            while offset < end:
                batch = hub.fetch("bucket_totals", partition, offset, max_records=10_000)
                for key, value in zip(
                    batch.records.column("key").to_pylist(),
                    batch.records.column("value").to_pylist(),
                    strict=True,
                ):
                    latest[key.decode()] = json.loads(value)
                offset = batch.next_offset
    assert {int(k): (v["n"], v["total"]) for k, v in latest.items()} == {
        b: (n, total) for b, n, total, _ in expected
    }
