"""Flows: batch into a target, continuous over new offsets without double counting, and the
CLI commands of the planner."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _planner_data import event

from trunkline.cli import main
from trunkline.errors import ConfigError, PlanningError
from trunkline.federation.flows import run_flow
from trunkline.project import Project


def _table(project: Project, name: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(project.root / "wh.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT * FROM main.{name} ORDER BY 1").fetchall()


def test_batch_flow_replaces_its_target_and_records_lineage(project: Project) -> None:
    report = run_flow(project, "totals")
    assert report["rows"] == 3 and report["mode"] == "batch"
    first = _table(project, "totals")
    assert [row[1] for row in first] == [1000, 1000, 1000]
    run_flow(project, "totals")
    assert _table(project, "totals") == first  # replaced, not appended
    edges = project.meta.upstream("wh.main.totals")
    assert [str(e.source) for e in edges] == ["hub.events"]
    assert edges[0].job_kind == "flow"


def test_failing_flow_writes_nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from trunkline.planner import Planner

    def broken(self: Planner, plan: object) -> pa.Table:
        raise PlanningError("boom")

    monkeypatch.setattr(Planner, "run", broken)
    with pytest.raises(PlanningError):
        run_flow(project, "totals")
    with duckdb.connect(str(project.root / "wh.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "totals" not in tables


def test_continuous_flow_resumes_without_double_counting(project: Project) -> None:
    run_flow(project, "totals_live", once=True)
    assert _table(project, "totals_live")[0][1] == 1000
    # Nothing new: nothing changes.
    assert run_flow(project, "totals_live", once=True)["rows"] == 0
    values = [json.dumps(event(i)).encode() for i in range(3000, 3300)]
    project.hub.produce("events", pa.table({"value": pa.array(values, pa.binary())}))
    run_flow(project, "totals_live", once=True)
    rows = _table(project, "totals_live")
    assert [r[1] for r in rows] == [1100, 1100, 1100]
    assert max(r[3] for r in rows) == 3299
    # A restart (a new process would do the same) resumes from the committed offsets.
    with Project.open(project.root) as again:
        assert run_flow(again, "totals_live", once=True)["rows"] == 0
    assert [r[1] for r in _table(project, "totals_live")] == [1100, 1100, 1100]


def test_continuous_flow_refuses_aggregates_that_do_not_merge(project: Project) -> None:
    from trunkline.federation.flows import _aggregates

    with pytest.raises(PlanningError, match="AVG"):
        _aggregates("select kind, avg(amount) from events group by kind")


def test_unknown_flow_and_target(project: Project) -> None:
    with pytest.raises(ConfigError, match="did you mean 'totals'"):
        run_flow(project, "totls")


# CLI -------------------------------------------------------------------------------------


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_query_formats_plan_and_flow(
    project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = str(project.root)
    code, out, _ = cli("-p", root, "query", "select count(*) as n from events", capsys=capsys)
    assert code == 0 and "3000" in out
    code, out, _ = cli(
        "-p",
        root,
        "query",
        "select kind, count(*) as n from events group by kind order by 1",
        "--format",
        "json",
        capsys=capsys,
    )
    assert json.loads(out.splitlines()[0]) == {"kind": "a", "n": 1000}
    target = tmp_path / "out.parquet"
    code, _, _ = cli(
        "-p",
        root,
        "query",
        "select id from events where id < 5",
        "--format",
        "parquet",
        "--output",
        str(target),
        capsys=capsys,
    )
    assert code == 0 and pq.read_table(target).num_rows == 5
    code, out, _ = cli("-p", root, "plan", "totals", "--json", "--analyze", capsys=capsys)
    data = json.loads(out)
    assert code == 0 and data["steps"][-1]["actual"]["rows"] == 3
    code, out, _ = cli("-p", root, "plan", "select * from evnts", capsys=capsys)
    assert code == 2
    code, out, _ = cli("-p", root, "flow", "run", "totals", capsys=capsys)
    assert code == 0 and "3 row(s) into wh.main.totals" in out


def test_cli_catalog_add_and_analyze(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(project.root)
    lake = project.root / "lake2"
    lake.mkdir()
    pq.write_table(pa.table({"a": [1, 2, 2]}), lake / "t.parquet")
    code, out, _ = cli(
        "-p", root, "catalog", "add", "parquet", "lake2", "lake2", "--json", capsys=capsys
    )
    assert code == 0 and json.loads(out)["datasets"][0]["rows"] == 3
    code, out, _ = cli("-p", root, "analyze", "lake2.t", "--json", capsys=capsys)
    assert json.loads(out)[0]["columns"]["a"]["distinct"] == 2
    code, _, err = cli(
        "-p", root, "catalog", "add", "postgres", "db", "postgresql://u:secret@h/db", capsys=capsys
    )
    assert code == 2 and "secret" not in err and "${VAR}" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
