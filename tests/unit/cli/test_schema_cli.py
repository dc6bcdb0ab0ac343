"""``trunkline schema ...`` run in-process against a real project in a temp folder."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from trunkline.cli import main

V1 = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string", "default": ""}]}
BAD = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string"}]}


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return Run(capsys, monkeypatch)


@pytest.fixture
def proj(tmp_path: Path, run: Run) -> Path:
    assert run("init", str(tmp_path / "p"))[0] == 0
    for name, schema in {"v1.avsc": V1, "v2.avsc": V2, "bad.avsc": BAD}.items():
        (tmp_path / name).write_text(json.dumps(schema))
    return tmp_path / "p"


def test_register_get_list(proj: Path, run: Run) -> None:
    files = proj.parent
    code, out, _ = run(
        "-p", str(proj), "schema", "register", "orders-value", str(files / "v1.avsc")
    )
    assert code == 0 and "version 1" in out and "schema id 1" in out
    code, out, _ = run(
        "-p", str(proj), "schema", "register", "orders-value", str(files / "v2.avsc"), "--json"
    )
    assert code == 0 and json.loads(out)["version"] == 2
    code, out, _ = run("-p", str(proj), "schema", "get", "orders-value", "--json")
    got = json.loads(out)
    assert (got["version"], got["id"], got["schemaType"]) == (2, 2, "AVRO")
    code, out, _ = run("-p", str(proj), "schema", "get", "orders-value", "--version", "1")
    assert code == 0 and '"name": "Order"' in out
    code, out, _ = run("-p", str(proj), "schema", "list", "--json")
    assert json.loads(out) == [
        {"subject": "orders-value", "versions": [1, 2], "latest": 2, "id": 2,
         "schemaType": "AVRO", "deleted": False}
    ]  # fmt: skip
    code, out, _ = run("-p", str(proj), "schema", "list")
    assert code == 0 and "orders-value" in out


def test_register_from_stdin_with_type_and_reference(proj: Path, run: Run) -> None:
    address = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
               "properties": {"zip": {"type": "string"}}}  # fmt: skip
    code, _, _ = run("-p", str(proj), "schema", "register", "address", "-",
                     stdin=json.dumps(address))  # fmt: skip
    assert code == 0
    order = {"type": "object", "properties": {"to": {"$ref": "address.json"}}}
    code, out, err = run(
        "-p", str(proj), "schema", "register", "orders-value", "-", "--type", "json",
        "--reference", "address.json=address:latest", "--json", stdin=json.dumps(order),
    )  # fmt: skip
    assert code == 0, err
    registered = json.loads(out)
    assert registered["schemaType"] == "JSON"
    assert registered["references"] == [
        {"name": "address.json", "subject": "address", "version": 1}
    ]


def test_register_errors_and_exit_codes(proj: Path, run: Run) -> None:
    files = proj.parent
    p = ["-p", str(proj), "schema"]
    assert run(*p, "register", "orders-value", str(files / "v1.avsc"))[0] == 0
    code, _, err = run(*p, "register", "orders-value", str(files / "bad.avsc"))
    assert code == 1
    assert "READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1" in err
    (files / "broken.avsc").write_text("{")
    code, _, err = run(*p, "register", "orders-value", str(files / "broken.avsc"))
    assert code == 2 and "not JSON" in err
    code, _, err = run(*p, "register", "orders-value", str(files / "missing.avsc"))
    assert code == 2 and "does not exist" in err
    code, _, err = run(*p, "register", "orders-value", str(files / "v2.avsc"), "-r", "nonsense")
    assert code == 2 and "name=subject:version" in err
    code, _, err = run(*p, "get", "orders-value", "--version", "zero")
    assert code == 2 and "invalid version" in err
    code, _, err = run(*p, "get", "nope")
    assert code == 1 and "'nope' not found" in err
    code, out, _ = run(*p, "list", "--json")
    assert json.loads(out)[0]["versions"] == [1]


def test_check(proj: Path, run: Run) -> None:
    files = proj.parent
    p = ["-p", str(proj), "schema"]
    run(*p, "register", "orders-value", str(files / "v1.avsc"))
    code, out, _ = run(*p, "check", "orders-value", str(files / "v2.avsc"))
    assert code == 0 and "compatible" in out
    code, out, _ = run(*p, "check", "orders-value", str(files / "bad.avsc"))
    assert code == 1 and "READER_FIELD_MISSING_DEFAULT_VALUE" in out
    code, out, _ = run(*p, "check", "orders-value", str(files / "bad.avsc"), "--json")
    assert code == 1 and json.loads(out)["is_compatible"] is False
    (files / "broken.avsc").write_text("{}")
    code, _, _ = run(*p, "check", "orders-value", str(files / "broken.avsc"))
    assert code == 2


def test_diff(proj: Path, run: Run) -> None:
    files = proj.parent
    p = ["-p", str(proj), "schema"]
    run(*p, "register", "orders-value", str(files / "v1.avsc"))
    run(*p, "register", "orders-value", str(files / "v2.avsc"))
    code, out, _ = run(*p, "diff", "orders-value", "1", "2")
    assert code == 0 and "no breaking changes" in out and "FULL_TRANSITIVE" in out
    code, out, _ = run(*p, "diff", "orders-value", "1", str(files / "bad.avsc"), "--json")
    assert code == 0
    result = json.loads(out)
    (change,) = result["changes"]
    assert change["rule"] == "READER_FIELD_MISSING_DEFAULT_VALUE"
    assert change["breaks"] == ["BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]
    assert result["compatible_with"] == ["FORWARD", "FORWARD_TRANSITIVE", "NONE"]
    code, _, err = run(*p, "diff", "orders-value", "1", "nowhere.avsc")
    assert code == 2 and "neither a version" in err


def test_delete(proj: Path, run: Run) -> None:
    files = proj.parent
    p = ["-p", str(proj), "schema"]
    run(*p, "register", "orders-value", str(files / "v1.avsc"))
    run(*p, "register", "orders-value", str(files / "v2.avsc"))
    code, out, _ = run(*p, "delete", "orders-value", "--version", "2")
    assert code == 0 and "soft-deleted" in out
    code, _, err = run(*p, "delete", "orders-value", "--permanent", "--yes")
    assert code == 1 and "soft-delete it first" in err
    assert run(*p, "delete", "orders-value")[0] == 0
    code, out, _ = run(*p, "list", "--deleted", "--json")
    assert json.loads(out)[0]["deleted"] is True
    code, out, _ = run(*p, "delete", "orders-value", "--permanent", "--yes")
    assert code == 0 and "permanently deleted" in out
    code, out, _ = run(*p, "list", "--deleted", "--json")
    assert json.loads(out) == []


def test_compat(proj: Path, run: Run) -> None:
    p = ["-p", str(proj), "schema", "compat"]
    code, out, _ = run(*p, "orders-value", "--json")
    assert json.loads(out)["compatibility"] == "BACKWARD"
    assert json.loads(out)["origin"] == "from the global config"
    code, out, _ = run(*p, "orders-value", "--level", "full_transitive")
    assert code == 0 and "FULL_TRANSITIVE" in out and "set on the subject" in out
    code, out, _ = run(*p, "--level", "NONE", "--json")
    assert json.loads(out)["compatibility"] == "NONE"
    code, _, err = run(*p, "orders-value", "--level", "SIDEWAYS")
    assert code == 2 and "expected one of BACKWARD" in err
    code, out, _ = run(*p, "orders-value", "--json-policy", "lenient", "--json")
    assert json.loads(out)["jsonCompatibilityPolicy"] == "LENIENT"


def test_serve_refuses_exposure_without_token(
    proj: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRUNKLINE_API_TOKEN", raising=False)
    code, _, err = run("-p", str(proj), "registry", "serve", "--host", "0.0.0.0")
    assert code == 2 and "TRUNKLINE_API_TOKEN" in err
