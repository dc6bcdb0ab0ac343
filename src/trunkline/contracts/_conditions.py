"""Row-level SQL conditions run as Arrow kernels when they mean the same there as in DuckDB.

A contract's ``type: sql`` rule (``status <> 'refunded' or amount > 0``) is checked in DuckDB,
which costs about a millisecond per batch however small the batch: planning the query and
moving the batch in and the result out. Most conditions are comparisons of a column with a
constant, joined by AND / OR / NOT, which Arrow's kernels evaluate in microseconds.

:func:`arrow_condition` reads the condition with DuckDB's own parser (``json_serialize_sql``)
and translates it only when every part has the same meaning in Arrow: SQL's three-valued
logic (Arrow's Kleene kernels), comparisons of a string, integer, float or boolean column
with a constant or column of the same kind, ``IN``, ``BETWEEN``, ``IS [NOT] NULL``. Anything
else — casts, functions, arithmetic, dates, DECIMAL constants against integers — returns
None and stays in DuckDB. Float columns holding NaN go to DuckDB for that batch (DuckDB orders
NaN above every number; IEEE comparisons in Arrow are false).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

Operand: TypeAlias = Any  # an Arrow array, chunked array or scalar
_Eval: TypeAlias = Callable[[pa.Table], Any]

_COMPARE = {
    "COMPARE_EQUAL": pc.equal,
    "COMPARE_NOTEQUAL": pc.not_equal,
    "COMPARE_LESSTHAN": pc.less,
    "COMPARE_GREATERTHAN": pc.greater,
    "COMPARE_LESSTHANOREQUALTO": pc.less_equal,
    "COMPARE_GREATERTHANOREQUALTO": pc.greater_equal,
}
_KINDS = {
    pa.string(): "string",
    pa.int64(): "integer",
    pa.float64(): "float",
    pa.bool_(): "boolean",
}
_ARROW = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
}
_INT64 = (-(2**63), 2**63 - 1)
_EXACT_IN_DOUBLE = 2**53


class _Untranslatable(Exception):
    """This part of the condition stays in DuckDB."""


@dataclass(frozen=True, slots=True)
class ArrowCondition:
    """A condition as Arrow kernels: ``evaluate`` gives SQL's true / false / null per row."""

    evaluate: _Eval
    floats: tuple[str, ...]  # float columns it reads: a NaN in one sends the batch to DuckDB

    def applies(self, table: pa.Table) -> bool:
        return not any(pc.any(pc.is_nan(table.column(name))).as_py() for name in self.floats)


@dataclass(frozen=True, slots=True)
class _Value:
    get: Callable[[pa.Table], Operand]
    kind: str
    column: str | None = None
    constant: Any = None


def arrow_condition(expression: str, schema: pa.Schema) -> ArrowCondition | None:
    """``expression`` over records of ``schema`` as Arrow kernels, or None (DuckDB runs it)."""
    return _translate(expression, tuple((f.name, f.type) for f in schema))


@functools.lru_cache(maxsize=256)
def _translate(
    expression: str, fields: tuple[tuple[str, pa.DataType], ...]
) -> ArrowCondition | None:
    try:
        tree = _parse(expression)
        translator = _Translator(dict(fields))
        evaluate = translator.predicate(tree)
    except (_Untranslatable, KeyError, TypeError, ValueError):
        # A tree shaped otherwise than expected (another DuckDB version) is left to DuckDB.
        return None
    return ArrowCondition(evaluate, tuple(sorted(translator.floats)))


def _parse(expression: str) -> dict[str, Any]:
    from trunkline.contracts._rules import _connection

    try:
        row = _connection().execute("SELECT json_serialize_sql(?)", ["SELECT " + expression])
        found = row.fetchone()
    except duckdb.Error:
        raise _Untranslatable from None
    if found is None:
        raise _Untranslatable
    parsed = json.loads(found[0])
    statements = parsed.get("statements") or []
    if parsed.get("error") or len(statements) != 1:
        raise _Untranslatable
    node = statements[0].get("node") or {}
    select = node.get("select_list") or []
    # Only a bare expression: no FROM, WHERE, GROUP BY, ORDER BY, CTE... (the whole text
    # must be the condition DuckDB would run).
    plain = (
        node.get("type") == "SELECT_NODE"
        and len(select) == 1
        and (node.get("from_table") or {}).get("type") == "EMPTY"
        and node.get("where_clause") is None
        and not node.get("group_expressions")
        and not (node.get("group_sets") or [])
        and node.get("having") is None
        and node.get("qualify") is None
        and node.get("sample") is None
        and not node.get("modifiers")
        and not ((node.get("cte_map") or {}).get("map") or [])
        and node.get("aggregate_handling") in (None, "STANDARD_HANDLING")
    )
    if not plain or select[0].get("alias"):
        raise _Untranslatable
    return dict(select[0])


