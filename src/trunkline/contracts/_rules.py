"""A contract's checks, compiled into rules that run on whole Arrow columns.

:func:`compile_rules` reads the properties (``required``, ``unique``, ``logicalTypeOptions``,
``enum``), the ``quality`` rules of both levels and the ``latency`` SLA, and returns one
:class:`Rule` per check plus the problems found (each with its path in the document).
:func:`evaluate` runs the rules over a batch: Arrow compute kernels for the library rules and
for the row-level SQL conditions that translate exactly (:mod:`._conditions`), one DuckDB
query for the other SQL conditions. Nothing loops over records in Python.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.contracts import _sla
from trunkline.contracts._conditions import arrow_condition
from trunkline.contracts._model import Contract, Property, QualityRule

KeyPath = tuple[Any, ...]
Mask = npt.NDArray[np.bool_]

#: How each logical type is held in Arrow once decoded. ``time`` stays text (HH:MM:SS sorts
#: as text); object and array are whatever the JSON holds (struct, list).
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "time": pa.string(),
}
_ORDERED = ("integer", "number", "date", "timestamp", "time")


class RuleKind(enum.StrEnum):
    """What a rule checks; the name in reports and in dead-letter headers."""

    SCHEMA = "schema"  # not JSON, not an object, a wrong type, an unknown field
    NOT_NULL = "not_null"
    UNIQUE = "unique"
    ACCEPTED_VALUES = "accepted_values"
    MISSING_VALUES = "missing_values"
    RANGE = "range"
    LENGTH = "length"
    REGEX = "regex"
    INVALID_VALUES = "invalid_values"  # validValues / pattern / range together
    SQL = "sql"
    FRESHNESS = "freshness"


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How many failing records a rule allows per batch (``mustBeLessThan: 5``, ``unit``)."""

    limit: float = 0.0
    percent: bool = False
    inclusive: bool = True

    def allows(self, failing: int, total: int) -> bool:
        if failing == 0:
            return True
        threshold = self.limit * total / 100 if self.percent else self.limit
        return failing <= threshold if self.inclusive else failing < threshold

    @property
    def strict(self) -> bool:
        return self.limit == 0 and self.inclusive


@dataclass(frozen=True, slots=True)
class Rule:
    """One check over records. ``reason`` is constant text: it never holds a record's value."""

    name: str
    kind: RuleKind
    field: str | None
    reason: str
    path: KeyPath
    pii: bool = False
    fields: tuple[str, ...] = ()
    values: tuple[Any, ...] | None = None
    pattern: str | None = None
    low: Any = None
    low_inclusive: bool = True
    high: Any = None
    high_inclusive: bool = True
    min_length: int | None = None
    max_length: int | None = None
    nulls_fail: bool = False
    expression: str | None = None
    max_lag_ms: int | None = None
    tolerance: Tolerance = Tolerance()


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem with a contract found while compiling it; ``path`` points into the file."""

    path: KeyPath
    message: str
    hint: str = ""
    key: bool = False  # place it at the key rather than the value


def arrow_schema(contract: Contract) -> pa.Schema:
    """The decoded records' columns: one per property with a scalar logical type."""
    fields = []
    for prop in contract.object.properties:
        kind = ARROW_TYPES.get(prop.logical_type or "")
        fields.append(pa.field(prop.name, kind if kind is not None else pa.null()))
    return pa.schema(fields)


