"""Enforcement at produce through Project.hub, schema registration and bad contracts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from _contract_text import FIXTURE

from trunkline.contracts._hub import ContractedHub, ContractedProduceResult
from trunkline.contracts._lint import project_problems
from trunkline.errors import ContractViolation, InvalidContract, InvalidRecord, TopicNotFound
from trunkline.hub import Record
from trunkline.project import Project

GOOD = {"order_id": "o-1", "amount": 5, "status": "paid"}
BAD = {"order_id": "o-2", "amount": -1, "status": "lost", "email": "secret-address"}


def make(tmp_path: Path, policy: str = "reject", retention: str = "7d") -> Path:
    (tmp_path / "contracts").mkdir(parents=True)
    shutil.copy(FIXTURE, tmp_path / "contracts" / "orders.yaml")
    (tmp_path / "trunkline.yaml").write_text(
        "topics:\n"
        f"  orders: {{partitions: 2, retention: {retention}, contract: contracts/orders.yaml, "
        f"on_violation: {policy}}}\n"
        "  plain: {}\n"
    )
    return tmp_path


def records(*values: dict[str, object]) -> list[Record]:
    return [Record(json.dumps(v).encode(), key=str(i).encode()) for i, v in enumerate(values)]


def all_values(project: Project, topic: str) -> list[bytes]:
    out = []
    for partition in project.hub.end_offsets(topic):
        out += [m.value for m in project.hub.fetch(topic, partition, 0).messages() if m.value]
    return out


def test_apply_registers_the_schema(tmp_path: Path) -> None:
    with Project.open(make(tmp_path)) as project:
        project.apply_topics()
        assert isinstance(project.hub, ContractedHub)
        registered = project.registry.get_version("orders-value")
        assert registered.schema_type == "JSON"
        dataset = project.meta.get_dataset("hub", "orders")
        assert dataset.schema_ref is not None and dataset.schema_ref.subject == "orders-value"
        assert dataset.owner == "alice"
        assert project.registry.subjects() == ["orders-value"]


def test_reject_writes_nothing(tmp_path: Path) -> None:
    with Project.open(make(tmp_path)) as project:
        project.apply_topics()
        with pytest.raises(ContractViolation) as caught:
            project.hub.produce("orders", records(GOOD, BAD))
        error = caught.value
        assert isinstance(error, InvalidRecord)
        assert error.records == 1 and error.total == 2
        text = str(error)
        assert "amount.range (field 'amount'): 1 record(s)" in text
        assert "email=<pii, hidden>" in text and "secret-address" not in text
        assert sum(project.hub.end_offsets("orders").values()) == 0


def test_good_records_are_in_wire_format(tmp_path: Path) -> None:
    with Project.open(make(tmp_path)) as project:
        project.apply_topics()
        project.hub.produce("orders", records(GOOD))
        (value,) = all_values(project, "orders")
        schema_id = project.registry.get_version("orders-value").id
        assert value[:5] == b"\x00" + int(schema_id).to_bytes(4, "big")
        assert json.loads(value[5:]) == GOOD
        # Already framed with a known id: accepted as is; an unknown id is refused.
        project.hub.produce("orders", [Record(value)])
        assert all_values(project, "orders").count(value) == 2
        with pytest.raises(InvalidRecord, match="schema id 999"):
            project.hub.produce("orders", [Record(b"\x00\x00\x00\x03\xe7" + value[5:])])


def test_dead_letter_policy(tmp_path: Path) -> None:
    with Project.open(make(tmp_path, "dead_letter")) as project:
        project.apply_topics()
        sent = records(GOOD, BAD)
        sent[1] = Record(sent[1].value, key=b"k", headers=(("origin", b"app"),))
        result = project.hub.produce("orders", sent)
        assert isinstance(result, ContractedProduceResult)
        assert result.dead_lettered == 1
        assert result.partitions.to_pylist()[1] == -1
        assert result.offsets.to_pylist()[0] >= 0
        (letter,) = project.hub.fetch("orders.dlq", 0, 0).messages()
        assert letter.value == sent[1].value and letter.key == b"k"
        headers = letter.headers
        assert headers[0] == ("origin", b"app")
        rules = [v for k, v in headers if k == "trunkline.rule"]
        assert rules == [b"email.pattern", b"amount.range", b"status.accepted_values"]
        assert (
            dict(headers)["trunkline.error"]
            == b"email.pattern: does not match the pattern '^[^@]+@[^@]+$'"
        )
        assert [v for k, v in headers if k == "trunkline.field"] == [b"email", b"amount", b"status"]
        assert dict(headers)["trunkline.contract"] == b"shop-orders@1.0.0"
        assert len(all_values(project, "orders")) == 1


def test_typed_arrow_input_is_encoded(tmp_path: Path) -> None:
    with Project.open(make(tmp_path)) as project:
        project.apply_topics()
        table = pa.table({"order_id": ["o-7"], "amount": [3.5], "key": [b"7"]})
        project.hub.produce("orders", table)
        (value,) = all_values(project, "orders")
        assert json.loads(value[5:]) == {"order_id": "o-7", "amount": 3.5}
        with pytest.raises(InvalidRecord, match="'colour' are not properties"):
            project.hub.produce("orders", pa.table({"order_id": ["o-8"], "colour": ["red"]}))


def test_tombstones_and_plain_topics_pass(tmp_path: Path) -> None:
    with Project.open(make(tmp_path)) as project:
        project.apply_topics()
        project.hub.produce("orders", [Record(None, key=b"1")])
        project.hub.produce("plain", [Record(b"anything")])
        assert project.hub.fetch("plain", 0, 0).records.column("value").to_pylist() == [b"anything"]


def test_invalid_contract_creates_nothing(tmp_path: Path) -> None:
    root = make(tmp_path)
    contract = root / "contracts" / "orders.yaml"
    contract.write_text(contract.read_text().replace("logicalType: number", "logicalType: money"))
    with Project.open(root) as project:
        with pytest.raises(InvalidContract) as caught:
            project.apply_topics()
        assert "orders.yaml:" in str(caught.value)
        assert project.hub.list_topics() == []
        assert project.registry.subjects() == []
        with pytest.raises(InvalidContract):
            project.create_topic("orders")
        with pytest.raises(TopicNotFound):
            project.hub.describe_topic("orders")


def test_retention_mismatch_is_a_project_problem(tmp_path: Path) -> None:
    from trunkline.config import load_project

    (problem,) = project_problems(load_project(make(tmp_path, retention="3d")))
    assert "agrees a retention of 7d, but the topic keeps records for 3d" in problem.message
    assert problem.line is not None
    assert project_problems(load_project(make(tmp_path / "b"))) == []
    # A topic that keeps records forever does not keep the contract's 7 days either.
    (problem,) = project_problems(load_project(make(tmp_path / "c", retention="forever")))
    assert "agrees a retention of 7d, but the topic keeps records for forever" in problem.message


def test_dead_letters_before_good_records_and_nothing_when_they_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Project.open(make(tmp_path, "dead_letter")) as project:
        project.apply_topics()
        hub = project.hub
        assert isinstance(hub, ContractedHub)
        inner = hub.inner
        order: list[str] = []
        produce = inner.produce

        def recording(topic: str, records: object, **kwargs: object) -> object:
            order.append(topic)
            return produce(topic, records, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(inner, "produce", recording)
        hub.produce("orders", records(GOOD, BAD, {**GOOD, "order_id": "o-3"}))
        assert order == ["orders.dlq", "orders"]

        def failing(topic: str, records: object, **kwargs: object) -> object:
            if topic == "orders.dlq":
                raise OSError("disk on fire")
            return produce(topic, records, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(inner, "produce", failing)
        with pytest.raises(OSError, match="disk on fire"):
            hub.produce("orders", records(GOOD, BAD))
        monkeypatch.setattr(inner, "produce", produce)
        assert len(all_values(project, "orders")) == 2
        assert len(all_values(project, "orders.dlq")) == 1


def test_dead_letter_topic_deleted_is_created_again(tmp_path: Path) -> None:
    from trunkline.hub.embedded import EmbeddedHub

    with Project.open(make(tmp_path, "dead_letter")) as project:
        project.apply_topics()
        hub = project.hub
        assert isinstance(hub, ContractedHub) and isinstance(hub.inner, EmbeddedHub)
        hub.produce("orders", records(BAD))
        hub.delete_topic("orders.dlq")
        hub.produce("orders", records(BAD))
        assert len(all_values(project, "orders.dlq")) == 1
        # Deleted behind this hub's back (another process): the produce finds out.
        with EmbeddedHub(hub.inner.path) as other:
            other.delete_topic("orders.dlq")
        result = hub.produce("orders", records(GOOD, BAD))
        assert isinstance(result, ContractedProduceResult) and result.dead_lettered == 1
        assert hub.describe_topic("orders.dlq").config.retention_ms is None
        assert len(all_values(project, "orders.dlq")) == 1


def test_batches_with_no_and_with_only_bad_records(tmp_path: Path) -> None:
    with Project.open(make(tmp_path, "dead_letter")) as project:
        project.apply_topics()
        hub = project.hub
        result = hub.produce("orders", records(GOOD, {**GOOD, "order_id": "o-3"}))
        assert result.partitions.null_count == 0 and min(result.offsets.to_pylist()) >= 0
        assert "orders.dlq" not in hub.list_topics()
        result = hub.produce("orders", records(BAD, BAD, BAD))
        assert isinstance(result, ContractedProduceResult) and result.dead_lettered == 3
        assert result.partitions.to_pylist() == [-1, -1, -1]
        assert result.offsets.to_pylist() == [-1, -1, -1]
        assert len(all_values(project, "orders")) == 2
        assert len(all_values(project, "orders.dlq")) == 3


def test_tombstones_framed_and_plain_values_in_one_batch(tmp_path: Path) -> None:
    with Project.open(make(tmp_path, "dead_letter")) as project:
        project.apply_topics()
        hub = project.hub
        hub.produce("orders", records(GOOD))
        (framed,) = all_values(project, "orders")
        other = {**GOOD, "order_id": "o-9"}
        sent = [
            Record(None, key=b"t"),
            Record(json.dumps(BAD).encode(), key=b"b"),
            Record(framed, key=b"f"),
            Record(json.dumps(other).encode(), key=b"o"),
        ]
        result = hub.produce("orders", sent)
        assert isinstance(result, ContractedProduceResult) and result.dead_lettered == 1
        assert result.offsets.to_pylist()[1] == -1
        assert [o >= 0 for i, o in enumerate(result.offsets.to_pylist()) if i != 1] == [True] * 3
        stored = all_values(project, "orders")
        assert stored.count(framed) == 2
        assert [json.loads(v[5:]) for v in stored if v != framed] == [other]
        (letter,) = all_values(project, "orders.dlq")
        assert json.loads(letter) == BAD
