"""``trunkline run`` with iceberg sinks, killed with SIGKILL mid-load: every record ends up
in the tables exactly once (append), or as the last change of its key (upsert)."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _runtime_helpers import (
    Files,
    files_done,
    group_lag,
    run_log,
    start_run,
    stop,
    wait_for,
    write_project,
)

pytest.importorskip("pyiceberg")
from pyiceberg.catalog.sql import SqlCatalog

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
  appended:
    type: iceberg
    warehouse: lake
    namespace: app
    topics: [orders]
    commit_interval: 300ms
    linger: 100ms
    batch_records: 700
  upserted:
    type: iceberg
    warehouse: lake
    namespace: up
    topics: [orders]
    mode: upsert
    key: [id]
    commit_interval: 300ms
    linger: 100ms
    batch_records: 700
"""


def _rows(root: Path, namespace: str) -> list[dict[str, Any]]:
    lake = root / "lake"
    catalog = SqlCatalog(
        "trunkline", uri=f"sqlite:///{lake / 'catalog.db'}", warehouse=lake.as_uri()
    )
    try:
        table = catalog.load_table(f"{namespace}.orders")
        return table.scan(selected_fields=("id", "seq", "payload")).to_arrow().to_pylist()  # type: ignore[no-any-return]
    finally:
        catalog.engine.dispose()


def _finished(root: Path, files: Files) -> bool:
    if files_done(root, "incoming") != set(files.names):
        return False
    return all(group_lag(root, f"sink-{s}") == 0 for s in ("appended", "upserted"))


@pytest.mark.slow
def test_kill_9_mid_load_five_rounds(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", PIPELINE)
    files = Files(root / "incoming")
    rng = random.Random(7)
    for _ in range(3):
        files.write()
    for _ in range(5):
        proc = start_run(root)
        deadline = time.monotonic() + rng.uniform(2.0, 4.0)
        while time.monotonic() < deadline:
            files.write()
            time.sleep(rng.uniform(0.1, 0.4))
        for _ in range(3):  # a burst, so that the kill finds work in flight
            files.write()
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _rows(root, "app"), "commits happened between the kills"
    files.write()
    proc = start_run(root)
    try:
        wait_for(lambda: _finished(root, files), 120, "every file read and committed", root)
    finally:
        assert stop(proc) == 0, run_log(root)[-3000:]
    total = files.seq
    appended = Counter(r["seq"] for r in _rows(root, "app"))
    assert set(appended) == set(range(total)), "the append table lost records"
    assert max(appended.values()) == 1, "the append table holds a record twice"
    expected = {seq % files.keys: seq for seq in range(total)}  # the last record of a key wins
    upserted = _rows(root, "up")
    assert len(upserted) == len(expected), "the upsert table holds a key twice"
    assert {r["id"]: r["seq"] for r in upserted} == expected
    assert all(r["payload"] == f"p{r['seq'] * 7919 % 100_003}" for r in upserted)
