"""Contracts end to end: the CLI on a project with a contracted topic, and Confluent's
JSONDeserializer reading what the hub wrote (our registry over HTTP)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from trunkline.api import create_app
from trunkline.cli import main
from trunkline.meta import MetaStore
from trunkline.project import Project
from trunkline.schemas import SchemaRegistry

FIXTURE = Path(__file__).parents[1] / "fixtures" / "contracts" / "orders.yaml"
GOOD = ['{"order_id": "o-1", "amount": 5, "status": "paid"}', '{"order_id": "o-2", "amount": 7}']
BAD = '{"order_id": "o-3", "amount": -2, "email": "nobody", "status": "paid"}'


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        code = main(list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def project_dir(root: Path, policy: str, retention: str = "7d") -> Path:
    (root / "contracts").mkdir(parents=True)
    shutil.copy(FIXTURE, root / "contracts" / "orders.yaml")
    (root / "trunkline.yaml").write_text(
        "meta: sqlite:///meta.db\n"
        "topics:\n"
        f"  orders: {{partitions: 1, retention: {retention}, contract: contracts/orders.yaml,"
        f" on_violation: {policy}}}\n"
    )
    return root


def test_produce_reject(tmp_path: Path, cli: Cli) -> None:
    root = project_dir(tmp_path, "reject")
    assert cli("-p", str(root), "topic", "apply")[0] == 0
    code, _, err = cli("-p", str(root), "produce", "orders", stdin="\n".join([*GOOD, BAD]))
    assert code == 2
    assert "break contract shop-orders@1.0.0" in err
    assert "amount.range" in err and "email=<pii, hidden>" in err and "nobody" not in err
    code, _, _ = cli("-p", str(root), "produce", "orders", stdin="\n".join(GOOD))
    assert code == 0
    with Project.open(root) as project:
        values = [m.value for m in project.hub.fetch("orders", 0, 0).messages()]
    assert len(values) == 2 and all(v is not None and v[0] == 0 for v in values)


def test_produce_dead_letter_and_check(tmp_path: Path, cli: Cli) -> None:
    root = project_dir(tmp_path, "dead_letter")
    assert cli("-p", str(root), "topic", "apply")[0] == 0
    code, out, err = cli(
        "-p", str(root), "produce", "orders", "--json", stdin="\n".join([*GOOD, BAD])
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["records"] == 2 and summary["dead_lettered"] == {"orders.dlq": 1}
    with Project.open(root) as project:
        (letter,) = project.hub.fetch("orders.dlq", 0, 0).messages()
    assert letter.value == BAD.encode()  # the original bytes
    headers = dict(letter.headers)
    assert headers["trunkline.stage"] == b"contract"
    assert [v for k, v in letter.headers if k == "trunkline.rule"] == [
        b"email.pattern",
        b"amount.range",
    ]
    assert [v for k, v in letter.headers if k == "trunkline.reason"][
        1
    ] == b"is not >= 0 and <= 10000"

    code, out, _ = cli("-p", str(root), "contract", "check", "orders", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["records"] == 2 and report["ok"]
    assert {r["rule"]: r["passed"] for r in report["rules"]}["amount.range"] == 2


def test_check_reports_failures_and_retention(tmp_path: Path, cli: Cli) -> None:
    root = project_dir(tmp_path, "reject", retention="3d")
    assert cli("-p", str(root), "topic", "apply")[0] == 0
    # Data written before the contract tightened: a plain produce on the inner hub.
    with Project.open(root) as project:
        inner = project.hub.inner  # type: ignore[attr-defined]
        inner.produce("orders", [{"value": GOOD[0]}, {"value": BAD}])
    code, out, _ = cli("-p", str(root), "contract", "check", "orders")
    assert code == 1
    assert "amount.range: 1 passed, 1 failed" in out
    assert "partition 0 offset 1: amount=-2" in out
    assert "agrees a retention of 7d, but the topic keeps records for 3d" in out
    code, _, err = cli("-p", str(root), "validate")
    assert code == 2
    assert "orders.yaml:" in err and "retention of 7d" in err


def test_broken_contract_yaml_via_cli(tmp_path: Path, cli: Cli) -> None:
    root = project_dir(tmp_path, "reject")
    contract = root / "contracts" / "orders.yaml"
    contract.write_text(
        contract.read_text().replace("  - name: orders\n", "  - name: orders\n  x\n")
    )
    code, _, err = cli("-p", str(root), "topic", "apply")
    assert code == 2
    assert f"{contract}:" in err and "invalid YAML" in err
    code, _, err = cli("contract", "lint", str(contract))
    assert code == 2 and "error" in err
    with Project.open(root) as project:
        assert project.hub.list_topics() == []


def test_lint_and_diff_cli(tmp_path: Path, cli: Cli) -> None:
    code, out, _ = cli("contract", "lint", str(FIXTURE), "--json")
    assert code == 0 and json.loads(out)["errors"] == 0
    new = tmp_path / "new.yaml"
    new.write_text(FIXTURE.read_text().replace("        unique: true\n", "", 1))
    code, out, _ = cli("contract", "diff", str(FIXTURE), str(new), "--json")
    assert code == 1  # a breaking change without a major bump
    data = json.loads(out)
    assert data["required_bump"] == "major" and data["suggested_version"] == "2.0.0"
    assert any(
        c["breaking"] and c["where"] == "properties.order_id.unique" for c in data["changes"]
    )


def test_diff_names_downstream_consumers(tmp_path: Path, cli: Cli) -> None:
    root = project_dir(tmp_path, "reject")
    assert cli("-p", str(root), "topic", "apply")[0] == 0
    with Project.open(root) as project:
        meta = project.meta
        meta.upsert_system("wh", "duckdb", "warehouse.duckdb")
        meta.upsert_dataset("wh", "main.orders", "table")
        meta.record_lineage("hub.orders", "wh.main.orders", job="warehouse", job_kind="connector",
                            run_id="r1")  # fmt: skip
    new = tmp_path / "v2.yaml"
    new.write_text(
        FIXTURE.read_text().replace("      - name: quantity\n        logicalType: integer\n", "")
    )
    code, out, _ = cli("-p", str(root), "contract", "diff", str(root / "contracts" / "orders.yaml"),
                       str(new), "--json")  # fmt: skip
    assert code == 1  # removing a property needs a major bump
    data = json.loads(out)
    assert data["topics"] == ["orders"]
    assert data["affected"] == {"datasets": ["wh.main.orders"], "jobs": ["connector warehouse"]}


@pytest.fixture
def served_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = project_dir(tmp_path / "p", "reject")
    with MetaStore.open(f"sqlite:///{root}/meta.db") as store:
        app = create_app(SchemaRegistry(store), token="t")
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}", root
        finally:
            server.should_exit = True
            thread.join(timeout=20)


def test_confluent_json_deserializer_reads_produced_values(
    served_registry: tuple[str, Path], cli: Cli
) -> None:
    sr = pytest.importorskip("confluent_kafka.schema_registry")
    json_serde = pytest.importorskip("confluent_kafka.schema_registry.json_schema")
    from confluent_kafka.serialization import MessageField, SerializationContext

    url, root = served_registry
    assert cli("-p", str(root), "topic", "apply")[0] == 0
    assert cli("-p", str(root), "produce", "orders", stdin="\n".join(GOOD))[0] == 0
    client = sr.SchemaRegistryClient({"url": url, "basic.auth.user.info": "trunkline:t"})
    deserializer = json_serde.JSONDeserializer(None, schema_registry_client=client)
    context = SerializationContext("orders", MessageField.VALUE)
    with Project.open(root) as project:
        values = [m.value for m in project.hub.fetch("orders", 0, 0).messages()]
    decoded = [deserializer(v, context) for v in values]
    assert decoded == [json.loads(g) for g in GOOD]


@pytest.mark.kafka
def test_dead_letters_on_kafka(tmp_path: Path, kafka_bootstrap: str) -> None:
    """The same produce path on Apache Kafka: the dead-letter topic is created once, used
    by every later batch, and the good records land on the contracted topic."""
    from trunkline.contracts._hub import ContractedHub, ContractedProduceResult

    topic = f"orders-{uuid.uuid4().hex[:8]}"
    root = project_dir(tmp_path, "dead_letter")
    (root / "trunkline.yaml").write_text(
        f'hub: {{backend: kafka, bootstrap: "{kafka_bootstrap}"}}\n'
        "meta: sqlite:///meta.db\n"
        f"topics:\n  {topic}: {{partitions: 1, contract: contracts/orders.yaml,"
        " on_violation: dead_letter}\n"
    )
    with Project.open(root) as project:
        hub = project.hub
        assert isinstance(hub, ContractedHub)
        try:
            project.apply_topics()
            for batch in ([GOOD[0], BAD], [BAD, GOOD[1]]):
                result = hub.produce(topic, [{"value": v.encode()} for v in batch])
                assert isinstance(result, ContractedProduceResult)
                assert result.dead_lettered == 1 and result.dead_letter_topic == f"{topic}.dlq"
            letters = list(hub.fetch(f"{topic}.dlq", 0, 0, timeout=10).messages())
            assert [m.value for m in letters] == [BAD.encode(), BAD.encode()]
            assert dict(letters[0].headers)["trunkline.stage"] == b"contract"
            assert hub.describe_topic(f"{topic}.dlq").config.retention_ms is None
            good = hub.fetch(topic, 0, 0, timeout=10).messages()
            assert [json.loads(m.value[5:]) for m in good if m.value] == [
                json.loads(g) for g in GOOD
            ]
        finally:
            for name in (topic, f"{topic}.dlq"):
                with contextlib.suppress(Exception):  # best effort: keep the broker small
                    hub.delete_topic(name)
