"""``trunkline contract diff``: what changed between two versions of a contract.

A contract is a promise to the topic's consumers, so a change is *breaking* (a major
version) when consumers can no longer rely on what they relied on: a property removed or
retyped, a field that may now be null, a rule dropped or loosened, a shorter retention, a
looser freshness. Adding optional properties and tightening rules is *non-breaking* for
consumers (minor), though producers must then meet the tighter rules (the change says so).
Descriptions, owners and tags are a patch.

Who a breaking change hurts comes from the lineage: :func:`downstream_of` follows the
edges out of the contract's topics, hop by hop, to every dataset fed from them and every
connector or flow that moves the data (a sink's table, a flow reading that table...).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from trunkline.contracts._model import Contract, Property
from trunkline.contracts._rules import Rule, compile_rules
from trunkline.contracts._schema import json_schema_text
from trunkline.contracts._sla import LATENCY, RETENTION, find
from trunkline.errors import MetaError, NotFound

if TYPE_CHECKING:
    from trunkline.meta import MetaStore


class Bump(enum.IntEnum):
    """The semver part a change needs raised."""

    NONE = 0
    PATCH = 1
    MINOR = 2
    MAJOR = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class ContractChange:
    """One difference between the old and the new contract."""

    bump: Bump
    where: str
    message: str

    @property
    def breaking(self) -> bool:
        return self.bump is Bump.MAJOR


@dataclass(frozen=True, slots=True)
class ContractDiff:
    """The changes, the bump they need and the bump the versions show."""

    old_version: str
    new_version: str
    changes: tuple[ContractChange, ...]
    registry: tuple[str, ...]  # the registered schema's changes, with the levels they break

    @property
    def required(self) -> Bump:
        return max((c.bump for c in self.changes), default=Bump.NONE)

    @property
    def declared(self) -> Bump:
        return declared_bump(self.old_version, self.new_version)

    @property
    def suggested_version(self) -> str:
        return bumped(self.old_version, self.required)

    @property
    def version_ok(self) -> bool:
        return self.declared >= self.required

    @property
    def breaking(self) -> bool:
        return any(c.breaking for c in self.changes)


@dataclass(frozen=True, slots=True, order=True)
class Job:
    """A connector or flow that moves data along the lineage (``sink warehouse``)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Consumer:
    """A dataset fed from the topic: ``hops`` edges away, written by ``jobs``."""

    dataset: str
    hops: int
    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class Downstream:
    """What reads a contract's topics, directly or through other datasets.

    ``note`` says why nothing is listed, when nothing is: outside a project, a contract no
    topic uses, or a topic no connector or flow has read yet.
    """

    topics: tuple[str, ...]
    consumers: tuple[Consumer, ...] = ()
    jobs: tuple[Job, ...] = ()
    note: str | None = None


def downstream_of(meta: MetaStore, topics: Sequence[str]) -> Downstream:
    """Every dataset and job downstream of ``topics`` in ``meta``'s lineage, nearest first.

    Example:
        >>> from trunkline.meta import MetaStore
        >>> with MetaStore.open("sqlite://") as meta:
        ...     _ = meta.upsert_system("hub", "hub", "hub")
        ...     _ = meta.upsert_dataset("hub", "orders", "topic")
        ...     _ = meta.upsert_system("wh", "duckdb", "wh.duckdb")
        ...     _ = meta.upsert_dataset("wh", "main.orders", "table")
        ...     _ = meta.record_lineage("hub.orders", "wh.main.orders", job="warehouse",
        ...                             job_kind="sink", run_id="r1")
        ...     found = downstream_of(meta, ["orders"])
        >>> [(c.dataset, c.hops, [str(j) for j in c.jobs]) for c in found.consumers]
        [('wh.main.orders', 1, ['sink warehouse'])]
    """
    from trunkline.meta import DatasetRef
    from trunkline.project import HUB_SYSTEM

    hops: dict[str, int] = {}
    writers: dict[str, set[Job]] = {}
    unknown = []
    for topic in topics:
        start = DatasetRef(HUB_SYSTEM, topic)
        try:
            edges = meta.lineage(start, direction="downstream")
        except NotFound:
            unknown.append(topic)  # not in the catalog: nothing has recorded edges from it
            continue
        except MetaError as exc:
            return Downstream(tuple(topics), note=f"the lineage cannot be read: {exc}")
        out: dict[str, list[str]] = {}
        for edge in edges:
            target = str(edge.target)
            out.setdefault(str(edge.source), []).append(target)
            writers.setdefault(target, set()).add(Job(edge.job_kind, edge.job))
        # Breadth first, so that each dataset counts its shortest way from the topic.
        distance = {str(start): 0}
        frontier = [str(start)]
        while frontier:
            following = []
            for name in frontier:
                for target in out.get(name, ()):
                    if target not in distance:
                        distance[target] = distance[name] + 1
                        following.append(target)
            frontier = following
        for name, away in distance.items():
            if away and away < hops.get(name, away + 1):
                hops[name] = away
    consumers = tuple(
        Consumer(name, hops[name], tuple(sorted(writers[name])))
        for name in sorted(hops, key=lambda n: (hops[n], n))
    )
    jobs = tuple(dict.fromkeys(j for c in consumers for j in c.jobs))
    note = None
    if not consumers:
        shown = ", ".join(f"{HUB_SYSTEM}.{t}" for t in topics)
        note = (
            f"no lineage is recorded downstream of {shown}: no connector or flow has read "
            "it in a 'trunkline run' yet"
        )
        if unknown:
            note += f" (not in the catalog: {', '.join(unknown)})"
    return Downstream(tuple(topics), consumers, jobs, note)


