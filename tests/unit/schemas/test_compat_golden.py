"""Golden compatibility cases (tests/fixtures/compat/*.yaml) through every mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from trunkline.schemas import FORMATS, Compatibility, JsonPolicy, SchemaType, check_compatibility
from trunkline.schemas._compat import backward_problems, forward_problems
from trunkline.schemas._format import ParsedSchema

CASES = Path(__file__).resolve().parents[2] / "fixtures" / "compat"
TYPES = {"avro": SchemaType.AVRO, "json": SchemaType.JSON}


def _cases() -> list[Any]:
    params = []
    for stem, schema_type in TYPES.items():
        for case in yaml.safe_load((CASES / f"{stem}.yaml").read_text()):
            params.append(pytest.param(schema_type, case, id=f"{stem}: {case['name']}"))
    return params


def parse(schema_type: SchemaType, document: Any) -> ParsedSchema:
    return FORMATS[schema_type].parse(json.dumps(document), [])


def _found(problems: list[Any]) -> list[str]:
    return sorted(f"{p.rule}@{p.path}" for p in problems)


@pytest.mark.parametrize(("schema_type", "case"), _cases())
def test_golden_case(schema_type: SchemaType, case: dict[str, Any]) -> None:
    old, new = parse(schema_type, case["old"]), parse(schema_type, case["new"])
    policy = JsonPolicy(case.get("policy", "STRICT"))
    backward = _found(backward_problems(new, old, policy))
    forward = _found(forward_problems(new, old, policy))
    assert backward == sorted(case["backward"]), "backward"
    assert forward == sorted(case["forward"]), "forward"
    # Every mode against one previous version follows from the two directions.
    expected = {
        Compatibility.BACKWARD: not backward,
        Compatibility.BACKWARD_TRANSITIVE: not backward,
        Compatibility.FORWARD: not forward,
        Compatibility.FORWARD_TRANSITIVE: not forward,
        Compatibility.FULL: not backward and not forward,
        Compatibility.FULL_TRANSITIVE: not backward and not forward,
        Compatibility.NONE: True,
    }
    for level, compatible in expected.items():
        messages = check_compatibility(new, [(1, old)], level, policy)
        assert (not messages) is compatible, (level, messages)
        for message in messages:
            assert " at " in message and "version 1" in message


def test_every_mode_has_compatible_and_incompatible_cases() -> None:
    for stem in TYPES:
        cases = yaml.safe_load((CASES / f"{stem}.yaml").read_text())
        assert any(not c["backward"] for c in cases) and any(c["backward"] for c in cases)
        assert any(not c["forward"] for c in cases) and any(c["forward"] for c in cases)
        both = [c for c in cases if not c["backward"] and not c["forward"]]
        assert both and any(c["backward"] and c["forward"] for c in cases), stem
