"""Status in the metadata store, on SQLite and on PostgreSQL: each process's row replaced
on every publication and deleted on a clean stop, stale rows shown as gone, the store and
this machine's files read together, and ``trunkline status`` showing every machine's
processes with the lag origin over all of them."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from trunkline.cli import main
from trunkline.meta import MetaStore
from trunkline.meta._schema import runtime_processes
from trunkline.project import Project
from trunkline.runtime import Runner, RunOptions, read_status
from trunkline.runtime._status import MIN_STALE_AFTER, StatusBoard, StoreStatusBoard


def _document(host: str, pid: int, run_id: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"host": host, "pid": pid, "run_id": run_id, "state": "running", "tasks": tasks}


def _task(name: str, kind: str, **gauges: float) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "type": "files" if kind == "source" else "duckdb",
        "state": "running",
        "rows_per_s": 10.0,
        "gauges": gauges,
        "counters": {"records": 100},
        "share": {"busy": 0.9, "backpressured": 0.0, "idle": 0.1},
        "last_error": "",
    }


def _age(meta: MetaStore, run_id: str, seconds: float) -> None:
    """Move a row's heartbeat ``seconds`` into the past (by the database's clock)."""
    table = runtime_processes
    with meta.transaction(write=True) as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.run_id == run_id)
            .values(heartbeat_ms=table.c.heartbeat_ms - int(seconds * 1000))
        )


def _rows(meta: MetaStore) -> list[str]:
    with meta.transaction() as conn:
        return list(conn.execute(sa.select(runtime_processes.c.run_id)).scalars())


def test_a_row_per_process_replaced_then_deleted(meta: MetaStore, tmp_path: Path) -> None:
    board = StoreStatusBoard(meta, run_id="elsewhere-7-aa", interval=1.0)
    board.publish(_document("elsewhere", 7, "elsewhere-7-aa", [_task("incoming", "source")]))
    other = StoreStatusBoard(meta, run_id="faraway-8-bb", interval=1.0)
    other.publish(_document("faraway", 8, "faraway-8-bb", []))
    board.publish(_document("elsewhere", 7, "elsewhere-7-aa", [_task("warehouse", "sink")]))
    assert sorted(_rows(meta)) == ["elsewhere-7-aa", "faraway-8-bb"]
    found = {p.document["run_id"]: p for p in read_status(tmp_path / "none", meta)}
    assert set(found) == {"elsewhere-7-aa", "faraway-8-bb"}
    shown = found["elsewhere-7-aa"]
    assert shown.alive and shown.document["host"] == "elsewhere" and shown.document["pid"] == 7
    assert [t["name"] for t in shown.tasks] == ["warehouse"]  # the latest publication
    assert shown.document["heartbeat_age"] < board.stale_after
    board.remove()
    assert _rows(meta) == ["faraway-8-bb"]
    assert [p.document["run_id"] for p in read_status(tmp_path / "none", meta)] == ["faraway-8-bb"]


def test_a_row_not_replaced_for_a_few_intervals_is_gone(meta: MetaStore, tmp_path: Path) -> None:
    board = StoreStatusBoard(meta, run_id="elsewhere-7-aa", interval=1.0)
    assert board.stale_after == 5.0
    assert StoreStatusBoard(meta, run_id="x", interval=0.01).stale_after == MIN_STALE_AFTER
    board.publish(_document("elsewhere", 7, "elsewhere-7-aa", [_task("incoming", "source")]))
    _age(meta, "elsewhere-7-aa", board.stale_after - 1)
    assert read_status(tmp_path, meta)[0].alive
    _age(meta, "elsewhere-7-aa", 2)
    (gone,) = read_status(tmp_path, meta)
    assert not gone.alive and gone.tasks[0]["name"] == "incoming"
    # A heartbeat brings it back.
    board.publish(_document("elsewhere", 7, "elsewhere-7-aa", []))
    assert read_status(tmp_path, meta)[0].alive


def test_a_fresh_row_of_a_dead_process_on_this_machine_is_gone(
    meta: MetaStore, tmp_path: Path
) -> None:
    host = socket.gethostname()
    board = StoreStatusBoard(meta, run_id="dead", interval=1.0)
    board.publish(_document(host, 2**22 + 7, "dead", []))
    (gone,) = read_status(tmp_path, meta)
    assert not gone.alive


def test_the_store_and_this_machines_files_are_read_together(
    meta: MetaStore, tmp_path: Path
) -> None:
    folder = tmp_path / "status"
    live = StatusBoard(folder, run_id="here-live")
    stopped = dict(live.document([_task("incoming", "source")], state="stopped"), pid=1)
    live.publish([_task("warehouse", "sink")])
    (folder / "earlier-1.json").write_text(json.dumps(dict(stopped, run_id="here-stopped")))
    stored = StoreStatusBoard(meta, run_id="here-live", interval=1.0)
    stored.publish(live.document([_task("warehouse", "sink")]))
    found = read_status(folder, meta)
    # The live process once (from the store), the stopped one from its file.
    assert sorted(p.document["run_id"] for p in found) == ["here-live", "here-stopped"]
    by_id = {p.document["run_id"]: p for p in found}
    assert by_id["here-live"].alive and "heartbeat_age" in by_id["here-live"].document
    assert not by_id["here-stopped"].alive
    # Without the store only the files count.
    assert all("heartbeat_age" not in p.document for p in read_status(folder))


def test_the_runner_publishes_to_a_shared_store_only(store_url: str, tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "in").mkdir(parents=True)
    (root / "trunkline.yaml").write_text(
        f"meta: {store_url}\n"
        "sources:\n  incoming: {type: files, path: in, glob: '*.csv', topic: orders}\n"
    )
    with Project.open(root) as project:
        runner = Runner(project, RunOptions(status_interval=0.1))
        shared = not store_url.startswith("sqlite")
        assert (runner.store_board is not None) == shared
        runner.start()
        try:
            assert _rows(project.meta) == ([runner.run_id] if shared else [])
            (process,) = read_status(root / ".trunkline" / "status", project.meta)
            assert process.alive and process.document["run_id"] == runner.run_id
            assert [t["name"] for t in process.tasks] == ["incoming"]
            assert ("heartbeat_age" in process.document) == shared
        finally:
            runner.shutdown()
        assert _rows(project.meta) == []
        (stopped,) = read_status(root / ".trunkline" / "status", project.meta)
        assert stopped.document["state"] == "stopped" and not stopped.alive


PROJECT = """\
meta: {dsn}
topics:
  orders: {{partitions: 2}}
