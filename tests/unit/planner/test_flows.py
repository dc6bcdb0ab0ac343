"""Flows: batch into a target, continuous over new offsets without double counting, and the
CLI commands of the planner."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
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
    from trunkline.federation._continuous import aggregates as _aggregates

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


# Continuous flows inside `trunkline run`, and into topics ----------------------------------


def _with_flows(project: Project, text: str) -> Project:
    """The project reopened with ``text`` appended under its ``flows:``."""
    path = project.root / "trunkline.yaml"
    path.write_text(path.read_text() + text)
    return Project.open(project.root)


def _wait(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_runs_continuous_flows_as_supervised_tasks(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from trunkline.runtime import Runner, RunOptions

    runner = Runner(project, RunOptions(status_interval=0.1))
    assert [(t.kind, t.name) for t in runner.tasks] == [("flow", "totals_live")]

    def flow() -> dict[str, object]:
        return next(s for s in runner.samples() if s["name"] == "totals_live")

    def caught_up(records: int) -> bool:
        sample = flow()
        counters, gauges = sample["counters"], sample["gauges"]
        assert isinstance(counters, dict) and isinstance(gauges, dict)
        return counters.get("records") == records and gauges.get("lag_records") == 0

    runner.start()
    try:
        _wait(lambda: caught_up(3000), "the flow to fold the first 3000 events")
        values = [json.dumps(event(i)).encode() for i in range(3000, 3300)]
        project.hub.produce("events", pa.table({"value": pa.array(values, pa.binary())}))
        _wait(lambda: caught_up(3300), "the flow to fold 300 more")
    finally:
        runner.shutdown()
    assert flow()["kind"] == "flow" and flow()["state"] == "stopped"
    rows = _table(project, "totals_live")
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("a", 1100, 3297),
        ("b", 1100, 3298),
        ("c", 1100, 3299),
    ]
    # Lineage is recorded by the task as by `trunkline flow run`.
    assert [str(e.source) for e in project.meta.upstream("wh.main.totals_live")] == ["hub.events"]
    # `trunkline status` lists the flow with its figures.
    assert main(["-p", str(project.root), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    row = next(c for c in status["connectors"] if c["name"] == "totals_live")
    assert row["kind"] == "flow" and row["records"] == 3300 and row["lag_records"] == 0


def test_run_stops_a_flow_that_cannot_run_and_says_why(project: Project) -> None:
    from trunkline.runtime import Runner, RunOptions

    with _with_flows(
        project,
        "  to_lake:\n    sql: select kind, count(*) as n from events group by kind\n"
        "    into: lake.kinds\n    freshness: 1s\n",
    ) as again:
        runner = Runner(again, RunOptions(only=("to_lake",), status_interval=0.1))
        runner.start()
        try:
            _wait(lambda: runner.failed == ["to_lake"], "the flow to fail")
        finally:
            runner.shutdown()
        sample = runner.samples()[0]
    assert sample["counters"].get("restarts", 0) == 0  # not retried: a restart cannot help
    assert "lake.kinds is parquet" in sample["last_error"]


def _latest_per_key(project: Project, topic: str) -> dict[str, dict[str, object]]:
    latest: dict[str, dict[str, object]] = {}
    for partition in project.hub.end_offsets(topic):
        fetched = project.hub.fetch(topic, partition, 0, max_records=100_000)
        for key, value in zip(
            fetched.records.column("key").to_pylist(),
            fetched.records.column("value").to_pylist(),
            strict=True,
        ):
            latest[key.decode()] = json.loads(value)
    return latest


def test_flow_into_a_topic_survives_a_crash_between_produce_and_commit(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trunkline.federation._continuous import ContinuousFlow

    with _with_flows(
        project,
        "  kinds_topic:\n    sql: select kind, count(*) as n, sum(id) as ids from events\n"
        "      group by kind\n    into: hub.kind_totals\n    freshness: 1s\n",
    ) as again:
        assert run_flow(again, "kinds_topic", once=True)["rows"] == 3
        values = [json.dumps(event(i)).encode() for i in range(3000, 3300)]
        again.hub.produce("events", pa.table({"value": pa.array(values, pa.binary())}))
        produce = ContinuousFlow._produce

        def crash_after_produce(self: ContinuousFlow, changed: pa.Table) -> int:
            produce(self, changed)
            raise RuntimeError("killed after the produce, before the commit")

        monkeypatch.setattr(ContinuousFlow, "_produce", crash_after_produce)
        with pytest.raises(RuntimeError, match="killed"):
            run_flow(again, "kinds_topic", once=True)
        monkeypatch.undo()
        # The restart computes the uncommitted increment again; the records it produced
        # twice carry the groups' whole values, so the newest per key counts each event once.
        assert run_flow(again, "kinds_topic", once=True)["rows"] == 3
        assert run_flow(again, "kinds_topic", once=True)["rows"] == 0
        latest = _latest_per_key(again, "kind_totals")
    expected = {
        k: {
            "kind": k,
            "n": 1100,
            "ids": sum(i for i in range(3300) if "abc"[i % 3] == k),
        }
        for k in "abc"
    }
    assert latest == expected


def test_flow_cannot_feed_its_own_topic(project: Project) -> None:
    with (
        _with_flows(
            project,
            "  loop:\n    sql: select id from events\n    into: hub.events\n    freshness: 1s\n",
        ) as again,
        pytest.raises(ConfigError, match="a flow cannot feed itself"),
    ):
        run_flow(again, "loop", once=True)


def test_run_restarts_a_flow_after_a_retryable_error(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trunkline.errors import EngineError
    from trunkline.federation._continuous import ContinuousFlow
    from trunkline.runtime import Runner, RunOptions

    step = ContinuousFlow.step
    failures = []

    def flaky(self: ContinuousFlow) -> object:
        if not failures:
            failures.append(1)
            raise EngineError("the target file is locked", engine="duckdb", retryable=True)
        return step(self)

    monkeypatch.setattr(ContinuousFlow, "step", flaky)
    runner = Runner(project, RunOptions(status_interval=0.1))
    runner.start()
    try:
        _wait(
            lambda: runner.samples()[0]["gauges"].get("lag_records") == 0,
            "the restarted flow to catch up",
        )
    finally:
        runner.shutdown()
    sample = runner.samples()[0]
    assert sample["counters"]["restarts"] == 1 and "locked" in sample["last_error"]
    assert [r[1] for r in _table(project, "totals_live")] == [1000, 1000, 1000]