# Compiling -----------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.obj = contract.object
        self.rules: list[Rule] = []
        self.issues: list[Issue] = []
        self._names: dict[str, int] = {}
        self.schema = arrow_schema(contract)

    def add(self, rule: Rule) -> None:
        count = self._names.get(rule.name, 0)
        self._names[rule.name] = count + 1
        if count:
            rule = _replace(rule, name=f"{rule.name}#{count + 1}")
        self.rules.append(rule)

    def issue(self, path: KeyPath, message: str, hint: str = "", *, key: bool = False) -> None:
        self.issues.append(Issue(path, message, hint, key))

    def run(self) -> None:
        base: KeyPath = ("schema", 0)
        if len(self.contract.objects) > 1:
            self.issue(
                ("schema", 1),
                f"the schema has {len(self.contract.objects)} objects; a topic's contract "
                "describes one (its records)",
                "put each object in a contract of its own",
            )
        seen: dict[str, int] = {}
        for i, prop in enumerate(self.obj.properties):
            path = (*base, "properties", i)
            if prop.name in seen:
                self.issue(
                    (*path, "name"),
                    f"duplicate property {prop.name!r}",
                    f"it is also property {seen[prop.name] + 1} of the object",
                )
                continue
            seen[prop.name] = i
            self.property(prop, path)
        for j, rule in enumerate(self.obj.quality):
            self.quality(rule, (*base, "quality", j), None)
        self.freshness()
        self.policy()

    # properties

    def property(self, prop: Property, path: KeyPath) -> None:
        name, pii = prop.name, prop.pii
        if prop.not_null:
            which = "required" if prop.required else "primaryKey"
            self.add(
                Rule(f"{name}.required", RuleKind.NOT_NULL, name, "is missing or null",
                     (*path, which), pii)
            )  # fmt: skip
        if prop.unique or prop.primary_key:
            which = "unique" if prop.unique else "primaryKey"
            self.add(
                Rule(f"{name}.unique", RuleKind.UNIQUE, name, "is not unique within the batch",
                     (*path, which), pii, fields=(name,))
            )  # fmt: skip
        options = prop.logical_type_options
        if options is not None:
            opath = (*path, "logicalTypeOptions")
            bounds = self.bounds(prop, opath, options.model_dump(by_alias=True))
            if bounds is not None:
                self.add(_range_rule(f"{name}.range", name, opath, pii, bounds))
            lengths = (options.min_length, options.max_length)
            if lengths != (None, None) and self.is_string(prop, opath, "minLength/maxLength"):
                self.add(_length_rule(name, opath, pii, *lengths))
            pattern = options.pattern
            if (
                pattern is not None
                and self.is_string(prop, opath, "pattern")
                and self.regex_ok(pattern, (*opath, "pattern"))
            ):
                self.add(
                    Rule(f"{name}.pattern", RuleKind.REGEX, name,
                         f"does not match the pattern {pattern!r}", (*opath, "pattern"), pii,
                         pattern=pattern)
                )  # fmt: skip
        if prop.enum:
            values = self.typed_values(prop, [e.value for e in prop.enum], (*path, "enum"))
            if values is not None:
                self.add(
                    Rule(f"{name}.enum", RuleKind.ACCEPTED_VALUES, name,
                         f"is not one of {_listing(values)}", (*path, "enum"), pii,
                         values=tuple(values))
                )  # fmt: skip
        for j, rule in enumerate(prop.quality):
            self.quality(rule, (*path, "quality", j), prop)

    def is_string(self, prop: Property, path: KeyPath, what: str) -> bool:
        if prop.logical_type in (None, "string"):
            return True
        self.issue(
            path, f"{what} applies to strings; property {prop.name!r} is {prop.logical_type}"
        )
        return False

    def bounds(
        self, prop: Property, path: KeyPath, given: Mapping[str, Any]
    ) -> tuple[Any, bool, Any, bool] | None:
        """(low, low inclusive, high, high inclusive) from minimum / exclusiveMinimum / ..."""
        keys = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
        present = {k: given[k] for k in keys if given.get(k) is not None}
        if not present:
            return None
        if prop.logical_type not in _ORDERED:
            self.issue(
                (*path, next(iter(present))),
                f"a range applies to integer, number, date, time and timestamp properties; "
                f"{prop.name!r} is {prop.logical_type or 'untyped'}",
            )
            return None
        converted: dict[str, Any] = {}
        for key, value in present.items():
            scalar = _typed_scalar(prop.logical_type, value)
            if scalar is None:
                self.issue(
                    (*path, key),
                    f"expected a {prop.logical_type} for {key!r} of {prop.name!r}, found {value!r}",
                )
                return None
            converted[key] = scalar
        low_key = "exclusiveMinimum" if "exclusiveMinimum" in converted else "minimum"
        high_key = "exclusiveMaximum" if "exclusiveMaximum" in converted else "maximum"
        low, high = converted.get(low_key), converted.get(high_key)
        if low is not None and high is not None and low > high:
            self.issue(path, f"the range of {prop.name!r} is empty: {low!r} > {high!r}")
            return None
        return low, low_key == "minimum", high, high_key == "maximum"

    def typed_values(self, prop: Property, values: list[Any], path: KeyPath) -> list[Any] | None:
        kind = ARROW_TYPES.get(prop.logical_type or "string", pa.string())
        converted = []
        for value in values:
            scalar = _typed_scalar(prop.logical_type or "string", value)
            if scalar is None:
                self.issue(
                    path,
                    f"expected {prop.logical_type or 'string'} values for property "
                    f"{prop.name!r}, found {value!r}",
                )
                return None
            converted.append(scalar)
        try:
            pa.array(converted, kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            self.issue(path, f"the values do not fit property {prop.name!r} ({kind})")
            return None
        return converted

    def regex_ok(self, pattern: str, path: KeyPath) -> bool:
        problem = regex_problem(pattern)
        if problem:
            self.issue(
                path,
                f"the regular expression {pattern!r} does not compile: {problem}",
                "trunkline runs patterns with RE2: no lookaround or backreferences",
            )
            return False
        return True

    # quality rules

    def quality(self, rule: QualityRule, path: KeyPath, prop: Property | None) -> None:
        if not rule.enforced:
            return
        tolerance = self.tolerance(rule, path)
        if tolerance is None:
            return
        if rule.type == "sql":
            self.sql(rule, path, prop, tolerance)
            return
        metric = rule.metric_name
        if metric is None:
            self.issue(
                path,
                "a library rule needs a 'metric'",
                "nullValues, missingValues, invalidValues or duplicateValues; or write "
                "type: sql with a query, or type: text",
            )
            return
        handler = _METRICS.get(metric)
        where = (*path, "metric" if rule.metric else "rule")
        if handler is None:
            close = difflib.get_close_matches(metric, [*_METRICS, "rowCount"], n=1)
            hint = f"did you mean {close[0]!r}?" if close else ""
            if metric == "rowCount":
                hint = "rowCount measures a whole table; trunkline checks records as they arrive"
            known = ", ".join(_METRICS)
            self.issue(where, f"unknown metric {metric!r}: trunkline evaluates {known}", hint)
            return
        allowed = _ARGUMENTS[metric] if prop is not None else _OBJECT_ARGUMENTS.get(metric)
        if allowed is None:
            self.issue(
                where,
                f"metric {metric!r} counts a property's values; write it under the "
                "property's 'quality'",
            )
            return
        for key in rule.arguments:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else (
                    f"{metric} takes: {', '.join(allowed)}" if allowed else
                    f"{metric} takes no arguments")  # fmt: skip
                self.issue((*path, "arguments", key), f"unknown argument {key!r}", hint, key=True)
                return
        handler(self, rule, path, prop, tolerance)

    def tolerance(self, rule: QualityRule, path: KeyPath) -> Tolerance | None:
        unsupported = {
            "mustNotBe": rule.must_not_be,
            "mustBeGreaterThan": rule.must_be_greater_than,
            "mustBeGreaterOrEqualTo": rule.must_be_greater_or_equal_to,
            "mustBeBetween": rule.must_be_between,
            "mustNotBeBetween": rule.must_not_be_between,
        }
        for key, value in unsupported.items():
            if value is not None:
                self.issue(
                    (*path, key),
                    f"{key} cannot be enforced: trunkline's metrics count failing records, "
                    "and records are checked as they arrive",
                    "use mustBe: 0, mustBeLessThan or mustBeLessOrEqualTo",
                    key=True,
                )
                return None
        percent = rule.unit == "percent"
        if rule.must_be_less_than is not None:
            return Tolerance(rule.must_be_less_than, percent, inclusive=False)
        if rule.must_be_less_or_equal_to is not None:
            return Tolerance(rule.must_be_less_or_equal_to, percent)
        if rule.must_be not in (None, 0):
            self.issue(
                (*path, "mustBe"),
                f"mustBe: {rule.must_be:g} asks for exactly that many failing records; only "
                "mustBe: 0 can be enforced",
                "use mustBeLessOrEqualTo to tolerate some failing records",
            )
            return None
        return Tolerance(0.0, percent)

    def sql(self, rule: QualityRule, path: KeyPath, prop: Property | None, tol: Tolerance) -> None:
        if not rule.query or not rule.query.strip():
            self.issue(path, "a sql rule needs a 'query': the condition every record must meet")
            return
        query = rule.query.strip()
        if prop is not None:
            query = query.replace("{property}", _quote(prop.name))
        if re.match(r"(?is)\s*(select|with)\b", query) or "{object}" in query:
            self.issue(
                (*path, "query"),
                "expected a row-level condition, such as amount >= 0, found a query",
                "trunkline checks each record as it arrives: write the condition a record must "
                "meet (the WHERE clause), not a query over the table",
            )
            return
        problem = sql_problem(query, self.schema)
        if problem:
            self.issue((*path, "query"), f"the SQL condition does not compile: {problem}")
            return
        owner = prop.name if prop is not None else self.obj.name
        self.add(
            Rule(rule.name or f"{owner}.sql", RuleKind.SQL, prop.name if prop else None,
                 f"breaks the condition {_short(query)}", path,
                 prop.pii if prop else False, expression=query, tolerance=tol)
        )  # fmt: skip

    def freshness(self) -> None:
        try:
            latency = _sla.find(self.contract, _sla.LATENCY)
        except ValueError as exc:
            index = next(
                i for i, s in enumerate(self.contract.sla_properties)
                if s.property.strip().lower() in _sla.LATENCY
            )  # fmt: skip
            self.issue(("slaProperties", index), str(exc))
            return
        try:
            _sla.find(self.contract, _sla.RETENTION)
        except ValueError as exc:
            index = next(
                i for i, s in enumerate(self.contract.sla_properties)
                if s.property.strip().lower() in _sla.RETENTION
            )  # fmt: skip
            self.issue(("slaProperties", index), str(exc))
        if latency is None or latency.ms is None:
            return
        path: KeyPath = ("slaProperties", latency.index)
        name = None
        if latency.element is not None:
            name = _sla.element_property(self.contract, latency.element)
            prop = self.obj.field(name)
            if prop is None:
                close = difflib.get_close_matches(name, [p.name for p in self.obj.properties], 1)
                self.issue(
                    (*path, "element"),
                    f"the latency SLA names an unknown property {name!r}",
                    f"did you mean {close[0]!r}?" if close else "",
                )
                return
            if prop.logical_type not in ("timestamp", "date"):
                self.issue(
                    (*path, "element"),
                    f"freshness is measured on a timestamp or date property; {name!r} is "
                    f"{prop.logical_type or 'untyped'}",
                )
                return
        from trunkline.config import format_duration

        what = f"event time in {name!r}" if name else "timestamp"
        self.add(
            Rule(f"{name or self.obj.name}.freshness", RuleKind.FRESHNESS, name,
                 f"arrived more than {format_duration(latency.ms)} after its {what}", path,
                 max_lag_ms=latency.ms)
        )  # fmt: skip

    def policy(self) -> None:
        for i, custom in enumerate(self.contract.custom_properties):
            if custom.property == "onViolation" and custom.value not in POLICIES:
                self.issue(
                    ("customProperties", i, "value"),
                    f"expected 'reject' or 'dead_letter' for onViolation, found {custom.value!r}",
                )

    def check_field(self, name: Any, path: KeyPath) -> Property | None:
        prop = self.obj.field(name) if isinstance(name, str) else None
        if prop is None:
            close = difflib.get_close_matches(str(name), [p.name for p in self.obj.properties], 1)
            self.issue(
                path,
                f"unknown property {name!r}",
                f"did you mean {close[0]!r}?" if close else "",
            )
        return prop


POLICIES = ("reject", "dead_letter")


def _null_values(
    c: _Compiler, rule: QualityRule, path: KeyPath, prop: Property | None, tol: Tolerance
) -> None:
    assert prop is not None
    c.add(
        Rule(rule.name or f"{prop.name}.not_null", RuleKind.NOT_NULL, prop.name,
             "is missing or null", path, prop.pii, tolerance=tol)
    )  # fmt: skip


def _missing_values(
    c: _Compiler, rule: QualityRule, path: KeyPath, prop: Property | None, tol: Tolerance
) -> None:
    assert prop is not None
    given = rule.arguments.get("missingValues", [None, ""])
    if not isinstance(given, list) or not given:
        c.issue((*path, "arguments", "missingValues"), "expected a list of missing values")
        return
    nulls = None in given
    values = c.typed_values(prop, [v for v in given if v is not None], (*path, "arguments"))
    if values is None:
        return
    c.add(
        Rule(rule.name or f"{prop.name}.missing", RuleKind.MISSING_VALUES, prop.name,
             f"is missing ({_listing([*values, *([None] if nulls else [])])})", path, prop.pii,
             values=tuple(values), nulls_fail=nulls, tolerance=tol)
    )  # fmt: skip


def _invalid_values(
    c: _Compiler, rule: QualityRule, path: KeyPath, prop: Property | None, tol: Tolerance
) -> None:
    assert prop is not None
    args = rule.arguments
    apath = (*path, "arguments")
    if not args:
        c.issue(path, "invalidValues needs arguments: validValues, pattern or a range")
        return
    values = None
    reasons = []
    if "validValues" in args:
        given = args["validValues"]
        if not isinstance(given, list) or not given:
            c.issue((*apath, "validValues"), "expected a non-empty list of valid values")
            return
        values = c.typed_values(prop, given, (*apath, "validValues"))
        if values is None:
            return
        reasons.append(f"is not one of {_listing(values)}")
    pattern = args.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            c.issue((*apath, "pattern"), "expected a regular expression (a string)")
            return
        if not c.is_string(prop, (*apath, "pattern"), "pattern"):
            return
        if not c.regex_ok(pattern, (*apath, "pattern")):
            return
        reasons.append(f"does not match the pattern {pattern!r}")
    bounds = c.bounds(prop, apath, args)
    if bounds is None and any(
        k in args for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    ):
        return
    if bounds is not None:
        reasons.append(_range_reason(*bounds))
    low, low_in, high, high_in = bounds or (None, True, None, True)
    kind = RuleKind.INVALID_VALUES
    if len(reasons) == 1:
        kind = (
            RuleKind.ACCEPTED_VALUES
            if values is not None
            else RuleKind.REGEX
            if pattern is not None
            else RuleKind.RANGE
        )
    c.add(
        Rule(rule.name or f"{prop.name}.{kind.value}", kind, prop.name, " and ".join(reasons),
             path, prop.pii, values=tuple(values) if values is not None else None,
             pattern=pattern, low=low, low_inclusive=low_in, high=high, high_inclusive=high_in,
             tolerance=tol)
    )  # fmt: skip


def _duplicate_values(
    c: _Compiler, rule: QualityRule, path: KeyPath, prop: Property | None, tol: Tolerance
) -> None:
    if prop is not None:
        c.add(
            Rule(rule.name or f"{prop.name}.unique", RuleKind.UNIQUE, prop.name,
                 "is not unique within the batch", path, prop.pii, fields=(prop.name,),
                 tolerance=tol)
        )  # fmt: skip
        return
    names = rule.arguments.get("properties")
    apath = (*path, "arguments", "properties")
    if not isinstance(names, list) or not names:
        c.issue(
            (*path, "arguments") if "arguments" in rule.model_fields_set else path,
            "duplicateValues on the object needs arguments.properties: the properties whose "
            "combination must be unique",
        )
        return
    props = [c.check_field(name, (*apath, i)) for i, name in enumerate(names)]
    if any(p is None for p in props):
        return
    label = "+".join(names)
    c.add(
        Rule(rule.name or f"{label}.unique", RuleKind.UNIQUE, label,
             f"repeats a combination of {', '.join(names)} within the batch", path,
             any(p.pii for p in props if p), fields=tuple(names), tolerance=tol)
    )  # fmt: skip


_Handler = Callable[[_Compiler, QualityRule, KeyPath, "Property | None", Tolerance], None]
_METRICS: dict[str, _Handler] = {
    "nullValues": _null_values,
    "missingValues": _missing_values,
    "invalidValues": _invalid_values,
    "duplicateValues": _duplicate_values,
}
_RANGE_KEYS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]
_ARGUMENTS: dict[str, list[str]] = {
    "nullValues": [],
    "missingValues": ["missingValues"],
    "invalidValues": ["validValues", "pattern", *_RANGE_KEYS],
    "duplicateValues": [],
}
_OBJECT_ARGUMENTS: dict[str, list[str]] = {"duplicateValues": ["properties"]}


