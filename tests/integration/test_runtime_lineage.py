"""Lineage end to end: ``trunkline run`` moves files -> topic -> DuckDB table, and
``trunkline lineage`` then shows folder -> topic -> table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pytest

from trunkline.cli import main
from trunkline.project import Project

sys.path.insert(0, str(Path(__file__).parent))
from _runtime_helpers import (
    files_done,
    group_lag,
    run_log,
    start_run,
    stop,
    wait_for,
    write_project,
)

PROJECT = """\
topics:
  orders: {partitions: 2}
sources:
  incoming:
    type: files
    path: incoming
    glob: "*.csv"
    topic: orders
    settle: 0s
    poll_interval: 100ms
sinks:
  warehouse:
    type: duckdb
    path: warehouse.duckdb
    topics: [orders]
    linger: 100ms
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_then_lineage_shows_folder_topic_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path / "p", PROJECT)
    (root / "incoming").mkdir()
    (root / "incoming" / "a.csv").write_text("id,amount\n1,10\n2,20\n3,30\n")
    run = start_run(root)
    try:
        wait_for(lambda: files_done(root, "incoming") == {"a.csv"}, 60, "the file to be read")
        wait_for(lambda: group_lag(root, "sink-warehouse") == 0, 60, "the sink to catch up")
    finally:
        assert stop(run) == 0, run_log(root)[-3000:]
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM main.orders").fetchone() == (3,)

    p = ("-p", str(root))
    code, out, _ = cli(capsys, *p, "lineage", "warehouse.main.orders", "--upstream", "--json")
    assert code == 0
    found = json.loads(out)
    assert found["dataset"] == "warehouse.main.orders"
    assert "downstream" not in found
    assert [(e["source"], e["target"], e["job_kind"], e["job"]) for e in found["upstream"]] == [
        ("hub.orders", "warehouse.main.orders", "sink", "warehouse"),
        ("incoming.*.csv", "hub.orders", "source", "incoming"),
    ]

    code, out, _ = cli(capsys, *p, "lineage", "incoming.*.csv", "--downstream", "--json")
    assert code == 0
    chain = [(e["source"], e["target"]) for e in json.loads(out)["downstream"]]
    assert chain == [("incoming.*.csv", "hub.orders"), ("hub.orders", "warehouse.main.orders")]

    code, out, _ = cli(capsys, *p, "lineage", "hub.orders")
    assert code == 0
    assert "upstream:\n  incoming.*.csv -> hub.orders  (source incoming)" in out
    assert "downstream:\n  hub.orders -> warehouse.main.orders  (sink warehouse)" in out

    with Project.open(root) as project:  # the folder and the file: the systems' locations
        assert project.meta.get_system("incoming").location == str(root / "incoming")
        assert project.meta.get_system("warehouse").location == str(root / "warehouse.duckdb")

    code, _, err = cli(capsys, *p, "lineage", "hub.orders", "--upstream", "--downstream")
    assert code == 2
    assert "--upstream and --downstream exclude each other" in err
    code, _, err = cli(capsys, *p, "lineage", "warehouse.main.order")
    assert code != 0
    assert "did you mean 'warehouse.main.orders'" in err
