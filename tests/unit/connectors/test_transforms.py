"""Transforms: strict YAML with positioned errors, and each step on whole batches."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from trunkline.config import ProjectFileError, load_project
from trunkline.config._base import EnvValue
from trunkline.connectors.transforms import SinkStep, SourceStep, Transforms, route_topics
from trunkline.errors import ConnectorError

CONNECTORS = {
    "sources": "  intake:\n    type: http\n    topics: [t]\n",
    "sinks": "  out:\n    type: parquet\n    path: o\n    topics: [t]\n",
}


def problems(tmp_path: Path, steps: str, kind: str = "sources") -> list[str]:
    """Load a project whose connector has these transforms (lines 6-); its problems."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "      ")
    text = f"{kind}:\n{CONNECTORS[kind]}    transforms:\n{body}\n"
    (tmp_path / "trunkline.yaml").write_text(text)
    with pytest.raises(ProjectFileError) as caught:
        load_project(tmp_path, env={})
    return [f"{p.line}:{p.column} {p.message} {p.hint}".strip() for p in caught.value.problems]


def test_errors_are_placed_and_worded(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        - filter: "amount >"
        - filtr: "a > 1"
        - {select: [a], rename: {a: b}}
        - cast: {amount: "decimel(10,2)"}
        - hash: {columns: [email], salt: literal}
        - route: {field: country, topics: {DE: "bad topic!"}}
        """,
    )
    text = "\n".join(found)
    assert '6:17 not a SQL expression: syntax error at or near ")"' in text
    assert "7:9 unknown key 'filtr'" in text and "did you mean 'filter'" in text
    assert "one step per list item: found 'select' and 'rename'" in text
    assert "9:15 unknown type 'decimel(10,2)' for field 'amount' known: string" in text
    assert "10:40 the salt must come from the environment" in text
    assert "11:46 expected a topic name" in text


def test_route_is_for_sources_only(tmp_path: Path) -> None:
    found = problems(tmp_path, "- route: {field: c, topics: {a: b}}", kind="sinks")
    assert any("'route' applies to sources only" in p for p in found), found


def test_the_salt_comes_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "trunkline.yaml").write_text(
        "sinks:\n  out:\n    type: parquet\n    path: o\n    topics: [t]\n    transforms:\n"
        '      - hash: {columns: pii, salt: "${SALT}"}\n'
    )
    config = load_project(tmp_path, env={"SALT": "x"})
    step = config.sinks["out"].config.transforms[0]  # type: ignore[attr-defined]
    assert step.hash.salt.get_secret_value() == "x" and "x" not in repr(step)


def _values(*rows: dict[str, Any] | None) -> pa.Array:
    return pa.array([None if r is None else json.dumps(r).encode() for r in rows], pa.binary())


def _steps(*steps: dict[str, Any], model: type[SinkStep] = SourceStep) -> list[SinkStep]:
    return [model.model_validate(s) for s in steps]


def test_filter_select_rename_keep_order_and_pass_through_what_is_not_json() -> None:
    transforms = Transforms(
        _steps(
            {"filter": "amount > 1 AND missing IS NULL"},
            {"select": ["id", "amount", "absent"]},
            {"rename": {"amount": "total"}},
        )
    )
    out = transforms.apply(
        _values({"id": 1, "amount": 5}, None, {"id": 2, "amount": 0}, {"id": 3, "amount": 2}), "t"
    )
    assert out.rows.tolist() == [0, 1, 3]
    assert out.values.to_pylist() == [
        b'{"id":1,"total":5,"absent":null}',
        None,
        b'{"id":3,"total":2,"absent":null}',
    ]
    assert out.filtered == 1 and out.topics is None


def test_cast_dead_letters_what_does_not_convert_hiding_pii() -> None:
    transforms = Transforms(_steps({"cast": {"n": "int", "email": "int"}}), pii={"t": ("email",)})
    out = transforms.apply(_values({"n": "7"}, {"n": "x"}, {"n": "8", "email": "a@b"}), "t")
    assert out.rows.tolist() == [0]
    assert json.loads(out.values[0].as_py()) == {"n": 7, "email": None}
    assert out.dead == [
        (1, "cast: field 'n': 'x' is not a BIGINT"),
        (2, "cast: field 'email': a value is not a BIGINT"),
    ]


def test_hash_and_mask_pii_fields() -> None:
    salt = EnvValue("pepper", ("SALT",))
    transforms = Transforms(
        _steps(
            {"hash": {"columns": "pii", "salt": salt}},
            {"mask": {"columns": ["phone"], "keep_last": 2}},
        ),
        pii={"t": ("email",)},
    )
    out = transforms.apply(_values({"email": "a@b", "phone": "12345"}, {"email": None}), "t")
    first = json.loads(out.values[0].as_py())
    assert first["email"] == hashlib.sha256(b"pepper" + b"a@b").hexdigest()
    assert first["phone"] == "****45"
    assert json.loads(out.values[1].as_py()) == {"email": None, "phone": None}


def test_route_by_field() -> None:
    steps = _steps(
        {"route": {"field": "c", "topics": {"DE": "t.de", "1": "t.one"}, "default": "t.x"}}
    )
    assert route_topics(steps) == ("t.de", "t.one", "t.x")
    out = Transforms(steps).apply(_values({"c": "DE"}, {"c": 1}, {"c": "FR"}, {}, None), "t")
    assert out.topics is not None
    assert out.topics.to_pylist() == ["t.de", "t.one", "t.x", "t.x", "t"]


def test_a_step_that_cannot_run_stops_the_connector() -> None:
    transforms = Transforms(_steps({"rename": {"a": "b"}}), connector="intake")
    with pytest.raises(ConnectorError, match="transform 1 \\(rename\\) of intake"):
        transforms.apply(_values({"a": 1, "b": 2}), "t")
