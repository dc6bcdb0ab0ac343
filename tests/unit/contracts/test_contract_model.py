"""Contract files: the ODCS model, positioned errors, compile-time checks, the JSON Schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from _contract_text import HEADER, contract_text

from trunkline.contracts import json_schema, load_contract, parse_contract
from trunkline.errors import ConfigError, InvalidContract


def problems(text: str, tmp_path: Path) -> list[str]:
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(InvalidContract) as caught:
        load_contract(file)
    assert isinstance(caught.value, ConfigError)  # bad input: exit 2
    return [str(p) for p in caught.value.problems]


def test_fixture_loads(orders_contract_path: Path) -> None:
    contract = load_contract(orders_contract_path)
    assert contract.label == "shop-orders@1.0.0"
    assert contract.owner == "alice"
    email = contract.object.field("email")
    assert email is not None and email.pii
    assert [p.name for p in contract.object.properties][:2] == ["order_id", "email"]


def test_team_and_description_shapes() -> None:
    text = contract_text("- {name: a, logicalType: string}").replace(
        "status: active\n",
        "status: active\ndescription: Orders.\nteam: {name: sales, members: [{username: bo}]}\n",
    )
    contract = parse_contract(text)
    assert contract.description is not None and contract.description.purpose == "Orders."
    assert contract.owner == "sales"


def test_broken_yaml_has_a_position(tmp_path: Path) -> None:
    found = problems(HEADER + "schema:\n  - name: [unclosed\n", tmp_path)
    assert any("invalid YAML" in p and "c.yaml:" in p for p in found)


def test_unknown_key_did_you_mean(tmp_path: Path) -> None:
    found = problems(contract_text("- {name: a, logicalType: string, requird: true}"), tmp_path)
    assert found == [
        f"unknown key 'requird' at {tmp_path / 'c.yaml'}:9:40 - did you mean 'required'?"
    ]


def test_unknown_logical_type(tmp_path: Path) -> None:
    (found,) = problems(contract_text("- {name: a, logicalType: strng}"), tmp_path)
    assert "expected 'string', 'date', 'timestamp'" in found
    assert "c.yaml:9:32" in found
    assert "did you mean 'string'?" in found


def test_missing_fundamentals(tmp_path: Path) -> None:
    found = problems("apiVersion: v2.2.0\nkind: DataContract\nschema: []\n", tmp_path)
    text = "\n".join(found)
    assert "expected an ODCS v3 version" in text
    assert "missing required key 'id'" in text
    assert "missing required key 'version'" in text


def test_empty_file(tmp_path: Path) -> None:
    (found,) = problems("", tmp_path)
    assert "the contract file is empty" in found


def test_unknown_metric_is_placed(tmp_path: Path) -> None:
    text = contract_text(
        """
        - name: a
          logicalType: string
          quality:
            - metric: nullValue
        """
    )
    (found,) = problems(text, tmp_path)
    assert "unknown metric 'nullValue'" in found
    assert "c.yaml:12:21" in found
    assert "did you mean 'nullValues'?" in found


def test_unknown_rule_type(tmp_path: Path) -> None:
    text = contract_text("- name: a\n  quality:\n    - type: soda\n")
    (found,) = problems(text, tmp_path)
    assert "expected 'library', 'sql', 'text' or 'custom' for 'type', found 'soda'" in found


def test_rule_on_unknown_fields(tmp_path: Path) -> None:
    text = contract_text(
        "- {name: order_id, logicalType: string}\n- {name: created_at, logicalType: timestamp}",
        """\
        slaProperties:
          - {property: latency, value: 1, unit: h, element: orders.created}
        """,
    ).replace(
        "    properties:\n",
        "    quality:\n      - metric: duplicateValues\n"
        "        arguments: {properties: [order_id, tenant]}\n    properties:\n",
    )
    found = problems(text, tmp_path)
    assert any("unknown property 'tenant'" in p and "c.yaml:10:44" in p for p in found)
    assert any(
        "unknown property 'created'" in p and "did you mean 'created_at'?" in p for p in found
    )


def test_regex_and_sql_must_compile(tmp_path: Path) -> None:
    text = contract_text(
        """
        - name: code
          logicalType: string
          logicalTypeOptions: {pattern: "(?=x)y"}
        - name: amount
          logicalType: number
          quality:
            - {type: sql, query: "amount >="}
            - {type: sql, query: "amout > 0"}
            - {type: sql, query: "select count(*) from {object}"}
        """
    )
    found = "\n".join(problems(text, tmp_path))
    assert "the regular expression '(?=x)y' does not compile" in found
    assert "the SQL condition does not compile: Parser Error" in found
    assert 'Referenced column "amout" not found' in found
    assert "expected a row-level condition" in found


def test_range_needs_an_ordered_type(tmp_path: Path) -> None:
    text = contract_text("- {name: s, logicalType: string, logicalTypeOptions: {minimum: 1}}")
    (found,) = problems(text, tmp_path)
    assert "a range applies to integer, number" in found


def test_unenforceable_operator(tmp_path: Path) -> None:
    text = contract_text(
        "- name: a\n  quality:\n    - {metric: nullValues, mustBeGreaterThan: 3}\n"
    )
    (found,) = problems(text, tmp_path)
    assert "mustBeGreaterThan cannot be enforced" in found


def test_bad_on_violation(tmp_path: Path) -> None:
    text = contract_text(
        "- {name: a}", "customProperties:\n  - {property: onViolation, value: drop}\n"
    )
    (found,) = problems(text, tmp_path)
    assert "expected 'reject' or 'dead_letter' for onViolation" in found


def test_json_schema_is_closed_and_nullable(orders_contract_path: Path) -> None:
    schema = json_schema(load_contract(orders_contract_path))
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["order_id", "amount"]
    assert schema["properties"]["order_id"]["type"] == "string"
    assert schema["properties"]["email"]["type"] == ["string", "null"]
    assert schema["properties"]["created_at"]["format"] == "date-time"
