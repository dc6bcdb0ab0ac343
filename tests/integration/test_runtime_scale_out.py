"""Scale-out across machines: two `trunkline run` processes with their own project folders
(two machines) share one Kafka broker and one PostgreSQL metadata store. The source's lease
and checkpoint live in the store, so when its owner is killed the other process takes it
over and continues from the shared checkpoint; the outputs end up exact."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from kafka_fixtures import deleting_new_topics
from trunkline.hub.kafka import KafkaHub
from trunkline.meta import MetaStore
from trunkline.meta._schema import runtime_checkpoints, runtime_leases, runtime_processes
from trunkline.runtime._checkpoints import StoreCheckpointStore

sys.path.insert(0, str(Path(__file__).parent))
from _cdc_helpers import Writer, replica_rows, source_rows, wait_equal
from _runtime_helpers import Files, run_log, start_run, stop, tasks_of, wait_for, write_project

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def kafka(kafka_bootstrap: str) -> Iterator[KafkaHub]:
    with KafkaHub(kafka_bootstrap) as hub, deleting_new_topics(hub):
        yield hub


def _project(bootstrap: str, dsn: str, incoming: Path, suffix: str) -> str:
    # Unique names: the broker outlives the test, and groups keep their offsets.
    return f"""\
        hub: {{backend: kafka, bootstrap: "{bootstrap}"}}
        meta: {dsn}
        topics:
          orders_{suffix}: {{partitions: 3}}
        sources:
          incoming_{suffix}:
            type: files
            path: {incoming}
            glob: "*.csv"
            topic: orders_{suffix}
            key: id
            settle: 0s
            poll_interval: 100ms
            chunk_size: 8KiB
            checkpoint_interval: 200ms
        sinks:
          replica_{suffix}:
            type: postgres
            dsn: {dsn}
            topics: [orders_{suffix}]
            table: orders
            linger: 100ms
            batch_records: 700
            session_timeout: 6s
        """


def _rows(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT seq FROM orders").fetchall()]
        except psycopg.errors.UndefinedTable:
            return []


def test_a_second_machine_takes_over_the_source(
    tmp_path: Path, kafka_bootstrap: str, kafka: KafkaHub, postgres_db: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    source, topic = f"incoming_{suffix}", f"orders_{suffix}"
    files = Files(tmp_path / "shared" / "incoming")  # a folder both machines see (NFS...)
    text = _project(kafka_bootstrap, postgres_db, files.folder, suffix)
    machine_a = write_project(tmp_path / "a", text)
    machine_b = write_project(tmp_path / "b", text)
    meta = MetaStore.open(postgres_db)
    checkpoints = StoreCheckpointStore(meta)

    def done() -> set[str]:
        state = (checkpoints.load(f"source-{source}") or {}).get("state") or {}  # type: ignore[union-attr]
        return set() if state.get("current") else set(state.get("done", {}))

    def state(root: Path, pid: int) -> str:
        return str(tasks_of(root, pid).get(source, {}).get("state"))

    for _ in range(3):
        files.write()
    first = start_run(machine_a, "--lease-ttl", "3s")
    second = None
    try:
        wait_for(lambda: state(machine_a, first.pid) == "running", 60, "A to own the source")
        second = start_run(machine_b, "--lease-ttl", "3s")
        wait_for(lambda: state(machine_b, second.pid) == "standby", 60, "B to stand by")
        for _ in range(4):
            files.write()
            time.sleep(0.2)
        wait_for(lambda: len(done()) >= 3, 60, "A to checkpoint some files", status=machine_a)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        wait_for(
            lambda: state(machine_b, second.pid) == "running",
            60,
            "B to take over the source",
            status=machine_b,
        )
        for _ in range(3):
            files.write()
        wait_for(
            lambda: done() == set(files.names) and len(_rows(postgres_db)) >= files.seq,
            120,
            "B to read every file and the sink to catch up",
            status=machine_b,
        )
    finally:
        if first.poll() is None:
            first.kill()
        if second is not None:
            assert stop(second) == 0, run_log(machine_b)[-3000:]
    # Exact in the target: every row once (the postgres sink stores offsets with the rows).
    rows = Counter(_rows(postgres_db))
    assert set(rows) == set(range(files.seq)), "the sink lost rows"
    assert max(rows.values()) == 1, "the sink holds a row twice"
    # Exactly once into the hub too: B continued from A's checkpoint, not from scratch, and
    # recognised what A wrote after it.
    assert sum(kafka.end_offsets(topic).values()) == files.seq
    with meta.transaction() as conn:
        lease = conn.execute(
            sa.select(runtime_leases).where(runtime_leases.c.name == f"source-{source}")
        ).one()
        saved = conn.execute(
            sa.select(runtime_checkpoints).where(runtime_checkpoints.c.name == f"source-{source}")
        ).one()
    meta.close()
    assert lease.owner.split("-")[-2] == str(second.pid) and lease.token >= 2
    assert saved.owner == lease.owner and saved.token == lease.token and saved.version > 2
    # Nothing of this lives in the machines' own folders.
    for root in (machine_a, machine_b):
        assert not (root / ".trunkline" / "checkpoints").exists()
        assert not (root / ".trunkline" / "leases").exists()


def _status(root: Path) -> dict[str, Any]:
    """``trunkline -p root status --json``, as a process."""
    done = subprocess.run(
        [sys.executable, "-m", "trunkline", "-p", str(root), "status", "--json"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return dict(json.loads(done.stdout))


def test_status_on_one_machine_shows_the_other_machines_processes(
    tmp_path: Path, kafka_bootstrap: str, kafka: KafkaHub, postgres_db: str
) -> None:
    """A's process runs the source; `trunkline status` in B's folder shows it running there
    (B's folder holds no status file of A); once A is killed, B shows A gone and the source
    running in B."""
    suffix = uuid.uuid4().hex[:8]
    source = f"incoming_{suffix}"
    files = Files(tmp_path / "shared" / "incoming")
    text = _project(kafka_bootstrap, postgres_db, files.folder, suffix)
    machine_a = write_project(tmp_path / "a", text)
    machine_b = write_project(tmp_path / "b", text)
    host = socket.gethostname()
    files.write()

    def runs_source(shown: dict[str, Any], pid: int) -> bool:
        row = next(r for r in shown["connectors"] if r["name"] == source)
        return row["state"] == "running" and row["process"] == f"{host}:{pid}"

    first = start_run(machine_a, "--lease-ttl", "3s")
    second = None
    try:
        wait_for(lambda: tasks_of(machine_a, first.pid) != {}, 60, "A to publish its status")
        second = start_run(machine_b, "--lease-ttl", "3s")
        wait_for(
            lambda: (
                runs_source(_status(machine_b), first.pid)
                and str(tasks_of(machine_b, second.pid).get(source, {}).get("state")) == "standby"
            ),
            60,
            "B's status to show the source running in A, B standing by",
            status=machine_b,
        )
        assert not list((machine_b / ".trunkline" / "status").glob(f"*-{first.pid}.json"))
        shown = _status(machine_b)
        pids = {(p["host"], p["pid"]) for p in shown["processes"]}
        assert pids == {(host, first.pid), (host, second.pid)}
        assert shown["gone"] == []
        assert {p["sink"] for p in shown["pipelines"]} == {f"replica_{suffix}"}
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        wait_for(
            lambda: runs_source(_status(machine_b), second.pid),
            60,
            "B's status to show the source taken over by B",
            status=machine_b,
        )
        shown = _status(machine_b)
        assert [(p["host"], p["pid"]) for p in shown["gone"]] == [(host, first.pid)]
        assert [(p["host"], p["pid"]) for p in shown["processes"]] == [(host, second.pid)]
        # The same from A's folder, where A's own file is still there.
        assert runs_source(_status(machine_a), second.pid)
    finally:
        if first.poll() is None:
            first.kill()
        if second is not None:
            assert stop(second) == 0, run_log(machine_b)[-3000:]
    with MetaStore.open(postgres_db) as meta, meta.transaction() as conn:
        left = conn.execute(sa.select(runtime_processes.c.pid)).scalars().all()
    # The killed process's row stays (shown gone); the stopped one deleted its row.
    assert left == [first.pid]


CDC_PROJECT = """\
hub: {{backend: kafka, bootstrap: "{bootstrap}"}}
meta: {dsn}
sources:
  shop_{suffix}:
    type: postgres_cdc
    dsn: {dsn}
    tables: [public.orders]
    topic_prefix: shop_{suffix}
    checkpoint_interval: 200ms
    heartbeat_interval: 1s
    status_interval: 1s
    retry_backoff: 200ms
    retry_max_backoff: 2s
sinks:
  replica_{suffix}:
    type: postgres
    dsn: {dsn}
    db_schema: replica
    topics: [shop_{suffix}.public.orders]
    mode: upsert
    key: [id]
    linger: 100ms
    session_timeout: 6s
"""


def test_a_second_machine_takes_over_the_cdc_slot(
    tmp_path: Path, kafka_bootstrap: str, kafka: KafkaHub, cdc_db: str
) -> None:
    """The slot's one owner dies mid-stream while writes go on; the other machine resumes
    the slot from the shared checkpoint (no "slot exists but no checkpoint", no resync)."""
    suffix = uuid.uuid4().hex[:8]
    source = f"shop_{suffix}"
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, seq int, payload text)")
        conn.execute("INSERT INTO orders SELECT g, 0, 'start' FROM generate_series(0, 999) g")
    text = CDC_PROJECT.format(bootstrap=kafka_bootstrap, dsn=cdc_db, suffix=suffix)
    machine_a = write_project(tmp_path / "a", text)
    machine_b = write_project(tmp_path / "b", text)
    meta = MetaStore.open(cdc_db)
    checkpoints = StoreCheckpointStore(meta)

    def state(root: Path, pid: int) -> str:
        return str(tasks_of(root, pid).get(source, {}).get("state"))

    writer = Writer(cdc_db, "orders", keys=1500)
    writer.start()
    first = start_run(machine_a, "--lease-ttl", "3s")
    second = None
    try:
        wait_for(lambda: state(machine_a, first.pid) == "running", 60, "A to own the slot")
        second = start_run(machine_b, "--lease-ttl", "3s")
        wait_for(lambda: state(machine_b, second.pid) == "standby", 60, "B to stand by")
        streamed = checkpoints.version(f"source-{source}") + 5
        wait_for(
            lambda: checkpoints.version(f"source-{source}") >= streamed,
            60,
            "A to checkpoint while streaming",
            status=machine_a,
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        wait_for(
            lambda: state(machine_b, second.pid) == "running",
            60,
            "B to take over the slot",
            status=machine_b,
        )
        taken_over = checkpoints.version(f"source-{source}")
        wait_for(
            lambda: checkpoints.version(f"source-{source}") > taken_over + 5,
            60,
            "B to stream and checkpoint",
            status=machine_b,
        )
        writer.stop()
        wait_equal(
            lambda: source_rows(cdc_db, "orders"),
            # The sink's table is named after the topic.
            {"replica": lambda: replica_rows(cdc_db, f"shop_{suffix}_public_orders")},
            180,
            lambda: run_log(machine_b),
        )
        taken = tasks_of(machine_b, second.pid)[source]
        assert taken["last_error"] == ""
        # B resumed the stream where A's checkpoint left it: no new snapshot.
        assert "snapshot_rows" not in taken["counters"] and taken["counters"]["changes"] > 0
    finally:
        writer.stop()
        if first.poll() is None:
            first.kill()
        if second is not None:
            assert stop(second) == 0, run_log(machine_b)[-3000:]
    with meta.transaction() as conn:
        lease = conn.execute(
            sa.select(runtime_leases).where(runtime_leases.c.name == f"source-{source}")
        ).one()
    meta.close()
    assert lease.owner.split("-")[-2] == str(second.pid) and lease.token >= 2
    assert "no checkpoint" not in run_log(machine_b)