sources:
  incoming: {{type: files, path: in, topic: orders}}
sinks:
  warehouse: {{type: duckdb, path: w.duckdb, topics: [orders], mode: upsert, key: [id]}}
"""


@pytest.mark.postgres
def test_status_shows_every_machines_processes(
    postgres_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "trunkline.yaml").write_text(PROJECT.format(dsn=postgres_db))
    with MetaStore.open(postgres_db) as meta:
        a = StoreStatusBoard(meta, run_id="machine-a-41-aa", interval=1.0)
        a.publish(
            _document(
                "machine-a", 41, "machine-a-41-aa", [_task("warehouse", "sink", lag_records=500)]
            )
        )
        b = StoreStatusBoard(meta, run_id="machine-b-42-bb", interval=1.0)
        b.publish(_document("machine-b", 42, "machine-b-42-bb", [_task("incoming", "source")]))

        def status() -> dict[str, Any]:
            assert main(["-p", str(tmp_path), "status", "--json"]) == 0
            return dict(json.loads(capsys.readouterr().out))

        shown = status()
        assert {(p["host"], p["pid"]) for p in shown["processes"]} == {
            ("machine-a", 41),
            ("machine-b", 42),
        }
        rows = {r["name"]: r for r in shown["connectors"]}
        assert rows["warehouse"]["process"] == "machine-a:41"
        assert rows["incoming"]["process"] == "machine-b:42"
        # The sink on A is busy with records waiting: the lag is the sink's.
        assert [p["origin"] for p in shown["pipelines"]] == ["sink"]
        assert shown["gone"] == []
        _age(meta, "machine-a-41-aa", 60)
        shown = status()
        assert [(p["host"], p["pid"]) for p in shown["processes"]] == [("machine-b", 42)]
        assert [(p["host"], p["pid"]) for p in shown["gone"]] == [("machine-a", 41)]
        rows = {r["name"]: r for r in shown["connectors"]}
        assert rows["warehouse"]["state"] == "not running (its process is gone)"
        assert main(["-p", str(tmp_path), "status"]) == 0
        text = capsys.readouterr().out
        assert "process machine-a:41 is gone" in text and "processes running: 1" in text
        assert "process machine-b:42 is running" in text


def test_status_files_of_processes_long_gone_are_forgotten(tmp_path: Path) -> None:
    """A crashed process shows as gone for a day; then the next start deletes its file."""
    folder = tmp_path / "status"
    host = socket.gethostname()
    dead_pid = 2**22 + 12345  # above the largest pid Linux allows: no such process
    for pid, age in ((dead_pid, 2 * 86_400), (dead_pid + 1, 60)):
        board = StatusBoard(folder, run_id=f"{host}-{pid}")
        board.path = folder / f"{host}-{pid}.json"
        document = board.document([])
        document.update(pid=pid, updated=document["updated"] - age)
        board.write(document)
    live = StatusBoard(folder, run_id="live")
    live.publish([])
    assert live.forget_old() == 1
    left = sorted(p.name for p in folder.glob("*.json"))
    assert left == sorted([f"{host}-{dead_pid + 1}.json", live.path.name])
    gone = [p for p in read_status(folder) if not p.alive]
    assert [p.document["pid"] for p in gone] == [dead_pid + 1]
