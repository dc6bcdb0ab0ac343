"""Where each pipeline's lag comes from: its source, the hub, or a slow sink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trunkline.cli import main
from trunkline.project import Project
from trunkline.runtime._lag import Pipeline, lag_origin, pipelines
from trunkline.runtime._status import StatusBoard

PROJECT = """\
sources:
  incoming:
    type: files
    path: in
    topic: orders
    transforms:
      - route: {field: country, topics: {DE: orders.de}}
  api: {type: http, port: 0, topics: [clicks]}
sinks:
  warehouse: {type: duckdb, path: w.duckdb, topics: [orders]}
  lake: {type: parquet, path: lake, topics: [clicks, orders.de]}
  audit: {type: parquet, path: audit, topics: [external]}
"""

WAREHOUSE = Pipeline(("incoming",), ("orders",), "warehouse")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "trunkline.yaml").write_text(PROJECT)
    return tmp_path


def test_a_pipeline_is_a_sink_with_the_sources_of_its_topics(root: Path) -> None:
    with Project.open(root) as project:
        found = pipelines(project.config)
    assert found == [
        WAREHOUSE,
        Pipeline(("api", "incoming"), ("clicks", "orders.de"), "lake"),  # routed in, too
        Pipeline((), ("external",), "audit"),  # fed by `trunkline produce`, say
    ]
    assert str(found[0]) == "incoming -> orders -> warehouse"
    assert str(found[2]) == "external -> audit"


def _rows(sink: dict[str, Any], backlog: float | None = None) -> dict[tuple[str, str], Any]:
    figures = {"rows_per_s": 0.0, "busy": 0.0, "backpressured": 0.0, "idle": 1.0}
    return {
        ("sink", "warehouse"): {**figures, "state": "running", **sink},
        ("source", "incoming"): {**figures, "state": "running", "source_backlog": backlog},
    }


def test_lag_origin_names_the_stage_that_holds_the_records() -> None:
    slow = _rows({"lag_records": 5000, "lag_seconds": 12.0, "busy": 0.95}, backlog=10)
    assert lag_origin(WAREHOUSE, slow)["origin"] == "sink"
    assert "sink warehouse is slow: busy 95%" in lag_origin(WAREHOUSE, slow)["why"]
    pushed_back = _rows({"lag_records": 5000, "busy": 0.5, "backpressured": 0.3})
    assert lag_origin(WAREHOUSE, pushed_back)["origin"] == "sink"
    restarting = _rows({"lag_records": 5000, "state": "restarting"}, backlog=10)
    assert lag_origin(WAREHOUSE, restarting) == {
        "pipeline": "incoming -> orders -> warehouse",
        "sink": "warehouse",
        "origin": "hub",
        "why": "5,000 records (0.0s) behind wait in the hub; sink warehouse is restarting",
    }
    unread = _rows({"lag_records": 0}, backlog=123_456)
    assert lag_origin(WAREHOUSE, unread)["origin"] == "source"
    assert (
        lag_origin(WAREHOUSE, unread)["why"] == "input not read yet by incoming (123,456 to read)"
    )
    assert lag_origin(WAREHOUSE, _rows({"lag_records": 0}, backlog=0))["origin"] == "none"
    never = {("sink", "warehouse"): {"state": "never run"}}
    assert lag_origin(WAREHOUSE, never)["origin"] == "unknown"


def test_status_shows_each_pipelines_lag_origin(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shares = {"busy": 0.9, "backpressured": 0.0, "idle": 0.1}
    task = {"rows_per_s": 10.0, "share": shares, "counters": {}, "last_error": ""}
    board = StatusBoard(root / ".trunkline" / "status", run_id="r")  # this live process
    board.publish(
        [
            {
                **task,
                "name": "warehouse",
                "kind": "sink",
                "type": "duckdb",
                "state": "running",
                "gauges": {"lag_records": 700, "lag_seconds": 3.5},
            },
            {
                **task,
                "name": "incoming",
                "kind": "source",
                "type": "files",
                "state": "running",
                "gauges": {"backlog_bytes": 0},
            },
            {
                **task,
                "name": "api",
                "kind": "source",
                "type": "http",
                "state": "failed",
                "gauges": {},
                "last_error": "ConnectorError: cannot listen on 0.0.0.0:8088",
            },
        ]
    )
    assert main(["-p", str(root), "status", "--json"]) == 0
    found = {p["sink"]: p for p in json.loads(capsys.readouterr().out)["pipelines"]}
    assert found["warehouse"]["origin"] == "sink"
    assert found["lake"]["origin"] == "unknown"  # never run
    assert main(["-p", str(root), "status"]) == 0
    text = capsys.readouterr().out
    assert "lag of incoming -> orders -> warehouse: sink - sink warehouse is slow" in text
    # A task stopped by a non-retryable error says why.
    assert "last error of api: ConnectorError: cannot listen on 0.0.0.0:8088" in text