def _semver(text: str) -> tuple[int, int, int]:
    core = text.split("-")[0].split("+")[0]
    major, minor, patch = (int(x) for x in core.split("."))
    return major, minor, patch


def declared_bump(old: str, new: str) -> Bump:
    a, b = _semver(old), _semver(new)
    if b <= a:
        return Bump.NONE
    if b[0] > a[0]:
        return Bump.MAJOR
    if b[1] > a[1]:
        return Bump.MINOR
    return Bump.PATCH


def bumped(version: str, bump: Bump) -> str:
    major, minor, patch = _semver(version)
    if bump is Bump.MAJOR:
        return f"{major + 1}.0.0"
    if bump is Bump.MINOR:
        return f"{major}.{minor + 1}.0"
    if bump is Bump.PATCH:
        return f"{major}.{minor}.{patch + 1}"
    return version


def diff_contracts(old: Contract, new: Contract) -> ContractDiff:
    """Compare two contracts; see the module docstring for how changes are classified."""
    changes: list[ContractChange] = []

    def add(bump: Bump, where: str, message: str) -> None:
        changes.append(ContractChange(bump, where, message))

    for key in ("id", "name", "status", "domain", "tenant", "data_product", "tags"):
        if getattr(old, key) != getattr(new, key):
            add(Bump.PATCH, key, f"{key} changed: {getattr(old, key)!r} -> {getattr(new, key)!r}")
    if old.description != new.description:
        add(Bump.PATCH, "description", "the description changed")
    if old.owner != new.owner or old.team != new.team:
        add(Bump.PATCH, "team", f"the team changed (owner {old.owner!r} -> {new.owner!r})")
    if old.custom("onViolation") != new.custom("onViolation"):
        add(
            Bump.MINOR, "customProperties.onViolation",
            f"onViolation {old.custom('onViolation')!r} -> {new.custom('onViolation')!r}",
        )  # fmt: skip
    _properties(old.object.properties, new.object.properties, add)
    _rules(compile_rules(old)[0], compile_rules(new)[0], add)
    _sla(old, new, add)
    return ContractDiff(old.version, new.version, tuple(changes), _registry(old, new))


def _properties(old: tuple[Property, ...], new: tuple[Property, ...], add: Any) -> None:
    before = {p.name: p for p in old}
    after = {p.name: p for p in new}
    for name in before.keys() - after.keys():
        add(Bump.MAJOR, f"properties.{name}", f"property {name!r} removed")
    for name in sorted(after.keys() - before.keys()):
        if after[name].not_null:
            add(
                Bump.MINOR, f"properties.{name}",
                f"required property {name!r} added (producers must send it)",
            )  # fmt: skip
        else:
            add(Bump.MINOR, f"properties.{name}", f"optional property {name!r} added")
    for name in [n for n in before if n in after]:
        a, b = before[name], after[name]
        where = f"properties.{name}"
        if a.logical_type != b.logical_type:
            add(
                Bump.MAJOR, f"{where}.logicalType",
                f"{name!r} changed type: {a.logical_type} -> {b.logical_type}",
            )  # fmt: skip
        if a.not_null and not b.not_null:
            add(Bump.MAJOR, f"{where}.required", f"{name!r} is no longer required (may be null)")
        elif b.not_null and not a.not_null:
            add(
                Bump.MINOR, f"{where}.required",
                f"{name!r} is now required (producers must send it)",
            )  # fmt: skip
        if (a.unique or a.primary_key) and not (b.unique or b.primary_key):
            add(Bump.MAJOR, f"{where}.unique", f"{name!r} is no longer unique")
        if a.classification != b.classification:
            add(
                Bump.MINOR, f"{where}.classification",
                f"{name!r} classification {a.classification!r} -> {b.classification!r}",
            )  # fmt: skip
        for key in ("description", "business_name", "tags", "examples", "physical_type"):
            if getattr(a, key) != getattr(b, key):
                add(Bump.PATCH, f"{where}.{key}", f"{name!r} {key.replace('_', ' ')} changed")


