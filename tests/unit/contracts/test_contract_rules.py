"""Every rule kind passing and failing, decoding failures, tolerances and pii redaction."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from _contract_text import contract_text

from trunkline.contracts import ContractValidator, ValidationResult, parse_contract


def check(schema: str, records: list[Any], extra: str = "", **kwargs: Any) -> ValidationResult:
    validator = ContractValidator(parse_contract(contract_text(schema, extra)))
    values = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    return validator.validate(pa.array(values, pa.binary()), **kwargs)


def failing(result: ValidationResult) -> dict[str, list[int]]:
    """rule -> positions of the records that broke it (from the examples' labels)."""
    return {
        f.rule: [int(e.split(":")[0].removeprefix("record ")) for e in f.examples]
        for f in result.failures
    }


def test_not_null() -> None:
    result = check("- {name: a, logicalType: integer, required: true}", [{"a": 1}, {"a": None}, {}])
    assert failing(result) == {"a.required": [1, 2]}
    assert result.failed.tolist() == [False, True, True]
    assert check("- {name: a, required: true}", [{"a": "x"}]).ok


def test_null_values_metric_with_tolerance() -> None:
    schema = """
    - name: a
      quality: [{metric: nullValues, mustBeLessOrEqualTo: 1}]
    """
    assert check(schema, [{"a": 1}, {}]).ok
    assert not check(schema, [{}, {}]).ok
    percent = "- name: a\n  quality: [{metric: nullValues, mustBeLessThan: 50, unit: percent}]"
    assert check(percent, [{}, {"a": 1}, {"a": 1}]).ok
    assert not check(percent, [{}, {}, {"a": 1}]).ok


def test_unique_within_batch() -> None:
    schema = "- {name: id, logicalType: string, unique: true}"
    assert check(schema, [{"id": "a"}, {"id": "b"}, {}, {}]).ok  # nulls are not duplicates
    assert failing(check(schema, [{"id": "a"}, {"id": "b"}, {"id": "a"}])) == {"id.unique": [0, 2]}


def test_unique_combination() -> None:
    schema = "- {name: t, logicalType: string}\n- {name: n, logicalType: integer}"
    extra = ""
    text = contract_text(schema).replace(
        "    properties:\n",
        "    quality:\n      - metric: duplicateValues\n"
        "        arguments: {properties: [t, n]}\n    properties:\n",
    )
    validator = ContractValidator(parse_contract(text + extra))
    values = pa.array([json.dumps(v).encode() for v in [
        {"t": "x", "n": 1}, {"t": "x", "n": 2}, {"t": "x", "n": 1}, {"t": "y", "n": 1}
    ]])  # fmt: skip
    result = validator.validate(values)
    assert result.failed.tolist() == [True, False, True, False]


def test_accepted_values_and_enum() -> None:
    schema = """
    - name: status
      logicalType: string
      quality: [{metric: invalidValues, arguments: {validValues: [paid, shipped]}}]
    - name: size
      logicalType: integer
      enum: [{value: 1}, {value: 2}]
    """
    assert check(schema, [{"status": "paid", "size": 1}, {}]).ok
    result = check(schema, [{"status": "lost", "size": 3}])
    assert failing(result) == {"status.accepted_values": [0], "size.enum": [0]}


def test_range_inclusive_exclusive_and_dates() -> None:
    schema = """
    - {name: n, logicalType: number, logicalTypeOptions: {minimum: 0, exclusiveMaximum: 10}}
    - {name: d, logicalType: date, logicalTypeOptions: {minimum: "2024-01-01"}}
    """
    assert check(schema, [{"n": 0, "d": "2024-01-01"}, {"n": 9.99}]).ok
    result = check(schema, [{"n": -0.5}, {"n": 10}, {"d": "2023-12-31"}])
    assert failing(result) == {"n.range": [0, 1], "d.range": [2]}


def test_range_as_invalid_values_argument() -> None:
    schema = """
    - name: q
      logicalType: integer
      quality: [{metric: invalidValues, arguments: {minimum: 1, maximum: 5}}]
    """
    assert failing(check(schema, [{"q": 1}, {"q": 6}, {"q": 0}])) == {"q.range": [1, 2]}


def test_regex_and_length() -> None:
    schema = """
    - name: code
      logicalType: string
      logicalTypeOptions: {pattern: "^[A-Z]{2}[0-9]+$", maxLength: 5}
    """
    assert check(schema, [{"code": "AB12"}, {}]).ok
    result = check(schema, [{"code": "ab12"}, {"code": "AB12345"}])
    assert failing(result) == {"code.pattern": [0], "code.length": [1]}


def test_missing_values() -> None:
    schema = """
    - name: email
      logicalType: string
      quality: [{metric: missingValues, arguments: {missingValues: [null, "", "n/a"]}}]
    """
    assert check(schema, [{"email": "a@b"}]).ok
    assert failing(check(schema, [{"email": "n/a"}, {"email": ""}, {}, {"email": "x"}])) == {
        "email.missing": [0, 1, 2]
    }


def test_sql_condition_null_passes() -> None:
    schema = """
    - {name: status, logicalType: string}
    - name: amount
      logicalType: number
      quality: [{type: sql, name: refund_positive, query: "status <> 'refunded' or {property} > 0"}]
    """
    assert check(schema, [{"status": "paid", "amount": 0}, {"status": "refunded", "amount": 3}]).ok
    assert check(schema, [{"status": "refunded"}]).ok  # NULL: met, as in a CHECK constraint
    assert failing(check(schema, [{"status": "refunded", "amount": 0}])) == {"refund_positive": [0]}


def test_freshness_against_record_timestamps() -> None:
    schema = "- {name: at, logicalType: timestamp}"
    sla = "slaProperties:\n  - {property: latency, value: 10, unit: m, element: at}\n"
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    arrived = np.array([int(now.timestamp() * 1000)] * 2, dtype=np.int64)
    records = [{"at": "2026-01-01T11:55:00Z"}, {"at": "2026-01-01T11:00:00+00:00"}]
    result = check(schema, records, sla, timestamps=arrived)
    assert failing(result) == {"at.freshness": [1]}


def test_decoding_failures() -> None:
    schema = "- {name: n, logicalType: integer}\n- {name: s, logicalType: string}"
    result = check(
        schema,
        [{"n": 1, "s": "x"}, b"not json", {"n": "1"}, [1, 2], {"n": 1, "other": 2}, b"\xff\xfe"],
    )
    (failure,) = result.failures
    assert failure.rule == "schema" and failure.count == 5
    _, _, fields, reasons = result.violations()
    assert reasons.to_pylist() == [
        "not valid JSON",
        "field 'n': expected an integer",
        "expected a JSON object, found array",
        "unknown field 'other'",
        "not UTF-8 text",
    ]
    assert fields.to_pylist() == [None, "n", None, "other", None]


def test_pretty_printed_json_is_read_one_value_at_a_time() -> None:
    schema = "- {name: n, logicalType: integer, required: true}"
    values = [b'{\n  "n": 1\n}', b'{"n": 2}\n{"n": 3}', b'{"n": 4}']
    result = check(schema, values)
    assert result.failed.tolist() == [False, True, False]


def test_wrong_date_is_a_schema_failure() -> None:
    result = check("- {name: d, logicalType: date}", [{"d": "2024-02-30"}, {"d": "2024-02-03"}])
    assert result.failed.tolist() == [True, False]


def test_pii_values_are_never_shown() -> None:
    schema = """
    - name: email
      logicalType: string
      classification: pii
      description: e-mail address
      logicalTypeOptions: {pattern: "@"}
    - {name: city, logicalType: string, logicalTypeOptions: {maxLength: 2}}
    """
    result = check(schema, [{"email": "secret-address", "city": "Berlin"}])
    text = " ".join(str(f) for f in result.failures)
    assert "secret-address" not in text
    assert "email=<pii, hidden>" in text
    assert "city='Berlin'" in text


def test_typed_table_input() -> None:
    validator = ContractValidator(
        parse_contract(contract_text("- {name: n, logicalType: integer, required: true}"))
    )
    result = validator.validate_table(pa.table({"n": pa.array([1, None], pa.int32())}))
    assert result.failed.tolist() == [False, True]


@pytest.mark.parametrize("n", [0, 1])
def test_small_batches(n: int) -> None:
    assert check("- {name: a}", [{"a": 1}] * n).ok


@pytest.mark.parametrize("big", [100_000, 200_000, 400_000, 3_000_000])
def test_a_large_value_among_small_ones(big: int) -> None:
    # Batches are parsed in blocks of a quarter of their size (at least 256 KiB); a value
    # too large for that must not split the batch into blocks it does not fit.
    schema = """
    - {name: id, logicalType: integer, required: true}
    - {name: note, logicalType: string}
    """
    records: list[Any] = [{"id": i, "note": "x" * 20} for i in range(3000)]
    records[1500] = {"id": -1, "note": "y" * big}
    records[2999] = {"id": "not a number"}
    result = check(schema, records)
    assert failing(result) == {"schema": [2999]}
    assert result.failed_count == 1
