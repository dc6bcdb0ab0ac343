"""``trunkline run`` (its checks), ``trunkline status`` and ``trunkline dlq``, in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from trunkline.cli import main
from trunkline.connectors.base import DeadLetter
from trunkline.project import Project
from trunkline.runtime import HubDeadLetters
from trunkline.testing.connectors import fetched

PROJECT = """\
topics:
  orders: {partitions: 2}
sources:
  incoming: {type: files, path: in, topic: orders}
sinks:
  warehouse: {type: duckdb, path: w.duckdb, topics: [orders], mode: upsert, key: [id]}
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "trunkline.yaml").write_text(PROJECT)
    return tmp_path


def test_status_before_any_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "-p", str(project), "status", "--json")
    assert code == 0
    states = {c["name"]: c["state"] for c in json.loads(out)["connectors"]}
    assert states == {"incoming": "never run", "warehouse": "never run"}
    code, out, _ = cli(capsys, "-p", str(project), "status")
    assert code == 0 and "never run" in out


def test_run_checks_its_arguments(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "-p", str(project), "run", "--only", "warehous")
    assert code == 2
    assert "did you mean 'warehouse'" in err
    code, _, err = cli(capsys, "-p", str(project), "run", "--memory", "lots")
    assert code == 2 and "--memory" in err
    (project / "trunkline.yaml").write_text("topics: {}\n")
    code, _, err = cli(capsys, "-p", str(project), "run")
    assert code == 2 and "no sources or sinks" in err


def test_connector_settings_errors_name_file_line_column(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = "sinks:\n  warehouse:\n    type: duckdb\n    path: w.duckdb\n    topics: [orders]\n"
    (project / "trunkline.yaml").write_text(head + "    mode: upsert\n")
    code, _, err = cli(capsys, "-p", str(project), "run")
    assert code == 2
    assert "mode 'upsert' needs the primary key columns in 'key'" in err
    assert "trunkline.yaml:6:11" in err
    (project / "trunkline.yaml").write_text(head + "    batch_recods: 10\n")
    code, _, err = cli(capsys, "-p", str(project), "validate")
    assert code == 2
    assert "unknown key 'batch_recods' at" in err and "trunkline.yaml:6:5" in err
    assert "did you mean 'batch_records'?" in err


def test_dlq_list_show_and_replay(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Project.open(project) as opened:
        opened.create_topic("orders")
        HubDeadLetters(opened.hub, "incoming").write(
            [DeadLetter(b"1,2,3", "expected 2 fields, found 3", "source", "a.csv:7")]
        )
        batch = fetched("orders", 1, 5, [b"{bad json"])
        HubDeadLetters(opened.hub, "warehouse").write_records(
            batch, [0], ["Missing a name for object member."], topic="orders"
        )
    code, out, _ = cli(capsys, "-p", str(project), "dlq", "list", "--json")
    assert code == 0
    listed = {d["connector"]: d for d in json.loads(out)}
    assert listed["incoming"]["records"] == 1
    assert listed["incoming"]["latest_origin"] == "a.csv:7"
    assert listed["warehouse"]["latest_error"].startswith("Missing a name")
    code, out, _ = cli(capsys, "-p", str(project), "dlq", "show", "warehouse", "--json")
    (shown,) = json.loads(out)
    assert shown["origin"] == "orders/1@5" and shown["value"] == "{bad json"
    assert shown["headers"]["trunkline.offset"] == "5"
    capsys.readouterr()
    sys.stdout.flush()
    code, out, _ = cli(capsys, "-p", str(project), "dlq", "show", "incoming")
    assert code == 0 and "a.csv:7" in out
    code, out, _ = cli(capsys, "-p", str(project), "dlq", "replay", "warehouse", "--json")
    assert code == 0
    assert json.loads(out)["records"] == {"warehouse.retry": 1}
    code, out, _ = cli(capsys, "-p", str(project), "dlq", "replay", "warehouse")
    assert code == 0 and "nothing to replay" in out
    code, _, err = cli(capsys, "-p", str(project), "dlq", "replay", "incoming")
    assert code == 2 and "--raw" in err
    code, _, err = cli(capsys, "-p", str(project), "dlq", "show", "nobody")
    assert code == 2 and "no dead letters" in err