def compile_rules(contract: Contract) -> tuple[list[Rule], list[Issue]]:
    """The contract's rules, and what is wrong with it (empty when it can be enforced)."""
    compiler = _Compiler(contract)
    compiler.run()
    return compiler.rules, compiler.issues


def _replace(rule: Rule, **changes: Any) -> Rule:
    from dataclasses import replace

    return replace(rule, **changes)


def _range_reason(low: Any, low_in: bool, high: Any, high_in: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_in else '>'} {_show(low)}")
    if high is not None:
        parts.append(f"{'<=' if high_in else '<'} {_show(high)}")
    return "is not " + " and ".join(parts)


def _range_rule(
    name: str, field_name: str, path: KeyPath, pii: bool, bounds: tuple[Any, bool, Any, bool]
) -> Rule:
    low, low_in, high, high_in = bounds
    return Rule(
        name, RuleKind.RANGE, field_name, _range_reason(*bounds), path, pii,
        low=low, low_inclusive=low_in, high=high, high_inclusive=high_in,
    )  # fmt: skip


def _length_rule(
    name: str, path: KeyPath, pii: bool, shortest: int | None, longest: int | None
) -> Rule:
    if shortest is not None and longest is not None:
        reason = f"does not have {shortest} to {longest} characters"
    elif shortest is not None:
        reason = f"has fewer than {shortest} characters"
    else:
        reason = f"has more than {longest} characters"
    return Rule(
        f"{name}.length", RuleKind.LENGTH, name, reason, path, pii,
        min_length=shortest, max_length=longest,
    )  # fmt: skip


