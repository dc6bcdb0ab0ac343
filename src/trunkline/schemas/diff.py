"""What changed between two schemas, and which compatibility levels each change breaks."""

from __future__ import annotations

from dataclasses import dataclass

from trunkline.schemas._compat import backward_problems, forward_problems
from trunkline.schemas._format import ParsedSchema
from trunkline.schemas._json_compat import ALLOWED, differences
from trunkline.schemas._types import Compatibility, JsonPolicy, SchemaType

_BACKWARD = (
    Compatibility.BACKWARD,
    Compatibility.BACKWARD_TRANSITIVE,
    Compatibility.FULL,
    Compatibility.FULL_TRANSITIVE,
)
_FORWARD = (
    Compatibility.FORWARD,
    Compatibility.FORWARD_TRANSITIVE,
    Compatibility.FULL,
    Compatibility.FULL_TRANSITIVE,
)


@dataclass(frozen=True, slots=True)
class Change:
    """One change from the old schema to the new; ``breaks`` lists the levels it violates.

    A change that breaks nothing is listed where the format can tell it (JSON Schema's
    structural diff names every difference; Avro's resolution reports only problems).
    """

    rule: str
    path: str
    message: str
    breaks: tuple[Compatibility, ...]


def diff(
    old: ParsedSchema, new: ParsedSchema, policy: JsonPolicy = JsonPolicy.STRICT
) -> list[Change]:
    """The changes from ``old`` to ``new``, each with the compatibility levels it breaks.

    BACKWARD problems are the new schema failing to read old data; FORWARD problems the old
    schema failing to read new data; FULL breaks with either.
    """
    changes: dict[tuple[str, str, str], set[Compatibility]] = {}
    forward = forward_problems(new, old, policy)
    if old.schema_type is SchemaType.JSON and new.schema_type is SchemaType.JSON:
        # The structural diff names every change from old to new; a FORWARD problem is the
        # same change seen from the other side, so it is attached by path.
        allowed = ALLOWED[policy]
        by_path = {problem.path: problem for problem in forward}
        for found in differences(old, new, policy):
            levels = changes.setdefault((found.rule, found.path, found.message), set())
            if found.rule not in allowed:
                levels.update(_BACKWARD)
            if by_path.pop(found.path, None) is not None:
                levels.update(_FORWARD)
        forward = list(by_path.values())
    else:
        for problem in backward_problems(new, old, policy):
            key = (problem.rule, problem.path, problem.message)
            changes.setdefault(key, set()).update(_BACKWARD)
    for problem in forward:
        changes.setdefault((problem.rule, problem.path, problem.message), set()).update(_FORWARD)
    order = list(Compatibility)
    return [
        Change(rule, path, message, tuple(sorted(levels, key=order.index)))
        for (rule, path, message), levels in changes.items()
    ]


def unbroken(changes: list[Change]) -> list[Compatibility]:
    """The levels (NONE included) that none of ``changes`` breaks."""
    broken = {level for change in changes for level in change.breaks}
    return [level for level in Compatibility if level not in broken]
