"""SQL conditions run as Arrow kernels give exactly DuckDB's answer (differential tests)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from trunkline.contracts._conditions import arrow_condition
from trunkline.contracts._rules import Rule, RuleKind, _duckdb_masks, _sql_masks

ROWS = 400


def table(seed: int, *, nan: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    words = ["paid", "refunded", "placed", "Paid", "", "é", "zz", "a b", "refunded "]
    floats = rng.choice([0.0, -0.0, 1.5, -1.0, 2.0, 1e300, np.inf, -np.inf, 0.1, 3.0], ROWS)
    if nan:
        floats[::7] = np.nan
    ints = rng.choice([0, 1, 2, -5, 3, 2**62, -(2**63), 2**63 - 1, 9007199254740993], ROWS)

    def with_nulls(values: object, kind: pa.DataType) -> pa.Array:
        return pa.array(values, kind, mask=rng.random(ROWS) < 0.2)

    return pa.table(
        {
            "status": with_nulls(rng.choice(words, ROWS).tolist(), pa.string()),
            "note": with_nulls(rng.choice(words, ROWS).tolist(), pa.string()),
            "amount": with_nulls(floats, pa.float64()),
            "fee": with_nulls(rng.choice([0.0, 2.0, -1.0, 1.5], ROWS), pa.float64()),
            "quantity": with_nulls(ints, pa.int64()),
            "paid": with_nulls(rng.random(ROWS) < 0.5, pa.bool_()),
            "created": pa.array(rng.integers(0, 10**6, ROWS), pa.timestamp("us", tz="UTC")),
            "untyped": pa.nulls(ROWS),
        }
    )


TRANSLATED = [
    "status <> 'refunded' or amount > 0",
    "status = 'paid' AND NOT (amount <= 1.5)",
    "amount > -1 and amount < 1e3",
    "amount >= 0.1 or fee = amount",
    "quantity > 2 OR quantity = -5",
    "quantity < amount",
    "quantity < 1e3 or quantity > 4.6e18",
    "quantity = 9007199254740993",
    "status < note or status >= 'p'",
    "'paid' = status",
    "0 < amount",
    "status IN ('paid', 'placed')",
    "status NOT IN ('paid', 'placed', 'é')",
    "quantity in (1, 2, 3)",
    "amount in (1, 1.5, 2)",
    "amount BETWEEN 0 AND 2",
    "quantity NOT BETWEEN -5 AND 2",
    "status IS NULL or amount IS NOT NULL",
    "paid",
    "NOT paid OR status = 'paid'",
    "Status = 'paid'",
    '"AMOUNT" > 1',
    "(status = 'paid' or status = 'refunded') and (fee > 0 or fee is null)",
]
KEPT_IN_DUCKDB = [
    "quantity >= 1.5",  # a DECIMAL constant against an integer compares exactly in SQL
    "paid = true",
    "lower(status) = 'paid'",
    "amount + fee > 2",
    "status = 5",
    "created > '2024-01-01'",
    "untyped IS NULL",
    "status LIKE 'p%'",
    "amount::int > 1",
    "status IN ('paid', NULL)",
    "amount > 1 AND status ~ 'x'",
    "quantity > 9223372036854775808",
    "coalesce(amount, 0) > 0",
]


def rule(expression: str) -> Rule:
    return Rule("r", RuleKind.SQL, None, "", (), expression=expression)


@pytest.mark.parametrize("expression", TRANSLATED)
@pytest.mark.parametrize("seed", [1, 2])
def test_same_failing_records_as_duckdb(expression: str, seed: int) -> None:
    data = table(seed)
    (expected,) = _duckdb_masks([rule(expression)], data)
    (found,) = _sql_masks([rule(expression)], data)
    assert found.tolist() == expected.tolist()
    if expression != "quantity = 9007199254740993":  # the data has every other outcome
        assert 0 < expected.sum() < ROWS


@pytest.mark.parametrize("expression", TRANSLATED)
def test_simple_conditions_are_translated(expression: str) -> None:
    translated = arrow_condition(expression, table(0).schema)
    assert (translated is not None) == (expression not in KEPT_IN_DUCKDB)


@pytest.mark.parametrize("expression", KEPT_IN_DUCKDB)
def test_other_conditions_stay_in_duckdb(expression: str) -> None:
    assert arrow_condition(expression, table(0).schema) is None


def test_nan_sends_the_batch_to_duckdb() -> None:
    data = table(3, nan=True)
    condition = arrow_condition("amount > 0", data.schema)
    assert condition is not None and not condition.applies(data)
    assert condition.applies(table(3))
    for expression in ("amount > 0", "amount = amount", "amount IN (1.5, 2)"):
        (expected,) = _duckdb_masks([rule(expression)], data)
        (found,) = _sql_masks([rule(expression)], data)
        assert found.tolist() == expected.tolist()


def test_several_rules_mixed() -> None:
    data = table(4)
    rules = [rule(e) for e in ("lower(status) = 'paid'", "amount > 0", "quantity > 1")]
    expected = _duckdb_masks(rules, data)
    found = _sql_masks(rules, data)
    assert [m.tolist() for m in found] == [m.tolist() for m in expected]
