"""``contract lint`` findings and ``contract diff`` classification."""

from __future__ import annotations

from pathlib import Path

from _contract_text import FIXTURE, contract_text

from trunkline.contracts import load_contract, parse_contract
from trunkline.contracts._diff import Bump, diff_contracts
from trunkline.contracts._lint import lint


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "c.yaml"
    file.write_text(text)
    return file


def test_lint_fixture_is_clean() -> None:
    assert [f for f in lint(FIXTURE) if f.severity == "error"] == []


def test_lint_own_rules(tmp_path: Path) -> None:
    text = contract_text(
        """
        - {name: email, logicalType: string, classification: pii}
        - {name: id, logicalType: integer, required: true, physicalType: "BIGINT NULL"}
        - {name: key, logicalType: string, primaryKey: true, required: false}
        - name: note
        """
    )
    findings = lint(write(tmp_path, text))
    shown = [(f.severity, f.problem.message) for f in findings]
    assert ("warning", "pii field 'email' has no description") in shown
    assert ("error", "'key' is a primary key but says required: false") in shown
    assert any(s == "error" and "'id' is required but its physicalType" in m for s, m in shown)
    assert any(s == "warning" and "'note' has no logicalType" in m for s, m in shown)
    assert all(f.problem.line is not None for f in findings)


def test_lint_structure_errors(tmp_path: Path) -> None:
    findings = lint(write(tmp_path, contract_text("- {name: a, logicalType: decimal}")))
    assert [f.severity for f in findings] == ["error"]
    assert findings[0].problem.line == 9


V1 = """
- {name: id, logicalType: string, required: true}
- {name: amount, logicalType: number, logicalTypeOptions: {minimum: 0, maximum: 100}}
- name: status
  logicalType: string
  quality: [{metric: invalidValues, arguments: {validValues: [a, b, c]}}]
- {name: note, logicalType: string, description: old}
"""
RETENTION = "slaProperties:\n  - {property: retention, value: 30, unit: d}\n"


def diff(
    new_schema: str, *, version: str = "2.0.0", sla: str = RETENTION
) -> list[tuple[Bump, str]]:
    old = parse_contract(contract_text(V1, RETENTION))
    new = parse_contract(contract_text(new_schema, sla).replace("1.0.0", version))
    return [(c.bump, c.where) for c in diff_contracts(old, new).changes]


def test_diff_no_change() -> None:
    assert diff(V1) == []


def test_diff_breaking_changes() -> None:
    changed = V1.replace(
        "{name: id, logicalType: string, required: true}", "{name: id, logicalType: integer}"
    )
    changed = changed.replace("maximum: 100", "maximum: 200").replace("[a, b, c]", "[a, b, c, d]")
    found = diff(changed, sla="slaProperties:\n  - {property: retention, value: 7, unit: d}\n")
    assert (Bump.MAJOR, "properties.id.logicalType") in found
    assert (Bump.MAJOR, "properties.id.required") in found
    assert (Bump.MAJOR, "rules.id.required") in found
    assert (Bump.MAJOR, "rules.amount.range") in found  # loosened
    assert (Bump.MAJOR, "rules.status.accepted_values") in found  # widened
    assert (Bump.MAJOR, "sla.retention") in found


def test_diff_non_breaking_changes() -> None:
    changed = V1.replace("maximum: 100", "maximum: 50").replace("[a, b, c]", "[a, b]")
    changed = changed.replace("description: old", "description: new")
    changed += "- {name: coupon, logicalType: string}\n"
    found = diff(changed, sla="slaProperties:\n  - {property: retention, value: 90, unit: d}\n")
    assert set(found) == {
        (Bump.MINOR, "rules.amount.range"),
        (Bump.MINOR, "rules.status.accepted_values"),
        (Bump.PATCH, "properties.note.description"),
        (Bump.MINOR, "properties.coupon"),
        (Bump.MINOR, "sla.retention"),
    }


def test_diff_property_removed_and_version_check() -> None:
    old = load_contract(FIXTURE)
    text = FIXTURE.read_text().replace("      - name: quantity\n        logicalType: integer\n", "")
    new = parse_contract(text.replace("version: 1.0.0", "version: 1.1.0"))
    result = diff_contracts(old, new)
    assert [(c.bump, c.where) for c in result.changes] == [(Bump.MAJOR, "properties.quantity")]
    assert result.required is Bump.MAJOR
    assert result.declared is Bump.MINOR
    assert not result.version_ok
    assert result.suggested_version == "2.0.0"
    # The registered schema (closed model): removing a property breaks BACKWARD.
    assert any("BACKWARD" in line for line in result.registry)
