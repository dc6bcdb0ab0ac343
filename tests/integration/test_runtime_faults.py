"""``trunkline run`` as a real process: kill -9 mid-load, SIGTERM drains, backpressure keeps
memory bounded, malformed input goes to dead letters."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trunkline.hub.embedded import EmbeddedHub
from trunkline.runtime import read_dead_letters

sys.path.insert(0, str(Path(__file__).parent))
from _runtime_helpers import (
    Files,
    committed_total,
    files_done,
    group_lag,
    rss_mb,
    run_log,
    start_run,
    stop,
    wait_for,
    write_project,
)

PIPELINE = """\
topics:
  orders: {partitions: 3}
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
  upserted:
    type: duckdb
    path: upserted.duckdb
    topics: [orders]
    mode: upsert
    key: [id]
    linger: 100ms
    batch_records: 700
  appended:
    type: duckdb
    path: appended.duckdb
    topics: [orders]
    linger: 100ms
    batch_records: 700
  lake:
    type: parquet
    path: lake
    topics: [orders]
    roll_interval: 300ms
    linger: 100ms
    batch_records: 700
    session_timeout: 2s
"""


def _finished(root: Path, files: Files, sinks: tuple[str, ...]) -> bool:
    if files_done(root, "incoming") != set(files.names):
        return False
    return all(group_lag(root, f"sink-{s}") == 0 for s in sinks)


def _read_lake(root: Path) -> list[int]:
    found = sorted((root / "lake" / "orders").rglob("*.parquet"))
    if not found:
        return []
    return [s for f in found for s in pq.read_table(f, columns=["seq"]).column("seq").to_pylist()]


@pytest.mark.slow
def test_kill_9_mid_load_ten_rounds(tmp_path: Path) -> None:
    """Files keep arriving; `trunkline run` is killed 10 times; the outputs end up exact."""
    root = write_project(tmp_path / "p", PIPELINE)
    files = Files(root / "incoming")
    rng = random.Random(5)
    for _ in range(3):
        files.write()
    for _ in range(10):
        proc = start_run(root)
        deadline = time.monotonic() + rng.uniform(1.0, 2.5)
        while time.monotonic() < deadline:
            files.write()
            time.sleep(rng.uniform(0.1, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    files.write()
    proc = start_run(root)
    try:
        wait_for(
            lambda: _finished(root, files, ("upserted", "appended", "lake")),
            120,
            "every file read and every sink caught up",
            status=root,
        )
    finally:
        assert stop(proc) == 0, run_log(root)[-3000:]
    total = files.seq
    with duckdb.connect(str(root / "appended.duckdb"), read_only=True) as con:
        appended = Counter(r[0] for r in con.sql("SELECT seq FROM orders").fetchall())
    assert set(appended) == set(range(total)), "the append table lost records"
    assert max(appended.values()) == 1, "the append table holds a record twice"
    lake = Counter(_read_lake(root))
    assert set(lake) == set(range(total)), "the lake lost records"
    assert max(lake.values()) == 1, "the lake holds a record twice"
    expected = {}
    for seq in range(total):
        expected[seq % files.keys] = seq  # the last record of each key wins
    with duckdb.connect(str(root / "upserted.duckdb"), read_only=True) as con:
        rows = con.sql("SELECT id, seq, payload FROM orders").fetchall()
    assert len(rows) == len(expected)
    assert {i: s for i, s, _ in rows} == expected
    assert all(p == f"p{s * 7919 % 100_003}" for _, s, p in rows)
    # Exactly once into the hub as well: every file row is in the topic once.
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        assert sum(hub.end_offsets("orders").values()) == total


@pytest.mark.slow
def test_sigterm_drains_and_commits(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", PIPELINE)
    files = Files(root / "incoming", rows_per_file=2000)
    for _ in range(5):
        files.write()
    proc = start_run(root)
    wait_for(lambda: files_done(root, "incoming") == set(files.names), 60, "the files read")
    started = time.monotonic()
    code = stop(proc)
    assert code == 0, run_log(root)[-3000:]
    assert time.monotonic() - started < 30
    # Draining leaves what each sink wrote and what its group committed in step (how far
    # each sink got before the signal depends on the machine's load, so not its lag).
    committed = {
        sink: committed_total(root, f"sink-{sink}") for sink in ("upserted", "appended", "lake")
    }
    with duckdb.connect(str(root / "appended.duckdb"), read_only=True) as con:
        (appended,) = con.sql("SELECT count(*) FROM orders").fetchone() or (0,)
    assert appended == committed["appended"] > 0
    lake = _read_lake(root)
    assert len(lake) == len(set(lake)) == committed["lake"]
    with duckdb.connect(str(root / "upserted.duckdb"), read_only=True) as con:
        (stored,) = con.sql(
            "SELECT coalesce(sum(next_offset), 0) FROM _trunkline_offsets WHERE sink = 'upserted'"
        ).fetchone() or (0,)
    assert stored == committed["upserted"] > 0
    assert "SIGTERM: draining" in run_log(root)


@pytest.mark.slow
def test_backpressure_keeps_memory_bounded_and_recovers(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p",
        """\
        topics:
          big: {partitions: 2}
        sinks:
          slow:
            type: slow
            topics: [big]
            output: received.txt
            batch_bytes: 4MiB
            linger: 50ms
        """,
    )
    (root / "pause").touch()
    proc = start_run(root, "--memory", "32MiB", child=True)
    try:
        time.sleep(2.0)  # started, joined the group, waiting
        baseline = rss_mb(proc.pid, "RssAnon")
        value = b"x" * 2000
        sent = 0
        peak = baseline
        with EmbeddedHub(root / ".trunkline" / "hub", ack="written") as hub:
            for _ in range(60):  # 60 x 2,500 records of 2 kB: 300 MB while the sink is paused
                batch = pa.table({"value": pa.array([value] * 2500, pa.binary())})
                hub.produce("big", batch)
                sent += 2500
                peak = max(peak, rss_mb(proc.pid, "RssAnon"))
        for _ in range(20):
            time.sleep(0.1)
            peak = max(peak, rss_mb(proc.pid, "RssAnon"))
        print(f"anonymous RSS {baseline:.0f} -> {peak:.0f} MB, total {rss_mb(proc.pid):.0f} MB")
        # The budget (32 MiB), one fetch over it, and the allocator's slack.
        assert peak - baseline < 80, f"RSS grew from {baseline:.0f} MB to {peak:.0f} MB"
        (root / "pause").unlink()
        wait_for(lambda: group_lag(root, "sink-slow") == 0, 120, "the sink to catch up")
    finally:
        assert stop(proc) == 0, run_log(root)[-3000:]
    lines = (root / "received.txt").read_text().split()
    received = set(zip(lines[::2], lines[1::2], strict=True))
    assert len(received) == sent, "every record arrives once the sink recovers"


@pytest.mark.slow
def test_malformed_files_go_to_dead_letters(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p",
        """\
        sources:
          csv_in: {type: files, path: in, glob: "*.csv", topic: rows, settle: 0s,
                   poll_interval: 100ms}
          json_in: {type: files, path: in, glob: "*.jsonl", topic: rows, settle: 0s,
                    poll_interval: 100ms}
          parquet_in: {type: files, path: in, glob: "*.parquet", topic: rows, settle: 0s,
                       poll_interval: 100ms}
        sinks:
          table:
            type: duckdb
            path: out.duckdb
            topics: [rows]
            linger: 100ms
        """,
    )
    folder = root / "in"
    folder.mkdir()
    (folder / "a.csv").write_text('id,name\n1,one\n2,two,extra\n3,three\n"4,four\n')
    (folder / "b.jsonl").write_text(
        '{"id": 5, "name": "five"}\n{"id": 6, name: six}\n{"id": 7, "name": "seven"}\n'
    )
    good = folder / "c.parquet"
    pq.write_table(pa.table({"id": [8], "name": ["eight"]}), good)
    data = good.read_bytes()
    (folder / "d.parquet").write_bytes(data[: len(data) - 20])
    past = time.time() - 5
    for path in folder.iterdir():
        os.utime(path, (past, past))
    proc = start_run(root)
    try:
        wait_for(
            lambda: (
                all(files_done(root, s) for s in ("csv_in", "json_in", "parquet_in"))
                and group_lag(root, "sink-table") == 0
            ),
            60,
            "all input read and written",
        )
    finally:
        assert stop(proc) == 0, run_log(root)[-3000:]
    with duckdb.connect(str(root / "out.duckdb"), read_only=True) as con:
        names = sorted(r[0] for r in con.sql("SELECT name FROM rows").fetchall())
    assert names == ["eight", "five", "one", "seven", "three"]
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        letters = {
            source: list(read_dead_letters(hub, f"{source}.dlq"))
            for source in ("csv_in", "json_in", "parquet_in")
        }
    csv_origins = sorted(e.origin for e in letters["csv_in"])
    assert csv_origins == ["a.csv:3", "a.csv:5"]
    assert {e.headers["trunkline.file"] for e in letters["csv_in"]} == {"a.csv"}
    assert [e.value for e in letters["csv_in"] if e.origin == "a.csv:3"] == [b"2,two,extra"]
    assert [e.origin for e in letters["json_in"]] == ["b.jsonl:2"]
    assert letters["json_in"][0].value == b'{"id": 6, name: six}'
    assert [e.origin for e in letters["parquet_in"]] == ["d.parquet"]
    assert "Parquet" in letters["parquet_in"][0].error
    assert all(e.headers["trunkline.stage"] == "source" for v in letters.values() for e in v)


def _tasks(root: Path, pid: int) -> dict[str, dict[str, Any]]:
    path = next((root / ".trunkline" / "status").glob(f"*-{pid}.json"), None)
    if path is None:
        return {}
    try:
        return {t["name"]: t for t in json.loads(path.read_text())["tasks"]}
    except (ValueError, KeyError):
        return {}


@pytest.mark.slow
def test_two_processes_share_work_and_take_over(tmp_path: Path) -> None:
    """Sinks share partitions through their group; exclusive connectors have one owner; when
    the owner dies the other process takes over, and the outputs stay exact."""
    root = write_project(tmp_path / "p", PIPELINE)
    files = Files(root / "incoming")
    for _ in range(3):
        files.write()
    first = start_run(root)
    wait_for(lambda: _tasks(root, first.pid).get("incoming", {}).get("state") == "running", 30, "A")
    second = start_run(root)
    try:

        def shared() -> bool:
            a, b = _tasks(root, first.pid), _tasks(root, second.pid)
            parts = [t.get("lake", {}).get("gauges", {}).get("partitions", 0) for t in (a, b)]
            return b.get("incoming", {}).get("state") == "standby" and all(p > 0 for p in parts)

        wait_for(shared, 60, "the lake's partitions split and the source owned by A only")
        assert _tasks(root, second.pid)["upserted"]["state"] == "standby"
        for _ in range(5):
            files.write()
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        wait_for(
            lambda: _tasks(root, second.pid).get("incoming", {}).get("state") == "running",
            30,
            "B to take over the source",
        )
        for _ in range(3):
            files.write()
        wait_for(
            lambda: _finished(root, files, ("upserted", "appended", "lake")),
            120,
            "B to finish everything",
            status=root,
        )
    finally:
        if first.poll() is None:
            first.kill()
        assert stop(second) == 0, run_log(root)[-3000:]
    lake = Counter(_read_lake(root))
    assert set(lake) == set(range(files.seq)) and max(lake.values()) == 1
    with duckdb.connect(str(root / "appended.duckdb"), read_only=True) as con:
        appended = Counter(r[0] for r in con.sql("SELECT seq FROM orders").fetchall())
    assert set(appended) == set(range(files.seq)) and max(appended.values()) == 1
