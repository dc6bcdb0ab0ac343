"""Typed Arrow input to a contracted topic: checked as columns, written as its JSON would be.

The differential tests produce the same rows twice, once as typed columns and once as the
JSON values of those rows (written here with :mod:`json`, not with the hub's encoder), to two
projects, and compare everything the hub stored and returned.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from _contract_text import FIXTURE, contract_text

from trunkline.contracts import ContractValidator, parse_contract
from trunkline.contracts._hub import ContractedProduceResult
from trunkline.errors import ContractViolation, InvalidRecord
from trunkline.hub import Record
from trunkline.project import Project

PROPERTIES = ("order_id", "email", "amount", "quantity", "status", "created_at")
LABEL = "shop-orders@1.0.0"


def make(root: Path, policy: str) -> Path:
    (root / "contracts").mkdir(parents=True)
    shutil.copy(FIXTURE, root / "contracts" / "orders.yaml")
    (root / "trunkline.yaml").write_text(
        "topics:\n"
        f"  orders: {{partitions: 2, contract: contracts/orders.yaml, on_violation: {policy}}}\n"
    )
    return root


def rows() -> list[dict[str, Any]]:
    """Orders with their hub columns; some break one rule, one breaks three."""
    now = datetime.now(UTC).replace(microsecond=123456)
    stale = now - timedelta(days=3)
    ms = int(now.timestamp() * 1000)
    good = {"email": "a@b.c", "amount": 5.25, "quantity": 2, "status": "paid"}
    out: list[dict[str, Any]] = [
        {**good, "order_id": "o-1", "created_at": now, "key": b"k1", "headers": []},
        {  # email pattern, amount range, accepted values
            "order_id": "o-2", "email": "nobody", "amount": -1.0, "quantity": 1,
            "status": "lost", "created_at": now, "key": b"k2",
            "headers": [("origin", b"app"), ("trace", b"t-2")],
        },
        {**good, "order_id": "o-3", "created_at": stale, "key": None, "headers": []},
        {  # refund_has_amount (the SQL rule)
            **good, "order_id": "o-4", "status": "refunded", "amount": 0.0, "created_at": now,
            "key": b"k4", "headers": [("origin", b"batch")],
        },
        {**good, "order_id": "o-5", "email": None, "quantity": None, "created_at": None,
         "key": b"k5", "headers": []},
        {**good, "order_id": "o-6", "amount": 0.1, "created_at": now, "key": b"k6",
         "headers": [], "partition": 1},
        {**good, "order_id": "o-7", "status": "shipped", "created_at": now, "key": b"k7",
         "headers": [], "partition": 0},
    ]  # fmt: skip
    for i, row in enumerate(out):
        row["timestamp"] = ms - i
        row.setdefault("partition", None)
    return out


def typed_table(data: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array([r["order_id"] for r in data], pa.string()),
            "email": pa.array([r["email"] for r in data], pa.string()),
            "amount": pa.array([r["amount"] for r in data], pa.float64()),
            "quantity": pa.array([r["quantity"] for r in data], pa.int64()),
            "status": pa.array([r["status"] for r in data], pa.string()),
            "created_at": pa.array([r["created_at"] for r in data], pa.timestamp("us", "UTC")),
            "key": pa.array([r["key"] for r in data], pa.binary()),
            "headers": [[{"key": k, "value": v} for k, v in r["headers"]] for r in data],
            "timestamp": pa.array([r["timestamp"] for r in data], pa.int64()),
            "partition": pa.array([r["partition"] for r in data], pa.int32()),
        }
    )


def json_value(row: dict[str, Any]) -> bytes:
    """The row as JSON, as a producer would write it (no spaces, timestamps in UTC with µs)."""
    value = {name: row[name] for name in PROPERTIES}
    if value["created_at"] is not None:
        value["created_at"] = value["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(value, separators=(",", ":")).encode()


def json_records(data: list[dict[str, Any]]) -> list[Record]:
    return [
        Record(
            json_value(r), key=r["key"], headers=tuple(r["headers"]),
            timestamp=r["timestamp"], partition=r["partition"],
        )
        for r in data
    ]  # fmt: skip


def stored(project: Project, topic: str) -> list[tuple[Any, ...]]:
    hub = project.hub
    if topic not in hub.list_topics():
        return []
    out = []
    for partition in sorted(hub.end_offsets(topic)):
        for m in hub.fetch(topic, partition, 0).messages():
            # The time of the check differs between the two produces; the rest must not.
            headers = [(k, v) for k, v in m.headers if k != "trunkline.time"]
            assert len(headers) == len(m.headers) - (topic.endswith(".dlq"))
            out.append((partition, m.offset, m.key, m.value, m.timestamp, headers))
    return out


def projects(tmp_path: Path, policy: str) -> tuple[Project, Project]:
    typed = Project.open(make(tmp_path / "typed", policy))
    plain = Project.open(make(tmp_path / "json", policy))
    typed.apply_topics()
    plain.apply_topics()
    return typed, plain


def test_typed_and_json_input_store_the_same_records(tmp_path: Path) -> None:
    data = rows()
    typed, plain = projects(tmp_path, "dead_letter")
    with typed, plain:
        by_type = typed.hub.produce("orders", typed_table(data))
        by_json = plain.hub.produce("orders", json_records(data))
        assert isinstance(by_type, ContractedProduceResult)
        assert isinstance(by_json, ContractedProduceResult)
        assert by_type.dead_lettered == by_json.dead_lettered == 3
        assert by_type.partitions.to_pylist() == by_json.partitions.to_pylist()
        assert by_type.offsets.to_pylist() == by_json.offsets.to_pylist()
        assert [str(f) for f in by_type.failures] == [str(f) for f in by_json.failures]
        for topic in ("orders", "orders.dlq"):
            assert stored(typed, topic) == stored(plain, topic), topic
        letters = stored(typed, "orders.dlq")
        schema_id = typed.registry.get_version("orders-value").id
        prefix = b"\x00" + int(schema_id).to_bytes(4, "big")
        # Dead letters carry the rows' JSON; good records are that JSON framed.
        assert sorted(v for *_, v, _, _ in letters) == sorted(
            json_value(data[i]) for i in (1, 2, 3)
        )
        assert sorted(v for *_, v, _, _ in stored(typed, "orders")) == sorted(
            prefix + json_value(data[i]) for i in (0, 4, 5, 6)
        )
        (three,) = [h for _, _, key, _, _, h in letters if key == b"k2"]
        assert three[:2] == [("origin", b"app"), ("trace", b"t-2")]
        assert [v for k, v in three if k == "trunkline.rule"] == [
            b"email.pattern", b"amount.range", b"status.accepted_values"
        ]  # fmt: skip
        assert dict(three)["trunkline.contract"] == LABEL.encode()


def test_reject_raises_the_same_violation_and_writes_nothing(tmp_path: Path) -> None:
    data = rows()
    typed, plain = projects(tmp_path, "reject")
    with typed, plain:
        with pytest.raises(ContractViolation) as by_type:
            typed.hub.produce("orders", typed_table(data))
        with pytest.raises(ContractViolation) as by_json:
            plain.hub.produce("orders", json_records(data))
        assert str(by_type.value) == str(by_json.value)
        assert by_type.value.records == 3 and by_type.value.total == len(data)
        assert "record 1: email=<pii, hidden>" in str(by_type.value)
        assert sum(typed.hub.end_offsets("orders").values()) == 0
        assert "orders.dlq" not in typed.hub.list_topics()
        # The good rows alone pass, and are stored as their JSON would be.
        good = [data[i] for i in (0, 4, 5, 6)]
        typed.hub.produce("orders", typed_table(good))
        plain.hub.produce("orders", json_records(good))
        assert stored(typed, "orders") == stored(plain, "orders")
        assert len(stored(typed, "orders")) == 4


def test_unknown_columns_are_named(tmp_path: Path) -> None:
    with Project.open(make(tmp_path, "reject")) as project:
        project.apply_topics()
        table = pa.table({"order_id": ["o-1"], "colour": ["red"], "size": [3], "key": [b"k"]})
        with pytest.raises(InvalidRecord) as caught:
            project.hub.produce("orders", table)
        assert str(caught.value) == (
            f"column(s) 'colour', 'size' are not properties of contract {LABEL} "
            f"(properties: {', '.join(PROPERTIES)})"
        )
        assert sum(project.hub.end_offsets("orders").values()) == 0


@pytest.mark.parametrize(
    ("column", "values", "expected", "found"),
    [
        ("amount", pa.array(["5", "lots"]), "double", "string"),
        ("quantity", pa.array([[1], [2]]), "int64", "list<item: int64>"),
        ("created_at", pa.array([True, False]), "timestamp[us, tz=UTC]", "bool"),
    ],
)
def test_a_column_that_cannot_be_cast_is_named(
    tmp_path: Path, column: str, values: pa.Array, expected: str, found: str
) -> None:
    with Project.open(make(tmp_path, "dead_letter")) as project:
        project.apply_topics()
        table = pa.table({"order_id": ["o-1", "o-2"], "amount": [1.0, 2.0], column: values})
        with pytest.raises(InvalidRecord) as caught:
            project.hub.produce("orders", table)
        assert str(caught.value).startswith(
            f"column {column!r}: expected {expected} for the contract's property, found {found} ("
        )
        assert project.hub.list_topics() == ["orders"]
        assert sum(project.hub.end_offsets("orders").values()) == 0


def test_what_is_written_is_what_was_checked(tmp_path: Path) -> None:
    """Columns are cast to the properties' types and the cast values are encoded, so the
    topic never holds a string where the contract says integer."""
    with Project.open(make(tmp_path, "reject")) as project:
        project.apply_topics()
        table = pa.table(
            {
                "quantity": pa.array(["3", None]),
                "amount": pa.array([7, 8], pa.int32()),
                "order_id": pa.array(["o-1", "o-2"]).dictionary_encode(),
                "created_at": pa.array([0, None], pa.timestamp("s")),
            }
        )
        # Freshness would fail on the 1970 timestamp: stamp the record then too.
        table = table.append_column("timestamp", pa.array([0, int(time.time() * 1000)]))
        project.hub.produce("orders", table)
        values = [m.value for m in project.hub.fetch("orders", 0, 0).messages()]
        values += [m.value for m in project.hub.fetch("orders", 1, 0).messages()]
        assert sorted(v[5:] for v in values) == [
            b'{"order_id":"o-1","amount":7.0,"quantity":3,"created_at":"1970-01-01T00:00:00.000000Z"}',
            b'{"order_id":"o-2","amount":8.0,"quantity":null,"created_at":null}',
        ]  # fmt: skip
        # Read back as JSON, the values fit the schema (the freshness rule aside, which
        # needs the record timestamps).
        validator = ContractValidator(parse_contract(FIXTURE.read_text()))
        schema = validator.validate(pa.array([v[5:] for v in values])).outcomes[0]
        assert (schema.rule, schema.count) == ("schema", 0)


def test_nested_properties_take_nested_columns() -> None:
    contract = parse_contract(
        contract_text(
            """
            - {name: id, logicalType: integer}
            - {name: meta, logicalType: object}
            - {name: tags, logicalType: array}
            """
        )
    )
    validator = ContractValidator(contract)
    ok = pa.table({"id": [1], "meta": [{"a": 1}], "tags": [["x"]]})
    assert validator.validate_table(ok).ok
    with pytest.raises(InvalidRecord) as caught:
        validator.validate_table(pa.table({"meta": ["{}"]}))
    assert str(caught.value) == (
        "column 'meta': expected a struct or map for the contract's object property, found string"
    )
    with pytest.raises(InvalidRecord, match="'tags': expected a list for the contract's array"):
        validator.validate_table(pa.table({"tags": [{"a": 1}]}))


def test_empty_typed_batch_writes_nothing(tmp_path: Path) -> None:
    with Project.open(make(tmp_path, "dead_letter")) as project:
        project.apply_topics()
        empty = typed_table(rows()).slice(0, 0)
        result = project.hub.produce("orders", empty)
        assert len(result.offsets) == 0
        assert sum(project.hub.end_offsets("orders").values()) == 0