class _Translator:
    def __init__(self, fields: dict[str, pa.DataType]) -> None:
        self.fields = fields
        self.floats: set[str] = set()

    def predicate(self, node: dict[str, Any]) -> _Eval:
        kind = node.get("class")
        which = node.get("type")
        if kind == "CONJUNCTION" and which in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
            parts = [self.predicate(child) for child in node["children"]]
            combine = pc.and_kleene if which == "CONJUNCTION_AND" else pc.or_kleene
            return lambda t: functools.reduce(combine, (p(t) for p in parts))
        if kind == "OPERATOR" and which == "OPERATOR_NOT" and len(node["children"]) == 1:
            inner = self.predicate(node["children"][0])
            return lambda t: pc.invert(inner(t))
        if kind == "OPERATOR" and which in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL"):
            (child,) = node["children"]
            value = self.value(child)
            if value.column is None:
                raise _Untranslatable
            test = pc.is_null if which == "OPERATOR_IS_NULL" else pc.is_valid
            return lambda t: test(value.get(t))
        if kind == "OPERATOR" and which in ("COMPARE_IN", "COMPARE_NOT_IN"):
            return self.member(node["children"], negate=which == "COMPARE_NOT_IN")
        if kind == "COMPARISON" and which in _COMPARE:
            return self.compare(
                _COMPARE[which], self.value(node["left"]), self.value(node["right"])
            )
        if kind == "BETWEEN" and which == "COMPARE_BETWEEN":
            subject = self.value(node["input"])
            low = self.compare(pc.greater_equal, subject, self.value(node["lower"]))
            high = self.compare(pc.less_equal, subject, self.value(node["upper"]))
            return lambda t: pc.and_kleene(low(t), high(t))
        if kind == "COLUMN_REF":
            value = self.value(node)
            if value.kind != "boolean":
                raise _Untranslatable
            return value.get
        raise _Untranslatable

    def compare(self, op: Callable[..., Any], left: _Value, right: _Value) -> _Eval:
        if left.column is None and right.column is None:
            raise _Untranslatable
        kind = _common(left, right)
        a, b = _as(left, kind), _as(right, kind)
        return lambda t: op(a(t), b(t))

    def member(self, children: list[dict[str, Any]], *, negate: bool) -> _Eval:
        subject = self.value(children[0])
        if subject.column is None or len(children) < 2:
            raise _Untranslatable
        options = [self.value(child) for child in children[1:]]
        if any(option.column is not None for option in options):
            raise _Untranslatable
        kinds = {_common(subject, option) for option in options}
        if kinds != {subject.kind}:
            raise _Untranslatable
        allowed = pa.array(
            [_python(option, subject.kind) for option in options], _ARROW[subject.kind]
        )
        get = subject.get

        def evaluate(t: pa.Table) -> Any:
            column = get(t)
            found = pc.if_else(
                pc.is_valid(column),
                pc.is_in(column, value_set=allowed),
                pa.scalar(None, pa.bool_()),
            )
            return pc.invert(found) if negate else found

        return evaluate

    def value(self, node: dict[str, Any]) -> _Value:
        kind = node.get("class")
        if kind == "COLUMN_REF":
            name = self.column(node.get("column_names") or [])
            field = _KINDS.get(self.fields[name])
            if field is None:
                raise _Untranslatable
            if field == "float":
                self.floats.add(name)
            return _Value(lambda t: t.column(name), field, column=name)
        if kind == "CONSTANT":
            return _constant(node.get("value") or {})
        raise _Untranslatable

    def column(self, names: list[str]) -> str:
        if len(names) != 1:
            raise _Untranslatable  # qualified (t.x) or a struct field
        name = names[0]
        if name in self.fields:
            return name
        # DuckDB binds identifiers case-insensitively, quoted or not.
        matches = [f for f in self.fields if f.lower() == name.lower()]
        if len(matches) != 1:
            raise _Untranslatable
        return matches[0]


def _constant(value: dict[str, Any]) -> _Value:
    if value.get("is_null"):
        raise _Untranslatable
    type_id = (value.get("type") or {}).get("id")
    raw = value.get("value")
    if type_id == "VARCHAR" and isinstance(raw, str):
        return _Value(lambda t: pa.scalar(raw, pa.string()), "string", constant=raw)
    if type_id in ("INTEGER", "BIGINT") and isinstance(raw, int):
        if not _INT64[0] <= raw <= _INT64[1]:
            raise _Untranslatable
        return _Value(lambda t: pa.scalar(raw, pa.int64()), "integer", constant=raw)
    if type_id == "DOUBLE" and isinstance(raw, int | float):
        number = float(raw)
        return _Value(lambda t: pa.scalar(number, pa.float64()), "float", constant=number)
    if type_id == "DECIMAL" and isinstance(raw, int) and abs(raw) < _EXACT_IN_DOUBLE:
        # DuckDB compares a DOUBLE with a DECIMAL as DOUBLE: the digits (exact in a double)
        # divided by a power of ten, which Python's true division rounds the same way.
        scale = ((value.get("type") or {}).get("type_info") or {}).get("scale")
        if not isinstance(scale, int) or not 0 <= scale <= 18:
            raise _Untranslatable
        number = raw / 10**scale
        return _Value(lambda t: pa.scalar(number, pa.float64()), "decimal", constant=number)
    if type_id == "BOOLEAN" and isinstance(raw, bool):
        return _Value(lambda t: pa.scalar(raw, pa.bool_()), "boolean", constant=raw)
    raise _Untranslatable


def _common(left: _Value, right: _Value) -> str:
    """The kind both sides are compared as, when Arrow compares them as DuckDB does."""
    kinds = {left.kind, right.kind}
    if len(kinds) == 1 and "decimal" not in kinds:
        return left.kind
    if kinds <= {"integer", "float"}:
        return "float"  # DuckDB: BIGINT against DOUBLE compares as DOUBLE, as Arrow does
    if kinds == {"float", "decimal"}:
        return "float"
    raise _Untranslatable  # strings against numbers, DECIMAL against integers (exact in SQL)


def _as(value: _Value, kind: str) -> Callable[[pa.Table], Operand]:
    if value.kind == kind or (value.kind == "decimal" and kind == "float"):
        return value.get
    get, target = value.get, _ARROW[kind]
    if value.column is None:
        scalar = pa.scalar(_python(value, kind), target)
        return lambda t: scalar
    # Unchecked, as DuckDB casts BIGINT to DOUBLE: to the nearest double.
    return lambda t: pc.cast(get(t), target, safe=False)


def _python(value: _Value, kind: str) -> Any:
    return float(value.constant) if kind == "float" else value.constant
