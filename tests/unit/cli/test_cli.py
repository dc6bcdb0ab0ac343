"""The trunkline command line, run in-process against real projects in temp folders."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import duckdb
import pytest

from trunkline.cli import main
from trunkline.project import Project


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main(list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return Run(capsys, monkeypatch)


@pytest.fixture
def proj(tmp_path: Path, run: Run) -> Path:
    code, _, _ = run("init", str(tmp_path / "p"))
    assert code == 0
    return tmp_path / "p"


def test_init_refuses_to_overwrite(proj: Path, run: Run) -> None:
    code, _, err = run("init", str(proj))
    assert code == 2
    assert "trunkline.yaml" in err


def test_validate(proj: Path, run: Run) -> None:
    code, out, _ = run("-p", str(proj), "validate")
    assert code == 0
    assert "valid" in out
    (proj / "trunkline.yaml").write_text("topics:\n  orders:\n    retension: 7d\n")
    code, _, err = run("validate", str(proj))
    assert code == 2
    assert "unknown key 'retension'" in err
    assert "trunkline.yaml:3:5" in err
    assert "did you mean 'retention'" in err
    code, out, _ = run("validate", str(proj), "--json")
    assert code == 2
    problems = json.loads(out)["problems"]
    assert problems[0]["line"] == 3


def test_missing_project_is_bad_input(tmp_path: Path, run: Run) -> None:
    code, _, err = run("-p", str(tmp_path / "nowhere"), "topic", "list")
    assert code == 2
    assert "project file not found" in err
    assert "trunkline init" in err


def test_topic_lifecycle(proj: Path, run: Run) -> None:
    assert run("-p", str(proj), "topic", "apply")[0] == 0
    code, out, _ = run("-p", str(proj), "topic", "list", "--json")
    assert code == 0
    topics = {t["name"]: t for t in json.loads(out)}
    assert set(topics) == {"orders", "customers"}
    assert len(topics["orders"]["partitions"]) == 3
    assert topics["customers"]["config"]["cleanup_policy"] == "compact"
    code, out, _ = run(
        "-p", str(proj), "topic", "create", "events", "--partitions", "2",
        "--set", "retention=36h", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["config"]["retention_ms"] == 36 * 3600 * 1000
    code, out, _ = run("-p", str(proj), "topic", "alter", "events", "--set", "cleanup=compact")
    assert code == 0
    code, out, _ = run("-p", str(proj), "topic", "describe", "events", "--json")
    assert json.loads(out)["config"]["cleanup_policy"] == "compact"
    assert run("-p", str(proj), "topic", "delete", "events", "--yes")[0] == 0
    code, out, _ = run("-p", str(proj), "topic", "list", "--json")
    assert "events" not in {t["name"] for t in json.loads(out)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "retension=7d"], "did you mean 'retention'"),
        (["--set", "retention"], "expected key=value"),
        (["--partitions", "0"], "partitions"),
        (["--set", "retention=7"], "expected a duration"),
        (["--set", "cleanup=shred"], "'delete', 'compact' or 'compact,delete'"),
        (["--set", "description=x"], "cannot be set on the command line"),
    ],
)
def test_topic_create_bad_settings(proj: Path, run: Run, args: list[str], message: str) -> None:
    code, _, err = run("-p", str(proj), "topic", "create", "bad", *args)
    assert code == 2
    assert message in err
    code, out, _ = run("-p", str(proj), "topic", "list", "--json")
    assert "bad" not in {t["name"] for t in json.loads(out)}


def test_topic_errors(proj: Path, run: Run) -> None:
    run("-p", str(proj), "topic", "apply")
    code, _, err = run("-p", str(proj), "topic", "alter", "orders", "--partitions", "1")
    assert code == 2
    assert "only grow" in err
    code, _, err = run("-p", str(proj), "topic", "describe", "nope")
    assert code == 1
    assert "'nope' does not exist" in err
    code, _, err = run("-p", str(proj), "topic", "create", "bad name")
    assert code == 2
    assert "invalid topic name" in err


def test_produce_and_consume(proj: Path, run: Run) -> None:
    run("-p", str(proj), "topic", "apply")
    lines = b"".join(b'{"id": %d, "v": "x%d"}\n' % (i, i) for i in range(20))
    code, _, err = run("-p", str(proj), "produce", "orders", "--key-field", "id", stdin=lines)
    assert code == 0
    assert "produced 20 record(s)" in err
    code, out, _ = run("-p", str(proj), "consume", "orders", "--from-beginning")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 20
    assert {r["key"] for r in rows} == {str(i) for i in range(20)}
    assert set(rows[0]) >= {"topic", "partition", "offset", "timestamp", "key", "value", "headers"}
    assert json.loads(rows[0]["value"])["id"] == int(rows[0]["key"])
    # Without --from-beginning and --follow there is nothing new to print.
    code, out, _ = run("-p", str(proj), "consume", "orders")
    assert (code, out) == (0, "")
    # A group commits, and resumes where it stopped.
    code, out, _ = run("-p", str(proj), "consume", "orders", "--group", "g", "--from-beginning",
                       "--max", "5", "--format", "raw")  # fmt: skip
    assert code == 0
    assert len(out.splitlines()) == 5
    code, out, _ = run("-p", str(proj), "consume", "orders", "--group", "g", "--from-beginning")
    assert len(out.splitlines()) == 15
    code, out, _ = run("-p", str(proj), "group", "describe", "g", "--json")
    assert json.loads(out)["lag"] == 0


def test_consume_partition_and_offset(proj: Path, run: Run) -> None:
    run("-p", str(proj), "topic", "create", "one")
    run("-p", str(proj), "produce", "one", "--format", "raw", stdin=b"a\nb\nc\nd\n")
    code, out, _ = run("-p", str(proj), "consume", "one", "--partition", "0", "--offset", "2",
                       "--format", "raw")  # fmt: skip
    assert code == 0
    assert out.splitlines() == ["c", "d"]
    code, _, err = run("-p", str(proj), "consume", "one", "--partition", "4")
    assert code == 2
    assert "partition 4 does not exist" in err


def test_binary_values_print_as_base64(proj: Path, run: Run) -> None:
    run("-p", str(proj), "topic", "create", "bin")
    with Project.open(proj) as project:
        from trunkline.hub import Record

        project.hub.produce("bin", [Record(b"\xff\xfe", key=b"k")])
    code, out, _ = run("-p", str(proj), "consume", "bin", "--from-beginning")
    assert code == 0
    row = json.loads(out)
    assert row["value"] == "//4="
    assert row["value_encoding"] == "base64"
    assert "key_encoding" not in row


@pytest.mark.parametrize(
    ("stdin", "args", "message"),
    [
        (b'{"id": 1}\n{"id": 2\n', [], "stdin line 2: expected a JSON value"),
        (b'{"id": 1}\n[1, 2]\n', ["--key-field", "id"], "needs a JSON object, found list"),
        (b'{"id": 1}\n{"other": 2}\n', ["--key-field", "id"], "expected a field 'id'"),
        (b"a\n", ["--format", "raw", "--key-field", "id"], "needs --format json"),
    ],
)
def test_produce_bad_input_writes_nothing(
    proj: Path, run: Run, stdin: bytes, args: list[str], message: str
) -> None:
    run("-p", str(proj), "topic", "apply")
    code, _, err = run("-p", str(proj), "produce", "orders", *args, stdin=stdin)
    assert code == 2
    assert message in err
    code, out, _ = run("-p", str(proj), "topic", "describe", "orders", "--json")
    assert json.loads(out)["records"] == 0


def test_produce_to_unknown_topic(proj: Path, run: Run) -> None:
    code, _, err = run("-p", str(proj), "produce", "ghost", stdin=b"{}\n")
    assert code == 1
    assert "'ghost' does not exist" in err


def test_group_reset(proj: Path, run: Run) -> None:
    run("-p", str(proj), "topic", "create", "one")
    run("-p", str(proj), "produce", "one", "--format", "raw", stdin=b"a\nb\nc\n")
    run("-p", str(proj), "consume", "one", "--group", "g", "--from-beginning")
    code, out, _ = run("-p", str(proj), "group", "reset", "g", "--topic", "one", "--to-earliest",
                       "--json")  # fmt: skip
    assert code == 0
    assert json.loads(out)["offsets"] == {"0": 0}
    code, out, _ = run("-p", str(proj), "group", "reset", "g", "--topic", "one",
                       "--to-datetime", "2000-01-01T00:00:00Z", "--json")  # fmt: skip
    assert json.loads(out)["offsets"] == {"0": 0}
    code, _, err = run("-p", str(proj), "group", "reset", "g", "--topic", "one",
                       "--to-earliest", "--to-latest")  # fmt: skip
    assert code == 2
    assert "exactly one of" in err
    code, _, err = run("-p", str(proj), "group", "reset", "g", "--topic", "one",
                       "--to-datetime", "yesterday")  # fmt: skip
    assert code == 2
    assert "ISO 8601" in err
    code, out, _ = run("-p", str(proj), "group", "list", "--json")
    assert [g["group"] for g in json.loads(out)] == ["g"]
    assert run("-p", str(proj), "group", "delete", "g")[0] == 0


def test_catalog(proj: Path, run: Run) -> None:
    run("-p", str(proj), "topic", "apply")
    code, out, _ = run("-p", str(proj), "catalog", "list", "--json")
    assert code == 0
    names = {d["name"]: d for d in json.loads(out)}
    assert names["hub.orders"]["owner"] == "shop-team"
    code, out, _ = run("-p", str(proj), "catalog", "show", "orders", "--json")
    assert json.loads(out)["kind"] == "topic"
    code, _, err = run("-p", str(proj), "catalog", "show", "ordres")
    assert code == 1
    assert "did you mean" in err


def test_config_explain(run: Run) -> None:
    code, out, _ = run("config", "explain", "--json")
    assert code == 0
    keys = {row["key"] for row in json.loads(out)}
    assert "topics.<name>.retention" in keys or any("retention" in k for k in keys)


def test_hub_maintain(proj: Path, run: Run) -> None:
    run("-p", str(proj), "topic", "apply")
    code, out, _ = run("-p", str(proj), "hub", "maintain", "--json")
    assert code == 0
    assert json.loads(out)["segments_deleted"] == 0


def test_unknown_command_is_usage_error(run: Run) -> None:
    code, _, _ = run("topik", "list")
    assert code == 2


def test_demo_runs(tmp_path: Path, run: Run) -> None:
    code, out, _ = run("demo", "--directory", str(tmp_path / "demo"), "--scale", "0.01")
    assert code == 0
    assert "revenue by country" in out
    assert "hub.orders" in out
    with Project.open(tmp_path / "demo") as project:
        assert project.hub.describe_group("demo-report").lag == 0
        assert sum(project.hub.end_offsets("orders").values()) == 2000
        # The pipeline: files -> hub -> DuckDB + Iceberg, damaged lines dead-lettered.
        assert sum(project.hub.end_offsets("payments").values()) == 1020
        assert sum(project.hub.end_offsets("payment_exports.dlq").values()) == 4
    assert "warehouse.duckdb: SELECT method" in out
    assert "payments-01.csv:" in out
    # The Iceberg table, read by pyiceberg itself: one row per payment after the upserts.
    from pyiceberg.catalog.sql import SqlCatalog

    lakehouse = tmp_path / "demo" / "lakehouse"
    catalog = SqlCatalog("trunkline", uri=f"sqlite:///{lakehouse / 'catalog.db'}")
    iceberg = catalog.load_table("demo.payments").scan().to_arrow()
    catalog.engine.dispose()
    assert iceberg.num_rows == len(set(iceberg.column("payment_id").to_pylist())) == 1000
    assert "1,000 rows in DuckDB and 1,000 in the Iceberg table read back" in out
    # The planned flow: its EXPLAIN, and its result equal to DuckDB's over the same rows.
    assert "flow large_payments_by_method (into warehouse.main.large_payments_by_method)" in out
    assert "scan on iceberg -> duckdb" in out and 'row_filter "payments"."amount" > 50' in out
    assert "final on duckdb <- s1" in out
    with duckdb.connect(str(tmp_path / "demo" / "warehouse.duckdb"), read_only=True) as con:
        flow = con.sql(
            "SELECT method, payments, amount FROM large_payments_by_method ORDER BY 1"
        ).fetchall()
        expected = con.sql(
            "SELECT method, count(*), round(sum(amount), 2) FROM payments WHERE amount > 50 "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert flow == expected and len(flow) == 5


def test_perf_hub_quick(tmp_path: Path, run: Run) -> None:
    code, out, _ = run("perf", "hub", "--quick", "--json", "--directory", str(tmp_path))
    assert code == 0
    figures = json.loads(out)
    for key in (
        "produce_records_s",
        "produce_mb_s",
        "produce_records_s_100b",
        "consume_records_s_100b",
        "latency_p50_ms",
        "latency_p99_ms",
        "raw_ceiling_mb_s",
    ):
        assert figures[key] > 0, key
    assert figures["ack"] == "fsync"
    code, _, err = run("perf", "hub", "--ack", "sometimes")
    assert code == 2
    assert "fsync or written" in err


def test_perf_contracts_quick(tmp_path: Path, run: Run) -> None:
    code, out, _ = run("perf", "contracts", "--quick", "--json", "--directory", str(tmp_path))
    assert code == 0
    figures = json.loads(out)
    # 20,000 orders, one in 1,000 with a negative amount.
    assert figures["validation_failed_records"] == 20
    # The warm-up (all 20,000 in a quick run) and one repeat dead-letter 20 each.
    assert figures["dead_lettered"] == figures["dead_lettered_typed"] == 40
    for key in (
        "validation_records_per_s",
        "json_parse_records_per_s",
        "produce_records_per_s_with_contract",
        "produce_records_per_s_without_contract",
        "contract_overhead",
        "contract_overhead_parse_floor",
        "contract_overhead_typed",
    ):
        assert figures[key] > 0, key
    assert "kafka" not in figures
    assert list(tmp_path.iterdir()) == []  # the temp folder is gone
    code, _, err = run("perf", "contracts", "--ack", "sometimes")
    assert code == 2
    assert "--ack: expected fsync or written, found 'sometimes'" in err


@pytest.mark.parametrize("command", [("contracts",), ("hub", "--compare")])
def test_perf_bad_bootstrap_is_refused_before_any_work(
    tmp_path: Path, run: Run, command: tuple[str, ...]
) -> None:
    code, out, err = run("perf", *command, "--bootstrap", "nohost", "--directory", str(tmp_path))
    assert code == 2
    assert "--bootstrap: expected host:port[,host:port...], such as 127.0.0.1:9092, found " \
        "'nohost'" in err  # fmt: skip
    assert out == ""
    assert list(tmp_path.iterdir()) == []  # nothing was measured
