"""JSON Schema compatibility: a structural diff, judged by the open/closed content model.

A reader schema can read a writer's data when every document valid under the writer is
valid under the reader. Like Confluent's registry, this is decided by diffing the two
schemas (``original`` = writer, ``update`` = reader) into typed differences and allowing only
the kinds that cannot reject old data. Whether a property may be added or removed depends on
the *content model* of the object: *open* (``additionalProperties`` absent or true: unknown
names may hold anything), *closed* (``false``) or *partially open* (a schema).

Two policies decide which differences are allowed: :data:`STRICT_COMPATIBLE` (Confluent's),
and :data:`LENIENT_COMPATIBLE`, which also trusts readers to ignore unknown properties (so
an optional property may be added to an open model).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from trunkline.schemas._json_refs import resolve_ref
from trunkline.schemas._types import Incompatibility, JsonPolicy

if TYPE_CHECKING:
    from trunkline.schemas._format import ParsedSchema

#: Differences that cannot make valid old data invalid (Confluent's default policy).
STRICT_COMPATIBLE: frozenset[str] = frozenset(
    {
        "ID_CHANGED",
        "DESCRIPTION_CHANGED",
        "TITLE_CHANGED",
        "DEFAULT_CHANGED",
        "SCHEMA_REMOVED",
        "TYPE_EXTENDED",
        "MAX_LENGTH_INCREASED",
        "MAX_LENGTH_REMOVED",
        "MIN_LENGTH_DECREASED",
        "MIN_LENGTH_REMOVED",
        "PATTERN_REMOVED",
        "MAXIMUM_INCREASED",
        "MAXIMUM_REMOVED",
        "MINIMUM_DECREASED",
        "MINIMUM_REMOVED",
        "EXCLUSIVE_MAXIMUM_INCREASED",
        "EXCLUSIVE_MAXIMUM_REMOVED",
        "EXCLUSIVE_MINIMUM_DECREASED",
        "EXCLUSIVE_MINIMUM_REMOVED",
        "MULTIPLE_OF_REDUCED",
        "MULTIPLE_OF_REMOVED",
        "REQUIRED_ATTRIBUTE_REMOVED",
        "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED",
        "MAX_PROPERTIES_INCREASED",
        "MAX_PROPERTIES_REMOVED",
        "MIN_PROPERTIES_DECREASED",
        "MIN_PROPERTIES_REMOVED",
        "ADDITIONAL_PROPERTIES_ADDED",
        "ADDITIONAL_PROPERTIES_EXTENDED",
        "UNEVALUATED_PROPERTIES_ADDED",
        "UNEVALUATED_PROPERTIES_EXTENDED",
        "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
        "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
        "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
        "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
        "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "DEPENDENCY_ARRAY_NARROWED",
        "DEPENDENCY_ARRAY_REMOVED",
        "DEPENDENCY_SCHEMA_REMOVED",
        "MAX_ITEMS_INCREASED",
        "MAX_ITEMS_REMOVED",
        "MIN_ITEMS_DECREASED",
        "MIN_ITEMS_REMOVED",
        "MAX_CONTAINS_INCREASED",
        "MAX_CONTAINS_REMOVED",
        "MIN_CONTAINS_DECREASED",
        "MIN_CONTAINS_REMOVED",
        "UNIQUE_ITEMS_REMOVED",
        "ADDITIONAL_ITEMS_ADDED",
        "ADDITIONAL_ITEMS_EXTENDED",
        "UNEVALUATED_ITEMS_ADDED",
        "UNEVALUATED_ITEMS_EXTENDED",
        "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL",
        "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
        "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL",
        "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "ENUM_ARRAY_EXTENDED",
        "ENUM_ARRAY_REMOVED",
        "SUM_TYPE_EXTENDED",
        "PRODUCT_TYPE_NARROWED",
        "COMBINED_TYPE_EXTENDED",
        "NOT_TYPE_NARROWED",
        "NOT_TYPE_REMOVED",
    }
)

#: STRICT plus what a reader that ignores unknown properties can live with.
LENIENT_COMPATIBLE: frozenset[str] = STRICT_COMPATIBLE | {
    "ADDITIONAL_PROPERTIES_NARROWED",
    "ADDITIONAL_PROPERTIES_REMOVED",
    "UNEVALUATED_PROPERTIES_NARROWED",
    "UNEVALUATED_PROPERTIES_REMOVED",
    "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
}

ALLOWED: Mapping[JsonPolicy, frozenset[str]] = {
    JsonPolicy.STRICT: STRICT_COMPATIBLE,
    JsonPolicy.LENIENT: LENIENT_COMPATIBLE,
}

# Keywords that describe but do not constrain.
_ANNOTATIONS = frozenset(
    {
        "$id",
        "id",
        "$schema",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "readOnly",
        "writeOnly",
        "deprecated",
        "definitions",
        "$defs",
        "format",
        "contentEncoding",
        "contentMediaType",
    }
)
_ANNOTATION_RULES = (
    ("$id", "ID_CHANGED"),
    ("id", "ID_CHANGED"),
    ("title", "TITLE_CHANGED"),
    ("description", "DESCRIPTION_CHANGED"),
    ("default", "DEFAULT_CHANGED"),
)
_MAXIMA = {
    "maxLength": "MAX_LENGTH",
    "maximum": "MAXIMUM",
    "exclusiveMaximum": "EXCLUSIVE_MAXIMUM",
    "maxProperties": "MAX_PROPERTIES",
    "maxItems": "MAX_ITEMS",
    "maxContains": "MAX_CONTAINS",
}
_MINIMA = {
    "minLength": "MIN_LENGTH",
    "minimum": "MINIMUM",
    "exclusiveMinimum": "EXCLUSIVE_MINIMUM",
    "minProperties": "MIN_PROPERTIES",
    "minItems": "MIN_ITEMS",
    "minContains": "MIN_CONTAINS",
}
_SUMS = ("oneOf", "anyOf")


@dataclass(frozen=True, slots=True)
class Difference:
    """One structural change from ``original`` to ``update``, at a path of ``update``."""

    rule: str
    path: str
    message: str


def check(reader: ParsedSchema, writer: ParsedSchema, policy: JsonPolicy) -> list[Incompatibility]:
    """The differences from ``writer`` to ``reader`` that ``policy`` does not allow."""
    allowed = ALLOWED[policy]
    return [
        Incompatibility(d.rule, d.path, d.message)
        for d in differences(writer, reader, policy)
        if d.rule not in allowed
    ]


def differences(
    original: ParsedSchema, update: ParsedSchema, policy: JsonPolicy = JsonPolicy.STRICT
) -> list[Difference]:
    """Every structural difference from ``original`` to ``update``, allowed or not."""
    diff = _Diff(original.named, update.named, ALLOWED[policy])
    return diff.compare(
        _At(original.document, original.document), _At(update.document, update.document), "#"
    )


@dataclass(frozen=True, slots=True)
class _At:
    """A schema and the document it lies in (where its local ``$ref`` resolve)."""

    node: Any
    root: Any

    def at(self, node: Any) -> _At:
        return _At(node, self.root)


class _Diff:
    def __init__(
        self,
        original_named: Mapping[str, Any],
        update_named: Mapping[str, Any],
        allowed: frozenset[str],
    ) -> None:
        self.original_named = original_named
        self.update_named = update_named
        self.allowed = allowed
        # Pairs of schemas being compared further up: recursive schemas meet themselves
        # again, and are taken as compatible there.
        self.active: set[tuple[int, int]] = set()

    def compare(self, o: _At, u: _At, path: str) -> list[Difference]:
        o, u = _deref(o, self.original_named), _deref(u, self.update_named)
        key = (id(o.node), id(u.node))
        if key in self.active:
            return []
        self.active.add(key)
        try:
            return list(self._compare(o, u, path))
        finally:
            self.active.discard(key)

    def compatible(self, o: _At, u: _At) -> bool:
        return all(d.rule in self.allowed for d in self.compare(o, u, "#"))

    def _compare(self, o: _At, u: _At, path: str) -> Iterator[Difference]:
        on, un = _normal(o.node), _normal(u.node)
        for key, rule in _ANNOTATION_RULES:
            if on.get(key) != un.get(key):
                yield Difference(rule, path, f"{key} changed")
        o_any, u_any = _accepts_anything(on), _accepts_anything(un)
        if o_any and u_any:
            return
        if u_any:
            yield Difference("SCHEMA_REMOVED", path, "the new schema accepts any value here")
            return
        if o_any:
            yield Difference(
                "SCHEMA_ADDED",
                path,
                "the old schema accepted any value here; the new one constrains it",
            )
            return
        yield from self._combined(o.at(on), u.at(un), path)
        yield from self._not(o.at(on), u.at(un), path)
        yield from _enum(on, un, path)
        changed = yield from _types(on, un, path)
        if changed:
            return
        yield from _bounds(on, un, path)
        yield from _pattern_and_multiple(on, un, path)
        yield from self._object(o.at(on), u.at(un), path)
        yield from self._array(o.at(on), u.at(un), path)

    # Combinators ------------------------------------------------------------------------

    def _combined(self, o: _At, u: _At, path: str) -> Iterator[Difference]:
        oc = next((k for k in (*_SUMS, "allOf") if k in o.node), None)
        uc = next((k for k in (*_SUMS, "allOf") if k in u.node), None)
        if oc is None and uc is None:
            return
        if oc == uc == "allOf":
            yield from self._product(o, u, path)
        elif oc in _SUMS and uc in _SUMS and (oc == uc or (oc, uc) == ("oneOf", "anyOf")):
            if oc != uc:
                yield Difference(
                    "COMBINED_TYPE_EXTENDED", path, "oneOf became anyOf, which accepts more"
                )
            yield from self._sum(o, u, oc, uc, path)
        elif oc is None and uc in _SUMS:
            branches = u.node[uc]
            if any(self.compatible(_without(o, uc), u.at(b)) for b in branches):
                yield Difference(
                    "SUM_TYPE_EXTENDED",
                    f"{path}/{uc}",
                    f"the schema became a {uc} with a branch that still accepts the old values",
                )
            else:
                yield Difference(
                    "COMBINED_TYPE_CHANGED",
                    f"{path}/{uc}",
                    f"the schema became a {uc} none of whose branches accepts the old values",
                )
        elif oc in _SUMS and uc is None:
            for i, branch in enumerate(o.node[oc]):
                if not self.compatible(o.at(branch), _without(u, oc)):
                    yield Difference(
                        "SUM_TYPE_NARROWED",
                        path,
                        f"branch {i} of the old {oc} is no longer accepted by the new schema",
                    )
        elif oc == "allOf" and uc is None:
            if any(self.compatible(o.at(b), _without(u, oc)) for b in o.node[oc]):
                yield Difference(
                    "PRODUCT_TYPE_NARROWED", path, "the allOf was replaced by a wider schema"
                )
            else:
                yield Difference(
                    "COMBINED_TYPE_CHANGED", path, "the allOf was replaced by a narrower schema"
                )
        elif oc is None and uc == "allOf":
            for j, branch in enumerate(u.node[uc]):
                if not self.compatible(_without(o, uc), u.at(branch)):
                    yield Difference(
                        "PRODUCT_TYPE_EXTENDED",
                        f"{path}/allOf/{j}",
                        f"branch {j} of the new allOf rejects values the old schema accepted",
                    )
        else:
            yield Difference(
                "COMBINED_TYPE_CHANGED", path, f"{oc or 'a plain schema'} became {uc or 'plain'}"
            )

    def _sum(self, o: _At, u: _At, oc: str, uc: str, path: str) -> Iterator[Difference]:
        old, new = o.node[oc], u.node[uc]
        used: set[int] = set()
        for i, branch in enumerate(old):
            match = next(
                (
                    j
                    for j, candidate in enumerate(new)
                    if j not in used and self.compatible(o.at(branch), u.at(candidate))
                ),
                None,
            )
            if match is None:
                yield Difference(
                    "SUM_TYPE_NARROWED",
                    f"{path}/{uc}",
                    f"branch {i} of the old {oc} has no branch in the new {uc} that accepts "
                    "its values",
                )
            else:
                used.add(match)
        if len(new) > len(old):
            yield Difference(
                "SUM_TYPE_EXTENDED",
                f"{path}/{uc}",
                f"the {uc} gained {len(new) - len(old)} branch(es)",
            )

    def _product(self, o: _At, u: _At, path: str) -> Iterator[Difference]:
        old, new = o.node["allOf"], u.node["allOf"]
        for j, branch in enumerate(new):
            if not any(self.compatible(o.at(b), u.at(branch)) for b in old):
                yield Difference(
                    "PRODUCT_TYPE_EXTENDED",
                    f"{path}/allOf/{j}",
                    f"branch {j} of the new allOf constrains values no old branch constrained",
                )
        if len(new) < len(old):
            yield Difference(
                "PRODUCT_TYPE_NARROWED",
                f"{path}/allOf",
                f"the allOf lost {len(old) - len(new)} branch(es)",
            )

    def _not(self, o: _At, u: _At, path: str) -> Iterator[Difference]:
        o_not, u_not = o.node.get("not"), u.node.get("not")
        if o_not is None and u_not is None:
            return
        if u_not is None:
            yield Difference("NOT_TYPE_REMOVED", f"{path}/not", "the 'not' was removed")
        elif o_not is None:
            yield Difference(
                "NOT_TYPE_ADDED", f"{path}/not", "a 'not' now rejects values that were valid"
            )
        elif _canonical(o_not) != _canonical(u_not):
            # "not A" accepts more than "not B" exactly when A accepts less than B.
            if self.compatible(u.at(u_not), o.at(o_not)):
                yield Difference("NOT_TYPE_NARROWED", f"{path}/not", "the 'not' excludes less")
            else:
                yield Difference("NOT_TYPE_EXTENDED", f"{path}/not", "the 'not' excludes more")

    # Objects ----------------------------------------------------------------------------

    def _object(self, o: _At, u: _At, path: str) -> Iterator[Difference]:
        o_props: Mapping[str, Any] = _mapping(o.node.get("properties"))
        u_props: Mapping[str, Any] = _mapping(u.node.get("properties"))
        o_addl, u_addl = o.node.get("additionalProperties"), u.node.get("additionalProperties")
        u_required = set(_names(u.node.get("required")))
        for name, schema in o_props.items():
            where = f"{path}/properties/{_escape(name)}"
            if name in u_props:
                yield from self.compare(o.at(schema), u.at(u_props[name]), where)
            else:
                yield self._property_removed(o.at(schema), u.at(u_addl), name, where)
        for name, schema in u_props.items():
            if name not in o_props:
                where = f"{path}/properties/{_escape(name)}"
                required = name in u_required and not _has_default(schema)
                yield self._property_added(o.at(o_addl), u.at(schema), name, required, where)
        yield from _required(o.node, u.node, u_props, path)
        yield from self._additional(
            "ADDITIONAL_PROPERTIES", o.at(o_addl), u.at(u_addl), f"{path}/additionalProperties"
        )
        yield from self._additional(
            "UNEVALUATED_PROPERTIES",
            o.at(o.node.get("unevaluatedProperties")),
            u.at(u.node.get("unevaluatedProperties")),
            f"{path}/unevaluatedProperties",
        )
        o_patterns = _mapping(o.node.get("patternProperties"))
        u_patterns = _mapping(u.node.get("patternProperties"))
        for pattern, schema in o_patterns.items():
            if pattern in u_patterns:
                where = f"{path}/patternProperties/{_escape(pattern)}"
                yield from self.compare(o.at(schema), u.at(u_patterns[pattern]), where)
        if "propertyNames" in o.node or "propertyNames" in u.node:
            yield from self.compare(
                o.at(o.node.get("propertyNames", True)),
                u.at(u.node.get("propertyNames", True)),
                f"{path}/propertyNames",
            )
        yield from self._dependencies(o, u, path)

    def _property_removed(self, o: _At, u_addl: _At, name: str, where: str) -> Difference:
        model = _model(u_addl.node)
        if model == "open":
            return Difference(
                "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
                where,
                f"property {name!r} was removed; the open content model still accepts it",
            )
        if model == "closed":
            if o.node is False:
                return Difference(
                    "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    where,
                    f"property {name!r} (which allowed no value) was removed",
                )
            return Difference(
                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                where,
                f"property {name!r} was removed, and the closed content model "
                "(additionalProperties: false) now rejects old values that have it",
            )
        if self.compatible(o, u_addl):
            return Difference(
                "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                where,
                f"property {name!r} was removed; additionalProperties still accepts its values",
            )
        return Difference(
            "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
            where,
            f"property {name!r} was removed, and additionalProperties rejects some of its "
            "old values",
        )

    def _property_added(
        self, o_addl: _At, u: _At, name: str, required: bool, where: str
    ) -> Difference:
        model = _model(o_addl.node)
        if model == "open":
            if _accepts_anything(_normal(u.node)):
                return Difference(
                    "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
                    where,
                    f"property {name!r} was added with an empty schema",
                )
            return Difference(
                "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                where,
                f"property {name!r} was added, but the old schema's open content model let "
                "old data hold that name with any value (close the old model with "
                "additionalProperties: false, or use the LENIENT JSON policy)",
            )
        if model == "closed":
            if required:
                return Difference(
                    "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
                    where,
                    f"required property {name!r} without a default was added",
                )
            return Difference(
                "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
                where,
                f"optional property {name!r} was added to a closed content model",
            )
        if self.compatible(o_addl, u):
            return Difference(
                "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                where,
                f"property {name!r} was added and accepts every value the old "
                "additionalProperties did",
            )
        return Difference(
            "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
            where,
            f"property {name!r} was added, and rejects values the old additionalProperties "
            "accepted under that name",
        )

    def _additional(self, prefix: str, o: _At, u: _At, where: str) -> Iterator[Difference]:
        o_model, u_model = _model(o.node), _model(u.node)
        if o_model == u_model and o_model != "partial":
            return
        if u_model == "open":
            rule = "_ADDED" if o_model == "closed" else "_EXTENDED"
            yield Difference(prefix + rule, where, "more additional values are allowed")
        elif o_model == "closed":
            yield Difference(prefix + "_ADDED", where, "additional values are now allowed")
        elif u_model == "closed":
            yield Difference(
                prefix + "_REMOVED", where, "additional values were allowed and no longer are"
            )
        elif o_model == "open":
            yield Difference(
                prefix + "_NARROWED", where, "additional values must now match a schema"
            )
        elif _canonical(o.node) != _canonical(u.node):
            if self.compatible(o, u):
                yield Difference(
                    prefix + "_EXTENDED", where, "the schema of additional values widened"
                )
            else:
                yield Difference(
                    prefix + "_NARROWED", where, "the schema of additional values narrowed"
                )

    def _dependencies(self, o: _At, u: _At, path: str) -> Iterator[Difference]:
        for key in ("dependencies", "dependentRequired", "dependentSchemas"):
            o_deps, u_deps = _mapping(o.node.get(key)), _mapping(u.node.get(key))
            for name in sorted(set(o_deps) | set(u_deps)):
                ov, uv = o_deps.get(name), u_deps.get(name)
                where = f"{path}/{key}/{_escape(name)}"
                if isinstance(ov, list) or isinstance(uv, list):
                    yield from _dependency_array(ov, uv, where)
                elif ov is None:
                    yield Difference(
                        "DEPENDENCY_SCHEMA_ADDED", where, f"a dependency on {name!r} was added"
                    )
                elif uv is None:
                    yield Difference(
                        "DEPENDENCY_SCHEMA_REMOVED",
                        where,
                        f"the dependency on {name!r} was removed",
                    )
                else:
                    yield from self.compare(o.at(ov), u.at(uv), where)

    # Arrays -----------------------------------------------------------------------------

    def _array(self, o: _At, u: _At, path: str) -> Iterator[Difference]:
        o_tuple, o_rest = _tuple(o.node)
        u_tuple, u_rest = _tuple(u.node)
        if o_tuple is None and u_tuple is None:
            if "items" in o.node or "items" in u.node:
                yield from self.compare(
                    o.at(o.node.get("items", True)),
                    u.at(u.node.get("items", True)),
                    f"{path}/items",
                )
        elif o_tuple is not None and u_tuple is not None:
            yield from self._tuples(o, u, o_tuple, u_tuple, o_rest, u_rest, path)
            yield from self._additional(
                "ADDITIONAL_ITEMS", o.at(o_rest), u.at(u_rest), f"{path}/additionalItems"
            )
        elif o_tuple is not None:  # a tuple became a list of one item schema
            for i, item in enumerate(o_tuple):
                yield from self.compare(o.at(item), u.at(u_rest), f"{path}/items/{i}")
            yield from self.compare(o.at(o_rest), u.at(u_rest), f"{path}/items")
        else:
            assert u_tuple is not None
            for i, item in enumerate(u_tuple):
                yield from self.compare(o.at(o_rest), u.at(item), f"{path}/items/{i}")
            yield from self.compare(o.at(o_rest), u.at(u_rest), f"{path}/additionalItems")
        if not o.node.get("uniqueItems") and u.node.get("uniqueItems"):
            yield Difference(
                "UNIQUE_ITEMS_ADDED", f"{path}/uniqueItems", "items must now be unique"
            )
        elif o.node.get("uniqueItems") and not u.node.get("uniqueItems"):
            yield Difference(
                "UNIQUE_ITEMS_REMOVED", f"{path}/uniqueItems", "items need not be unique any more"
            )
        if "contains" in o.node and "contains" in u.node:
            yield from self.compare(
                o.at(o.node["contains"]), u.at(u.node["contains"]), f"{path}/contains"
            )
        elif "contains" in u.node:
            yield Difference("CONTAINS_ADDED", f"{path}/contains", "a 'contains' was added")

    def _tuples(
        self,
        o: _At,
        u: _At,
        o_tuple: list[Any],
        u_tuple: list[Any],
        o_rest: Any,
        u_rest: Any,
        path: str,
    ) -> Iterator[Difference]:
        for i in range(max(len(o_tuple), len(u_tuple))):
            where = f"{path}/items/{i}"
            if i < len(o_tuple) and i < len(u_tuple):
                yield from self.compare(o.at(o_tuple[i]), u.at(u_tuple[i]), where)
            elif i < len(u_tuple):  # added position
                model = _model(o_rest)
                if model == "closed":
                    yield Difference(
                        "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL", where, f"position {i} was added"
                    )
                elif model == "open":
                    if _accepts_anything(_normal(u_tuple[i])):
                        rule = "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                    else:
                        rule = "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"
                    yield Difference(
                        rule, where, f"position {i} was added; old data may hold anything there"
                    )
                elif self.compatible(o.at(o_rest), u.at(u_tuple[i])):
                    yield Difference(
                        "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        where,
                        f"position {i} was added and accepts what the old additionalItems did",
                    )
                else:
                    yield Difference(
                        "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        where,
                        f"position {i} was added and rejects values the old additionalItems "
                        "accepted",
                    )
            else:  # removed position
                model = _model(u_rest)
                if model == "open":
                    yield Difference(
                        "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL", where, f"position {i} was removed"
                    )
                elif model == "closed":
                    yield Difference(
                        "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                        where,
                        f"position {i} was removed, and additionalItems: false now rejects "
                        "old values that have it",
                    )
                elif self.compatible(o.at(o_tuple[i]), u.at(u_rest)):
                    yield Difference(
                        "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        where,
                        f"position {i} was removed; additionalItems still accepts its values",
                    )
                else:
                    yield Difference(
                        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        where,
                        f"position {i} was removed, and additionalItems rejects its old values",
                    )


# Keyword helpers ------------------------------------------------------------------------


def _deref(at: _At, named: Mapping[str, Any]) -> _At:
    for _ in range(64):
        node = at.node
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
            return at
        found = resolve_ref(node["$ref"], at.root, named)
        if found is None:  # parse() refuses these; stay defensive
            return _At(True, at.root)
        at = _At(found[0], found[1])
    return at


def _normal(node: Any) -> dict[str, Any]:
    if node is True or node is None:
        return {}
    if node is False:
        return {"not": {}}
    return dict(node) if isinstance(node, dict) else {}


def _without(at: _At, keyword: str) -> _At:
    return at.at({k: v for k, v in _normal(at.node).items() if k != keyword})


def _accepts_anything(node: Mapping[str, Any]) -> bool:
    return all(key in _ANNOTATIONS for key in node)


def _model(node: Any) -> str:
    """The content model an ``additionalProperties`` / ``additionalItems`` value gives."""
    if node is None or node is True or (isinstance(node, dict) and _accepts_anything(node)):
        return "open"
    if node is False:
        return "closed"
    return "partial"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _has_default(schema: Any) -> bool:
    return isinstance(schema, dict) and "default" in schema


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _tuple(node: Mapping[str, Any]) -> tuple[list[Any] | None, Any]:
    """(positional item schemas or None, the schema of the other items)."""
    if isinstance(node.get("prefixItems"), list):
        return node["prefixItems"], node.get("items")
    if isinstance(node.get("items"), list):
        return node["items"], node.get("additionalItems")
    return None, node.get("items")


def _enum(on: Mapping[str, Any], un: Mapping[str, Any], path: str) -> Iterator[Difference]:
    o_values = _values(on)
    u_values = _values(un)
    if o_values is None and u_values is None:
        return
    if u_values is None:
        yield Difference("ENUM_ARRAY_REMOVED", f"{path}/enum", "any value is allowed again")
    elif o_values is None:
        yield Difference("ENUM_ARRAY_ADDED", f"{path}/enum", "values are now limited to an enum")
    elif u_values > o_values:
        yield Difference("ENUM_ARRAY_EXTENDED", f"{path}/enum", "the enum gained values")
    elif u_values < o_values:
        lost = ", ".join(sorted(o_values - u_values))
        yield Difference("ENUM_ARRAY_NARROWED", f"{path}/enum", f"the enum lost {lost}")
    elif u_values != o_values:
        lost = ", ".join(sorted(o_values - u_values))
        yield Difference("ENUM_ARRAY_CHANGED", f"{path}/enum", f"the enum lost {lost}")


def _values(node: Mapping[str, Any]) -> set[str] | None:
    if isinstance(node.get("enum"), list):
        return {_canonical(v) for v in node["enum"]}
    if "const" in node:
        return {_canonical(node["const"])}
    return None


def _types(
    on: Mapping[str, Any], un: Mapping[str, Any], path: str
) -> Generator[Difference, None, bool]:
    """Type differences; returns (via StopIteration) True when the types share nothing."""
    o_types, u_types = _type_set(on), _type_set(un)
    if o_types == u_types or u_types is None:
        if o_types != u_types:
            yield Difference("TYPE_EXTENDED", f"{path}/type", "any type is allowed again")
        return False
    if o_types is None:
        yield Difference("TYPE_NARROWED", f"{path}/type", f"values must now be {_either(u_types)}")
        return False
    if all(_accepts(u_types, t) for t in o_types):
        yield Difference(
            "TYPE_EXTENDED", f"{path}/type", f"{_either(o_types)} became {_either(u_types)}"
        )
        return False
    if all(_accepts(o_types, t) for t in u_types):
        yield Difference(
            "TYPE_NARROWED", f"{path}/type", f"{_either(o_types)} became {_either(u_types)}"
        )
        return False
    yield Difference(
        "TYPE_CHANGED", f"{path}/type", f"{_either(o_types)} became {_either(u_types)}"
    )
    return not any(_accepts(u_types, t) for t in o_types)


def _type_set(node: Mapping[str, Any]) -> frozenset[str] | None:
    kind = node.get("type")
    if isinstance(kind, str):
        return frozenset({kind})
    if isinstance(kind, list):
        return frozenset(k for k in kind if isinstance(k, str))
    return None


def _accepts(types: frozenset[str], kind: str) -> bool:
    return kind in types or (kind == "integer" and "number" in types)


def _either(types: frozenset[str]) -> str:
    return " or ".join(sorted(types))


def _bounds(on: Mapping[str, Any], un: Mapping[str, Any], path: str) -> Iterator[Difference]:
    for keyword, name in (*_MAXIMA.items(), *_MINIMA.items()):
        ov, uv = on.get(keyword), un.get(keyword)
        if ov == uv:
            continue
        where = f"{path}/{keyword}"
        if isinstance(ov, bool) or isinstance(uv, bool):  # draft-04 exclusive flags
            rule = "_ADDED" if uv else "_REMOVED"
            yield Difference(name + rule, where, f"{keyword} changed from {ov} to {uv}")
        elif ov is None:
            yield Difference(name + "_ADDED", where, f"{keyword} {uv} was added")
        elif uv is None:
            yield Difference(name + "_REMOVED", where, f"{keyword} {ov} was removed")
        else:
            grew = uv > ov
            yield Difference(
                name + ("_INCREASED" if grew else "_DECREASED"),
                where,
                f"{keyword} changed from {ov} to {uv}",
            )


def _pattern_and_multiple(
    on: Mapping[str, Any], un: Mapping[str, Any], path: str
) -> Iterator[Difference]:
    op, up = on.get("pattern"), un.get("pattern")
    if op != up:
        rule = (
            "PATTERN_ADDED"
            if op is None
            else "PATTERN_REMOVED"
            if up is None
            else "PATTERN_CHANGED"
        )
        yield Difference(rule, f"{path}/pattern", f"pattern {op!r} became {up!r}")
    om, um = on.get("multipleOf"), un.get("multipleOf")
    if om == um:
        return
    where = f"{path}/multipleOf"
    if om is None:
        yield Difference("MULTIPLE_OF_ADDED", where, f"values must now be multiples of {um}")
    elif um is None:
        yield Difference("MULTIPLE_OF_REMOVED", where, f"multipleOf {om} was removed")
    else:
        # A multiple of the old step is a multiple of the new one when the new step divides it.
        ratio = Fraction(str(om)) / Fraction(str(um))
        if ratio.denominator == 1:
            yield Difference("MULTIPLE_OF_REDUCED", where, f"multipleOf {om} became {um}")
        elif (1 / ratio).denominator == 1:
            yield Difference("MULTIPLE_OF_EXPANDED", where, f"multipleOf {om} became {um}")
        else:
            yield Difference("MULTIPLE_OF_CHANGED", where, f"multipleOf {om} became {um}")


def _required(
    on: Mapping[str, Any], un: Mapping[str, Any], u_props: Mapping[str, Any], path: str
) -> Iterator[Difference]:
    o_req, u_req = _names(on.get("required")), _names(un.get("required"))
    for name in u_req:
        if name in o_req:
            continue
        where = f"{path}/required/{_escape(name)}"
        if _has_default(u_props.get(name)):
            yield Difference(
                "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED",
                where,
                f"property {name!r} became required, with a default",
            )
        else:
            yield Difference(
                "REQUIRED_ATTRIBUTE_ADDED",
                where,
                f"property {name!r} became required without a default; old data may lack it",
            )
    for name in o_req:
        if name not in u_req:
            yield Difference(
                "REQUIRED_ATTRIBUTE_REMOVED",
                f"{path}/required/{_escape(name)}",
                f"property {name!r} is no longer required",
            )


def _dependency_array(ov: Any, uv: Any, where: str) -> Iterator[Difference]:
    if ov is None:
        yield Difference("DEPENDENCY_ARRAY_ADDED", where, "a property dependency was added")
        return
    if uv is None:
        yield Difference("DEPENDENCY_ARRAY_REMOVED", where, "a property dependency was removed")
        return
    old, new = set(_names(ov)), set(_names(uv))
    if new < old:
        yield Difference("DEPENDENCY_ARRAY_NARROWED", where, "the dependency requires fewer names")
    elif new > old:
        yield Difference("DEPENDENCY_ARRAY_EXTENDED", where, "the dependency requires more names")
    elif new != old:
        yield Difference("DEPENDENCY_ARRAY_CHANGED", where, "the dependency requires other names")
