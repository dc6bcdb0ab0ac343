"""The registry's HTTP API: Confluent's paths, bodies, status and error codes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from trunkline.api import check_exposure, create_app
from trunkline.errors import ConfigError
from trunkline.meta import MetaStore
from trunkline.schemas import SchemaRegistry

CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
V1 = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string", "default": ""}]}
BAD = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string"}]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetaStore]:
    with MetaStore.open(f"sqlite:///{tmp_path}/meta.db") as opened:
        yield opened


@pytest.fixture
def client(store: MetaStore) -> TestClient:
    return TestClient(create_app(SchemaRegistry(store), max_body_bytes=4096))


def body(schema: Any, **extra: Any) -> dict[str, Any]:
    return {"schema": json.dumps(schema), **extra}


def error(response: Any, status: int, code: int, text: str = "") -> None:
    assert response.status_code == status, response.text
    data = response.json()
    assert data["error_code"] == code, data
    assert text in data["message"], data


def snapshot(client: TestClient) -> Any:
    subjects = client.get("/subjects?deleted=true").json()
    return {s: client.get(f"/subjects/{s}/versions?deleted=true").json() for s in subjects}


def test_register_and_read_back(client: TestClient) -> None:
    response = client.post("/subjects/orders-value/versions", json=body(V1), headers=CT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
    assert response.json() == {"id": 1}
    assert client.post("/subjects/orders-value/versions", json=body(V2)).json() == {"id": 2}
    assert client.post("/subjects/orders-value/versions", json=body(V1)).json() == {"id": 1}
    assert client.get("/subjects").json() == ["orders-value"]
    assert client.get("/subjects/orders-value/versions").json() == [1, 2]
    latest = client.get("/subjects/orders-value/versions/latest").json()
    assert latest == {"subject": "orders-value", "version": 2, "id": 2, "schema": json.dumps(V2)}
    assert client.get("/subjects/orders-value/versions/-1").json() == latest
    assert json.loads(client.get("/subjects/orders-value/versions/1/schema").text) == V1
    assert client.get("/schemas/ids/2").json() == {"schema": json.dumps(V2)}
    assert json.loads(client.get("/schemas/ids/2/schema").text) == V2
    assert client.get("/schemas/ids/1/versions").json() == [
        {"subject": "orders-value", "version": 1}
    ]
    assert client.get("/schemas/ids/1/subjects").json() == ["orders-value"]
    assert client.get("/schemas/types").json() == ["AVRO", "JSON"]
    found = client.post("/subjects/orders-value", json=body(V1)).json()
    assert (found["version"], found["id"]) == (1, 1)
    plain = client.get("/subjects", headers={"Accept": "application/json"})
    assert plain.headers["content-type"] == "application/json"


def test_json_schema_with_references(client: TestClient) -> None:
    address = {"type": "object", "properties": {"zip": {"type": "string"}}}
    client.post("/subjects/address/versions", json=body(address, schemaType="JSON"))
    order = {"type": "object", "properties": {"to": {"$ref": "address.json"}}}
    refs = [{"name": "address.json", "subject": "address", "version": 1}]
    response = client.post(
        "/subjects/orders-value/versions", json=body(order, schemaType="JSON", references=refs)
    )
    assert response.json() == {"id": 2}
    got = client.get("/subjects/orders-value/versions/1").json()
    assert got["schemaType"] == "JSON" and got["references"] == refs
    assert client.get("/subjects/address/versions/1/referencedby").json() == [2]
    error(client.delete("/subjects/address/versions/1"), 422, 42206, "referenced by")
    error(client.delete("/subjects/address"), 422, 42206)


def test_compatibility_endpoints(client: TestClient) -> None:
    url = "/compatibility/subjects/orders-value/versions"
    assert client.post(f"{url}/latest", json=body(BAD)).json() == {"is_compatible": True}
    client.post("/subjects/orders-value/versions", json=body(V1))
    verbose = client.post(f"{url}/latest?verbose=true", json=body(BAD)).json()
    assert verbose["is_compatible"] is False
    assert verbose["messages"][0].startswith("READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1")
    assert client.post(f"{url}?verbose=True", json=body(V2)).json() == {
        "is_compatible": True,
        "messages": [],
    }
    assert client.post(f"{url}/1", json=body(BAD)).json() == {"is_compatible": False}
    error(client.post(f"{url}/9", json=body(V2)), 404, 40402)
    error(client.post(f"{url}/x", json=body(V2)), 422, 42202)


def test_incompatible_registration_is_409_with_messages(client: TestClient) -> None:
    client.post("/subjects/orders-value/versions", json=body(V1))
    response = client.post("/subjects/orders-value/versions", json=body(BAD))
    error(response, 409, 409, "READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1")
    assert client.get("/subjects/orders-value/versions").json() == [1]


def test_config_and_mode(client: TestClient) -> None:
    assert client.get("/config").json() == {
        "compatibilityLevel": "BACKWARD",
        "jsonCompatibilityPolicy": "STRICT",
    }
    assert client.put("/config", json={"compatibility": "FULL"}).json()["compatibility"] == "FULL"
    error(client.get("/config/orders-value"), 404, 40408)
    fallback = client.get("/config/orders-value?defaultToGlobal=true").json()
    assert fallback["compatibilityLevel"] == "FULL"
    put = client.put("/config/orders-value", json={"compatibility": "NONE"}).json()
    assert put == {"compatibility": "NONE"}
    assert client.get("/config/orders-value").json() == {"compatibilityLevel": "NONE"}
    lenient = client.put("/config/orders-value", json={"jsonCompatibilityPolicy": "LENIENT"})
    assert lenient.json() == {"compatibility": "NONE", "jsonCompatibilityPolicy": "LENIENT"}
    assert client.delete("/config/orders-value").json()["compatibilityLevel"] == "NONE"
    error(client.delete("/config/orders-value"), 404, 40408)
    error(client.put("/config", json={"compatibility": "SIDEWAYS"}), 422, 42203, "SIDEWAYS")
    error(client.put("/config/x", json={"compatibility": 5}), 422, 42203)
    assert client.get("/mode").json() == {"mode": "READWRITE"}
    assert client.put("/mode", json={"mode": "READWRITE"}).json() == {"mode": "READWRITE"}
    error(client.put("/mode", json={"mode": "IMPORT"}), 422, 42204, "READWRITE only")


def test_deletes_and_their_error_codes(client: TestClient) -> None:
    for schema in (V1, V2):
        client.post("/subjects/orders-value/versions", json=body(schema))
    error(client.delete("/subjects/orders-value?permanent=true"), 404, 40405)
    error(client.delete("/subjects/orders-value/versions/2?permanent=true"), 404, 40407)
    assert client.delete("/subjects/orders-value/versions/2").json() == 2
    error(client.delete("/subjects/orders-value/versions/2"), 404, 40406)
    error(client.get("/subjects/orders-value/versions/2"), 404, 40402, "soft-deleted")
    assert client.get("/subjects/orders-value/versions/2?deleted=true").json()["id"] == 2
    assert client.post("/subjects/orders-value/versions", json=body(V2)).json() == {"id": 2}
    assert client.get("/subjects/orders-value/versions").json() == [1, 3]
    assert client.delete("/subjects/orders-value").json() == [1, 3]
    error(client.delete("/subjects/orders-value"), 404, 40404)
    assert client.get("/subjects").json() == []
    assert client.get("/subjects?deleted=true").json() == ["orders-value"]
    assert client.delete("/subjects/orders-value?permanent=true").json() == [1, 2, 3]
    error(client.get("/schemas/ids/1"), 404, 40403)
    assert client.post("/subjects/orders-value/versions", json=body(BAD)).json() == {"id": 3}
    assert client.get("/subjects/orders-value/versions").json() == [1]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code", "text"),
    [
        ("get", "/subjects/nope/versions", None, 404, 40401, "'nope' not found"),
        ("get", "/subjects/orders-value/versions/9", None, 404, 40402, "no version 9"),
        ("get", "/schemas/ids/99", None, 404, 40403, "99"),
        ("get", "/schemas/ids/abc", None, 404, 40403, "abc"),
        ("post", "/subjects/orders-value", body(BAD), 404, 40403, "not found"),
        ("get", "/subjects/orders-value/versions/0", None, 422, 42202, "invalid version"),
        ("get", "/subjects/orders-value/versions/latest2", None, 422, 42202, "'latest2'"),
        ("post", "/subjects/orders-value/versions", {"schema": "{"}, 422, 42201, "not JSON"),
        (
            "post",
            "/subjects/orders-value/versions",
            {"schema": '{"type": "nope"}'},
            422,
            42201,
            "unknown type",
        ),
        (
            "post",
            "/subjects/orders-value/versions",
            body({"type": "strin"}, schemaType="JSON"),
            422,
            42201,
            "#/type",
        ),
        (
            "post",
            "/subjects/orders-value/versions",
            body(V1, schemaType="PROTOBUF"),
            422,
            42201,
            "PROTOBUF",
        ),
        (
            "post",
            "/subjects/orders-value/versions",
            {"schemaType": "AVRO"},
            422,
            42201,
            "no schema",
        ),
        (
            "post",
            "/subjects/orders-value/versions",
            body(V1, metadata={"a": 1}),
            422,
            42201,
            "'metadata'",
        ),
        (
            "post",
            "/subjects/orders-value/versions",
            body(V1, references=[{"name": "x", "subject": "y", "version": 1}]),
            422,
            42201,
            "not registered",
        ),
        ("post", "/subjects/orders-value/versions", [1, 2], 422, 422, "JSON object"),
        ("put", "/config", {"compatibility": "SIDEWAYS"}, 422, 42203, "SIDEWAYS"),
        ("get", "/nothing/here", None, 404, 404, "Not Found"),
        ("patch", "/subjects", None, 405, 405, "Method Not Allowed"),
    ],
)
def test_errors_leave_nothing_half_registered(
    client: TestClient,
    method: str,
    path: str,
    payload: Any,
    status: int,
    code: int,
    text: str,
) -> None:
    client.post("/subjects/orders-value/versions", json=body(V1))
    before = snapshot(client)
    kwargs = {} if payload is None else {"json": payload}
    error(client.request(method, path, **kwargs), status, code, text)
    assert snapshot(client) == before
    assert client.post("/subjects/next-value/versions", json=body(V2)).json() == {"id": 2}


def test_bad_bodies(client: TestClient) -> None:
    url = "/subjects/orders-value/versions"
    error(client.post(url, content=b'{"schema": ', headers=CT), 422, 422, "invalid JSON")
    error(client.post(url, content=b"", headers=CT), 422, 422, "empty")
    error(client.post(url, content=b"\xff\xfe", headers=CT), 422, 422)
    big = json.dumps({"schema": json.dumps({**V1, "doc": "x" * 5000})}).encode()
    error(client.post(url, content=big, headers=CT), 413, 413, "4096-byte limit")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield big[:3000]
        yield big[3000:]

    error(client.post(url, content=chunks(), headers=CT), 413, 413)
    error(
        client.post(url, content=json.dumps(body(V1)), headers={"Content-Type": "text/plain"}),
        415,
        415,
        "unsupported content type",
    )
    assert client.get("/subjects?deleted=true").json() == []


def test_store_failure_is_50001(store: MetaStore, client: TestClient) -> None:
    store.close()
    error(client.get("/subjects"), 500, 50001, "closed")


def test_token_is_required_when_set(store: MetaStore) -> None:
    client = TestClient(create_app(SchemaRegistry(store), token="s3cret"))
    error(client.get("/subjects"), 401, 401, "unauthorized")
    assert client.get("/subjects", headers={"Authorization": "Bearer s3cret"}).json() == []
    basic = base64.b64encode(b"any-user:s3cret").decode()
    assert client.get("/subjects", headers={"Authorization": f"Basic {basic}"}).json() == []
    wrong = base64.b64encode(b"any-user:guess").decode()
    error(client.get("/subjects", headers={"Authorization": f"Basic {wrong}"}), 401, 401)
    error(client.get("/subjects", headers={"Authorization": "Bearer guess"}), 401, 401)


def test_exposed_server_needs_a_token() -> None:
    check_exposure("127.0.0.1", None)
    check_exposure("localhost", None)
    check_exposure("::1", None)
    check_exposure("0.0.0.0", "token")
    for host in ("0.0.0.0", "192.168.1.5", "registry.example.com"):
        with pytest.raises(ConfigError, match="TRUNKLINE_API_TOKEN"):
            check_exposure(host, None)
