"""``trunkline contract lint``: a contract's structure, plus trunkline's own rules.

Errors make a contract unusable (it will not load): broken YAML, unknown keys, logical
types and metrics, rules on unknown fields, regexes and SQL that do not compile, and
contradictions such as a required field declared nullable. Warnings are what a reviewer
would ask about: a ``pii`` field without a description, rules trunkline does not evaluate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from trunkline.config._problems import Problem
from trunkline.contracts._load import LoadedContract, read_contract
from trunkline.contracts._model import Property
from trunkline.contracts._sla import retention_mismatch
from trunkline.errors import InvalidContract

if TYPE_CHECKING:
    from trunkline.config import ProjectConfig

Severity = Literal["error", "warning"]
_STATUSES = ("proposed", "draft", "active", "deprecated", "retired")
_NULLABLE = re.compile(r"(?<!NOT )\bNULL\b|Nullable\(|\?$", re.IGNORECASE)
#: logicalTypeOptions keys trunkline documents but does not check at produce.
_UNCHECKED = (
    "format", "multipleOf", "minItems", "maxItems", "uniqueItems", "minProperties",
    "maxProperties", "required",
)  # fmt: skip


_At = Callable[..., "Finding"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One lint result: an error (the contract cannot be used) or a warning."""

    severity: Severity
    problem: Problem

    def __str__(self) -> str:
        return f"{self.severity}: {self.problem}"


def lint(path: Path | str) -> list[Finding]:
    """Everything wrong with, or worth a look in, the contract file at ``path``."""
    try:
        loaded = read_contract(Path(path))
    except InvalidContract as exc:
        return [Finding("error", p) for p in exc.problems]
    return sorted(_own_rules(loaded), key=lambda f: (f.problem.line or 0, f.problem.column or 0))


def _own_rules(loaded: LoadedContract) -> Iterator[Finding]:
    contract = loaded.contract

    def at(severity: Severity, path: tuple[object, ...], message: str, hint: str = "") -> Finding:
        where = loaded.position(path)
        line, column = (where.line, where.column) if where else (None, None)
        return Finding(severity, Problem(loaded.document.path, line, column, message, hint))

    if contract.status.strip().lower() not in _STATUSES:
        yield at(
            "warning", ("status",), f"unusual status {contract.status!r}",
            f"ODCS uses {', '.join(_STATUSES)}",
        )  # fmt: skip
    if contract.owner is None:
        yield at(
            "warning", ("id",), "the contract names no owner", "add a team member with role: owner"
        )
    for i, prop in enumerate(contract.object.properties):
        yield from _property_rules(prop, ("schema", 0, "properties", i), at)
    for j, rule in enumerate(contract.object.quality):
        if not rule.enforced:
            yield at(
                "warning", ("schema", 0, "quality", j),
                f"a {rule.type} rule is documentation: trunkline does not evaluate it",
            )  # fmt: skip


def _property_rules(prop: Property, path: tuple[object, ...], at: _At) -> Iterator[Finding]:
    if prop.pii and not (prop.description or "").strip():
        yield at(
            "warning", (*path, "classification"),
            f"pii field {prop.name!r} has no description",
            "say what personal data it holds and why it is needed",
        )  # fmt: skip
    if prop.primary_key and "required" in prop.model_fields_set and not prop.required:
        yield at(
            "error", (*path, "required"),
            f"{prop.name!r} is a primary key but says required: false",
            "a key is never null: remove required: false",
        )  # fmt: skip
    if prop.not_null and prop.physical_type and _NULLABLE.search(prop.physical_type):
        yield at(
            "error", (*path, "physicalType"),
            f"{prop.name!r} is required but its physicalType {prop.physical_type!r} is "
            "nullable",
            "make one of them agree with the other",
        )  # fmt: skip
    for j, rule in enumerate(prop.quality):
        rpath = (*path, "quality", j)
        if not rule.enforced:
            yield at(
                "warning", rpath,
                f"a {rule.type} rule is documentation: trunkline does not evaluate it",
            )  # fmt: skip
        elif (
            prop.not_null
            and rule.metric_name in ("nullValues", "missingValues")
            and (rule.must_be_less_than or rule.must_be_less_or_equal_to)
        ):
            yield at(
                "error", rpath,
                f"{prop.name!r} is required, yet this rule tolerates null or missing values",
                "drop the tolerance or make the property optional",
            )  # fmt: skip
    if prop.logical_type is None:
        yield at("warning", path, f"{prop.name!r} has no logicalType: any JSON value is accepted")
    options = prop.logical_type_options
    if options is not None:
        for key in _UNCHECKED:
            if key in options.model_dump(by_alias=True, exclude_defaults=True):
                yield at(
                    "warning", (*path, "logicalTypeOptions", key),
                    f"{key} is documentation: trunkline does not check it at produce",
                )  # fmt: skip


def project_problems(config: ProjectConfig) -> list[Problem]:
    """Problems with the contracts of a project's topics: broken files, and retention that
    disagrees with the topic's (``trunkline validate`` reports them)."""
    problems: list[Problem] = []
    for name, spec in sorted(config.topics.items()):
        if spec.contract is None:
            continue
        try:
            loaded = read_contract(config.root / spec.contract)
        except InvalidContract as exc:
            problems.extend(exc.problems)
            continue
        mismatch = retention_mismatch(loaded.contract, spec.retention)
        if mismatch:
            index = next(
                i for i, s in enumerate(loaded.contract.sla_properties)
                if s.property.strip().lower() in ("retention", "re")
            )  # fmt: skip
            where = loaded.position(("slaProperties", index))
            line, column = (where.line, where.column) if where else (None, None)
            problems.append(
                Problem(
                    loaded.document.path, line, column,
                    f"topic {name!r}: {mismatch}",
                    "change the topic's retention in trunkline.yaml or the contract's SLA",
                )
            )  # fmt: skip
    return problems
