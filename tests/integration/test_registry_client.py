"""confluent-kafka's own SchemaRegistryClient and serdes against trunkline's registry.

The HTTP server runs with uvicorn on a free 127.0.0.1 port; values go through an embedded
hub topic in Confluent's wire format (magic byte 0, 4-byte schema id) and back.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from trunkline.api import create_app
from trunkline.hub import Record
from trunkline.hub.embedded import EmbeddedHub
from trunkline.meta import MetaStore
from trunkline.schemas import SchemaRegistry

sr = pytest.importorskip("confluent_kafka.schema_registry")
avro_serde = pytest.importorskip("confluent_kafka.schema_registry.avro")
json_serde = pytest.importorskip("confluent_kafka.schema_registry.json_schema")
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

TOKEN = "test-token"

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "double"}],
}
ORDER_V2 = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "currency", "type": "string", "default": "EUR"}],
}
EVENT = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Event",
    "type": "object",
    "properties": {"id": {"type": "integer"}, "kind": {"type": "string"}},
    "required": ["id"],
    "additionalProperties": False,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def registry_url(tmp_path: Path) -> Iterator[str]:
    with MetaStore.open(f"sqlite:///{tmp_path}/meta.db") as store:
        app = create_app(SchemaRegistry(store), token=TOKEN)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the registry server did not start"
            assert thread.is_alive(), "the registry server stopped while starting"
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=20)


@pytest.fixture
def client(registry_url: str) -> Iterator[Any]:
    made = sr.SchemaRegistryClient(
        {"url": registry_url, "basic.auth.user.info": f"trunkline:{TOKEN}"}
    )
    try:
        yield made
    finally:
        made.__exit__()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with EmbeddedHub(tmp_path / "hub") as opened:
        yield opened


def _round_trip(hub: EmbeddedHub, topic: str, values: list[bytes]) -> list[bytes]:
    hub.create_topic(topic)
    hub.produce(topic, [Record(value) for value in values], partition=0)
    batch = hub.fetch(topic, 0, 0)
    return [message.value for message in batch.messages() if message.value is not None]


def test_avro_end_to_end_through_a_hub_topic(client: Any, hub: EmbeddedHub) -> None:
    ctx = SerializationContext("orders", MessageField.VALUE)
    serializer = avro_serde.AvroSerializer(client, json.dumps(ORDER_V1))
    orders = [{"id": i, "amount": i * 1.5} for i in range(5)]
    framed = [serializer(order, ctx) for order in orders]
    registered = client.get_latest_version("orders-value")
    assert registered.version == 1
    for value in framed:
        assert value[0] == 0
        assert int.from_bytes(value[1:5], "big") == registered.schema_id

    fetched = _round_trip(hub, "orders", framed)
    deserializer = avro_serde.AvroDeserializer(client)
    assert [deserializer(value, ctx) for value in fetched] == orders

    # Evolve: v2 adds a field with a default; v1 data read with v2 gets the default.
    v2_id = client.register_schema("orders-value", sr.Schema(json.dumps(ORDER_V2), "AVRO"))
    assert v2_id != registered.schema_id
    reader = avro_serde.AvroDeserializer(client, json.dumps(ORDER_V2))
    assert reader(fetched[0], ctx) == {**orders[0], "currency": "EUR"}
    assert client.get_versions("orders-value") == [1, 2]


def test_json_schema_end_to_end_through_a_hub_topic(client: Any, hub: EmbeddedHub) -> None:
    ctx = SerializationContext("events", MessageField.VALUE)
    schema = sr.Schema(json.dumps(EVENT), "JSON")
    serializer = json_serde.JSONSerializer(schema, client)
    events = [{"id": 1, "kind": "created"}, {"id": 2}]
    framed = [serializer(event, ctx) for event in events]
    registered = client.get_latest_version("events-value")
    assert registered.schema.schema_type == "JSON"
    assert int.from_bytes(framed[0][1:5], "big") == registered.schema_id
    fetched = _round_trip(hub, "events", framed)
    deserializer = json_serde.JSONDeserializer(None, schema_registry_client=client)
    assert [deserializer(value, ctx) for value in fetched] == events


def test_client_admin_calls(client: Any) -> None:
    v1 = sr.Schema(json.dumps(ORDER_V1), "AVRO")
    first = client.register_schema("orders-value", v1)
    assert client.get_subjects() == ["orders-value"]
    assert client.lookup_schema("orders-value", v1).version == 1
    assert json.loads(client.get_schema(first).schema_str) == ORDER_V1
    assert client.get_compatibility() == "BACKWARD"
    broken = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "x", "type": "int"}]}
    candidate = sr.Schema(json.dumps(broken), "AVRO")
    assert client.test_compatibility("orders-value", candidate) is False
    with pytest.raises(sr.SchemaRegistryError) as info:
        client.register_schema("orders-value", candidate)
    assert info.value.http_status_code == 409
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in info.value.error_message
    client.set_compatibility("orders-value", "NONE")
    assert client.get_compatibility("orders-value") == "NONE"
    assert client.register_schema("orders-value", candidate) > first
    with pytest.raises(sr.SchemaRegistryError) as missing:
        client.get_version("orders-value", 9)
    assert (missing.value.http_status_code, missing.value.error_code) == (404, 40402)
    assert client.delete_version("orders-value", 2) == 2
    assert client.delete_subject("orders-value") == [1]
    assert client.delete_subject("orders-value", permanent=True) == [1, 2]
    assert client.get_subjects() == []


def test_wrong_token_is_refused(registry_url: str) -> None:
    wrong = sr.SchemaRegistryClient({"url": registry_url, "basic.auth.user.info": "u:nope"})
    with pytest.raises(sr.SchemaRegistryError) as info:
        wrong.get_subjects()
    assert info.value.http_status_code == 401


def test_cli_serves_the_registry(tmp_path: Path) -> None:
    import subprocess
    import sys

    import httpx

    from trunkline.cli import main

    assert main(["init", str(tmp_path / "p")]) == 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "trunkline", "-p", str(tmp_path / "p"), "registry", "serve",
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/subjects", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "trunkline registry serve did not answer"
                time.sleep(0.1)
        assert response.status_code == 200 and response.json() == []
    finally:
        server.terminate()
        server.wait(timeout=20)