def _signature(rule: Rule) -> tuple[Any, ...]:
    return (rule.kind, rule.field, rule.fields, rule.pattern, rule.expression, rule.nulls_fail)


def _rules(old: list[Rule], new: list[Rule], add: Any) -> None:
    before = {r.name: r for r in old}
    after = {r.name: r for r in new}
    for name in sorted(before.keys() - after.keys()):
        add(Bump.MAJOR, f"rules.{name}", f"rule {name!r} removed ({before[name].reason})")
    for name in sorted(after.keys() - before.keys()):
        add(
            Bump.MINOR, f"rules.{name}",
            f"rule {name!r} added ({after[name].reason}); producers must meet it",
        )  # fmt: skip
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        if replace(a, path=()) == replace(b, path=()):  # moved in the file only
            continue
        tighter = _tighter(a, b)
        if tighter is None:
            add(Bump.MAJOR, f"rules.{name}", f"rule {name!r} changed: {a.reason} -> {b.reason}")
        elif tighter:
            add(
                Bump.MINOR, f"rules.{name}",
                f"rule {name!r} tightened: {a.reason} -> {b.reason}; producers must meet it",
            )  # fmt: skip
        else:
            add(Bump.MAJOR, f"rules.{name}", f"rule {name!r} loosened: {a.reason} -> {b.reason}")


def _tighter(a: Rule, b: Rule) -> bool | None:
    """True if ``b`` accepts a subset of what ``a`` accepts, False if a superset, else None."""
    if _signature(a) != _signature(b):
        return None
    verdicts = []
    if a.values is not None and b.values is not None and set(a.values) != set(b.values):
        if set(b.values) <= set(a.values):
            verdicts.append(True)
        elif set(b.values) >= set(a.values):
            verdicts.append(False)
        else:
            return None
    for old, new, low in ((a.low, b.low, True), (a.high, b.high, False)):
        if old == new:
            continue
        if old is None or new is None:
            verdicts.append(old is None)  # a bound added tightens, removed loosens
            continue
        verdicts.append(new > old if low else new < old)
    if a.tolerance != b.tolerance:
        verdicts.append(b.tolerance.limit < a.tolerance.limit)
    if a.max_lag_ms != b.max_lag_ms and a.max_lag_ms and b.max_lag_ms:
        verdicts.append(b.max_lag_ms < a.max_lag_ms)
    if (a.min_length, a.max_length) != (b.min_length, b.max_length):
        return None
    if not verdicts:
        return True  # only the wording changed
    if all(verdicts):
        return True
    if not any(verdicts):
        return False
    return None


def _sla(old: Contract, new: Contract, add: Any) -> None:
    from trunkline.config import format_duration

    for names, label in ((RETENTION, "retention"), (LATENCY, "latency")):
        try:
            a, b = find(old, names), find(new, names)
        except ValueError:
            continue
        before = None if a is None else a.ms
        after = None if b is None else b.ms
        if (a is None and b is None) or before == after:
            continue
        shown = f"{label} {format_duration(before) if a else 'none'} -> "
        shown += format_duration(after) if b else "none"
        longer = (after is None) if before is not None else False
        if before is not None and after is not None:
            longer = after > before
        if label == "retention":
            add(Bump.MINOR if longer or a is None else Bump.MAJOR, f"sla.{label}", shown)
        else:
            add(Bump.MAJOR if longer or b is None else Bump.MINOR, f"sla.{label}", shown)


def _registry(old: Contract, new: Contract) -> tuple[str, ...]:
    """The registered schema's changes (Confluent's diff), with the levels each breaks."""
    from trunkline.schemas import FORMATS, SchemaType, diff

    json_format = FORMATS[SchemaType.JSON]
    before = json_format.parse(json_schema_text(old), ())
    after = json_format.parse(json_schema_text(new), ())
    lines = []
    for change in diff(before, after):
        broken = ", ".join(level.value for level in change.breaks) or "nothing"
        lines.append(f"{change.rule} at {change.path}: {change.message} (breaks {broken})")
    return tuple(lines)