def _typed_scalar(logical: str, value: Any) -> Any:
    """``value`` as the Python value of a ``logical`` property, or None if it is not one."""
    if isinstance(value, bool):
        return value if logical == "boolean" else None
    if logical == "integer":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else None
    if logical == "number":
        return float(value) if isinstance(value, int | float) else None
    if logical == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            return None
    if logical == "timestamp":
        try:
            stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    if logical == "time":
        text = str(value)
        return text if _TIME.fullmatch(text) else None
    if logical == "string":
        return value if isinstance(value, str) else None
    return None


_TIME = re.compile(r"\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?")


def _listing(values: Iterable[Any]) -> str:
    shown = [_show(v) for v in values]
    text = ", ".join(shown[:8])
    return text + (f" (+{len(shown) - 8} more)" if len(shown) > 8 else "")


def _show(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 80 else flat[:77] + "..."


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def regex_problem(pattern: str) -> str | None:
    """Why RE2 (Arrow's regex engine) refuses ``pattern``; None when it compiles."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return str(exc).removeprefix("Invalid regular expression: ")
    return None


def sql_problem(expression: str, schema: pa.Schema) -> str | None:
    """Why DuckDB cannot run ``expression`` as a condition over records of ``schema``."""
    try:
        parsed = duckdb.SQLExpression(expression)
        empty = _empty_table(schema)
        relation = _connection().from_arrow(empty)
        kinds = relation.select(parsed).types
    except duckdb.Error as exc:
        return " ".join(str(exc).split())
    if str(kinds[0]) not in ("BOOLEAN", '"NULL"', "NULL"):
        return f"it is of type {kinds[0]}, not a true/false condition"
    return None


def _empty_table(schema: pa.Schema) -> pa.Table:
    # An untyped (null) column would bind as INTEGER; JSON text is closer for objects/arrays.
    fields = [f if f.type != pa.null() else pa.field(f.name, pa.string()) for f in schema]
    return pa.schema(fields).empty_table()


_LOCAL = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection, without file or network access (rules run user SQL)."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        con = duckdb.connect(config={"enable_external_access": False, "threads": 2})
        _LOCAL.con = con
    return con


# Evaluating ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """A batch to check: decoded columns, record timestamps (ms) and the time of the check."""

    table: pa.Table
    timestamps: npt.NDArray[np.int64] | None
    now_ms: int


def evaluate(rules: list[Rule], frame: Frame) -> list[Mask]:
    """One mask of failing records per rule (nulls count as passing except for not-null)."""
    masks: list[Mask | None] = [None] * len(rules)
    sql = [i for i, rule in enumerate(rules) if rule.kind is RuleKind.SQL]
    if sql:
        for i, mask in zip(sql, _sql_masks([rules[i] for i in sql], frame.table), strict=True):
            masks[i] = mask
    for i, rule in enumerate(rules):
        if masks[i] is None:
            masks[i] = _EVALUATORS[rule.kind](rule, frame)
    return [m for m in masks if m is not None]


def _bool(array: pa.Array | pa.ChunkedArray) -> Mask:
    filled = pc.fill_null(array, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _not_null(rule: Rule, frame: Frame) -> Mask:
    return _bool(pc.is_null(frame.table.column(rule.field)))


def _unique(rule: Rule, frame: Frame) -> Mask:
    if len(rule.fields) == 1:
        column = frame.table.column(rule.fields[0])
        counts = pc.value_counts(column)
        repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        repeated = pc.drop_null(repeated)
        if len(repeated) == 0:
            return np.zeros(frame.table.num_rows, dtype=np.bool_)
        return _bool(pc.is_in(column, value_set=repeated))
    columns = ", ".join(_quote(f) for f in rule.fields)
    present = " AND ".join(f"{_quote(f)} IS NOT NULL" for f in rule.fields)
    query = duckdb.SQLExpression(
        f"coalesce(({present}) AND count(*) OVER (PARTITION BY {columns}) > 1, false)"
    )
    indexed = frame.table.select(list(rule.fields)).append_column(
        "__row", pa.array(np.arange(frame.table.num_rows, dtype=np.int64))
    )
    relation = _connection().from_arrow(indexed)
    result = relation.select(query.alias("dup"), duckdb.ColumnExpression("__row")).order("__row")
    return _bool(result.to_arrow_table().column("dup"))


def _values(rule: Rule, frame: Frame) -> Mask:
    """validValues, pattern, range and length: a record fails any of those that are set."""
    column = frame.table.column(rule.field)
    failing: pa.ChunkedArray | pa.Array | None = None

    def either(more: Any) -> None:
        nonlocal failing
        failing = more if failing is None else pc.or_(failing, more)

    if rule.values is not None:
        allowed = pa.array(list(rule.values), column.type)
        either(pc.invert(pc.is_in(column, value_set=allowed)))
    if rule.pattern is not None:
        either(pc.invert(pc.match_substring_regex(column, rule.pattern)))
    if rule.low is not None:
        low = pa.scalar(rule.low, column.type)
        either(pc.less(column, low) if rule.low_inclusive else pc.less_equal(column, low))
    if rule.high is not None:
        high = pa.scalar(rule.high, column.type)
        either(pc.greater(column, high) if rule.high_inclusive else pc.greater_equal(column, high))
    if rule.min_length is not None or rule.max_length is not None:
        length = pc.utf8_length(column)
        if rule.min_length is not None:
            either(pc.less(length, rule.min_length))
        if rule.max_length is not None:
            either(pc.greater(length, rule.max_length))
    if failing is None:
        return np.zeros(frame.table.num_rows, dtype=np.bool_)
    return _bool(pc.and_kleene(failing, pc.is_valid(column)))  # null is not_null's business


def _missing(rule: Rule, frame: Frame) -> Mask:
    column = frame.table.column(rule.field)
    found = _bool(pc.is_in(column, value_set=pa.array(list(rule.values or ()), column.type)))
    if rule.nulls_fail:
        found |= _bool(pc.is_null(column))
    return found


def _freshness(rule: Rule, frame: Frame) -> Mask:
    n = frame.table.num_rows
    arrived = (
        frame.timestamps if frame.timestamps is not None else np.full(n, frame.now_ms, np.int64)
    )
    assert rule.max_lag_ms is not None
    if rule.field is None:
        return np.asarray(frame.now_ms - arrived > rule.max_lag_ms, dtype=np.bool_)
    column = frame.table.column(rule.field)
    if pa.types.is_date(column.type):
        column = column.cast(pa.timestamp("us", tz="UTC"))
    micros = pc.fill_null(column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), 2**62)
    event_ms = np.asarray(micros.to_numpy(), dtype=np.int64) // 1000
    return np.asarray(arrived - event_ms > rule.max_lag_ms, dtype=np.bool_)


def _sql_masks(rules: list[Rule], table: pa.Table) -> list[Mask]:
    """Failing records of each SQL rule: Arrow kernels for the conditions that translate
    exactly (see :mod:`trunkline.contracts._conditions`), one DuckDB query for the rest."""
    masks: list[Mask | None] = [None] * len(rules)
    for i, rule in enumerate(rules):
        assert rule.expression is not None
        condition = arrow_condition(rule.expression, table.schema)
        if condition is not None and condition.applies(table):
            masks[i] = _bool(pc.invert(condition.evaluate(table)))
    rest = [i for i, mask in enumerate(masks) if mask is None]
    if rest:
        for i, mask in zip(rest, _duckdb_masks([rules[i] for i in rest], table), strict=True):
            masks[i] = mask
    return [m for m in masks if m is not None]


def _duckdb_masks(rules: list[Rule], table: pa.Table) -> list[Mask]:
    relation = _connection().from_arrow(_sql_input(table))
    selected = [
        duckdb.SQLExpression(f"coalesce(NOT ({rule.expression}), false)").alias(f"r{i}")
        for i, rule in enumerate(rules)
    ]
    result = relation.select(*selected).to_arrow_table()
    return [_bool(result.column(i)) for i in range(len(rules))]


def _sql_input(table: pa.Table) -> pa.Table:
    # Untyped columns (all null) bind as strings, as when the condition was compiled.
    if any(f.type == pa.null() for f in table.schema):
        return table.cast(_empty_table(table.schema).schema)
    return table


_EVALUATORS: dict[RuleKind, Callable[[Rule, Frame], Mask]] = {
    RuleKind.NOT_NULL: _not_null,
    RuleKind.UNIQUE: _unique,
    RuleKind.ACCEPTED_VALUES: _values,
    RuleKind.RANGE: _values,
    RuleKind.LENGTH: _values,
    RuleKind.REGEX: _values,
    RuleKind.INVALID_VALUES: _values,
    RuleKind.MISSING_VALUES: _missing,
    RuleKind.FRESHNESS: _freshness,
}
