"""The http source in ``trunkline run``: bad requests get the right status and a precise
message and write nothing; contracts apply; transforms run end to end (source and sink)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from trunkline.errors import HubError
from trunkline.hub.embedded import EmbeddedHub
from trunkline.runtime import read_dead_letters

sys.path.insert(0, str(Path(__file__).parent))
from _runtime_helpers import group_lag, run_log, start_run, stop, wait_for, write_project

CONTRACT = Path(__file__).parents[1] / "fixtures" / "contracts" / "orders.yaml"
TOKEN = "s3cret-token"
SALT = "pepper"

PROJECT = """\
topics:
  orders: {{partitions: 1, contract: contracts/orders.yaml, on_violation: reject}}
  orders_dl: {{partitions: 1, contract: contracts/orders.yaml, on_violation: dead_letter}}
  events: {{partitions: 2}}
sources:
  intake:
    type: http
    port: {port}
    topics: [orders, orders_dl, events]
    key: order_id
    keys: {{events: id}}
    token: "${{INTAKE_TOKEN}}"
    max_body: 4KiB
    transforms:
      - filter: "coalesce(status, '') <> 'test'"
      - route: {{field: region, topics: {{eu: events.eu}}}}
sinks:
  warehouse:
    type: duckdb
    path: out.duckdb
    topics: [orders]
    linger: 100ms
    transforms:
      - hash: {{columns: pii, salt: "${{PII_SALT}}"}}
      - select: [order_id, email, amount]
      - rename: {{amount: total}}
      - cast: {{total: "decimal(10,2)"}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _caught_up(root: Path, group: str) -> bool:
    try:
        return group_lag(root, group) == 0
    except HubError:
        return False  # the group has committed nothing yet


def _ends(root: Path) -> dict[str, int]:
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        return {t: sum(hub.end_offsets(t).values()) for t in hub.list_topics()}


def _values(root: Path, topic: str) -> list[bytes]:
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        found = []
        for partition in hub.end_offsets(topic):
            found += [m.value for m in hub.fetch(topic, partition, 0).messages() if m.value]
        return found


@pytest.mark.slow
def test_http_source_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    root = write_project(tmp_path / "p", PROJECT.format(port=port))
    (root / "contracts").mkdir()
    shutil.copy(CONTRACT, root / "contracts" / "orders.yaml")
    monkeypatch.setenv("INTAKE_TOKEN", TOKEN)
    monkeypatch.setenv("PII_SALT", SALT)
    proc = start_run(root)
    url = f"http://127.0.0.1:{port}/topics"
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    client = httpx.Client(timeout=30)

    def post(topic: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return client.post(
            f"{url}/{topic}", content=body, headers=auth if headers is None else headers
        )

    def up() -> bool:
        try:
            return post("events", b"[]").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 60, "the http source to listen", root)
        before = _ends(root)
        bad: list[tuple[str, bytes, dict[str, str] | None, int, str]] = [
            ("events", b'{"id": 1}\n{"id": 2, oops}\n', None, 400, "line 2, column 11: invalid"),
            ("events", b"[1, 2]", None, 400, "element 1: expected a JSON object, found a number"),
            ("events", b'[{"id": 1}, {"name": "x"}]', None, 400, "element 2: no value for 'id'"),
            ("events", b'[{"id": 1}] trailing', None, 400, "after the array"),
            ("events", b"", None, 400, "the body is empty"),
            ("events", b'[{"id": 1, "pad": "' + b"x" * 5000 + b'"}]', None, 413, "limit"),
            ("events", b'[{"id": 1}]', {"Authorization": "Bearer wrong"}, 401, "unauthorized"),
            ("events", b'[{"id": 1}]', {}, 401, "unauthorized"),
            ("nope", b'[{"id": 1}]', None, 404, "orders, orders_dl, events"),
            ("events", b"<xml/>", {**auth, "Content-Type": "text/xml"}, 415, "text/xml"),
            # The contract (policy reject): the whole batch is refused.
            ("orders", b'[{"order_id": "o-1", "amount": 5}, {"order_id": "o-2", "amount": -2}]',
             None, 400, "amount.range"),
        ]  # fmt: skip
        for topic, body, headers, status, text in bad:
            response = post(topic, body, headers)
            assert response.status_code == status, (topic, body[:40], response.text)
            assert text in response.json()["message"], response.text
        assert _ends(root) == before, "a refused request writes nothing"
        # Bad requests never crashed the server: good ones work.
        orders = (
            b'[{"order_id": "o-1", "email": "ann@example.com", "amount": 5, "status": "paid"},'
            b' {"order_id": "o-2", "email": "bob@example.com", "amount": 7.25},'
            b' {"order_id": "o-3", "amount": 1, "status": "test"}]'
        )
        response = post("orders", orders)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "topic": "orders",
            "records": 2,
            "dead_lettered": 0,
            "filtered": 1,
        }
        mixed = b'{"order_id": "o-4", "amount": 1}\n{"order_id": "o-5", "amount": -1}\n'
        response = post("orders_dl", mixed)
        assert response.status_code == 200, response.text
        assert response.json()["records"] == 1 and response.json()["dead_lettered"] == 1
        events = b'[{"id": 1, "region": "eu"}, {"id": 2, "region": "us"}, {"id": 3}]'
        assert post("events", events).json()["records"] == 3
        wait_for(lambda: _caught_up(root, "sink-warehouse"), 60, "the warehouse", root)
    finally:
        client.close()
        assert stop(proc) == 0, run_log(root)[-3000:]
    assert _values(root, "events.eu") == [b'{"id":1,"region":"eu"}']
    # Decoded and encoded again as one batch: a field some records lack reads as null.
    assert sorted(_values(root, "events")) == [
        b'{"id":2,"region":"us"}',
        b'{"id":3,"region":null}',
    ]
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        letters = list(read_dead_letters(hub, "orders_dl.dlq"))
    assert [e.value for e in letters] == [b'{"order_id":"o-5","amount":-1}']
    with duckdb.connect(str(root / "out.duckdb"), read_only=True) as con:
        rows: list[Any] = con.sql("SELECT order_id, email, total FROM orders ORDER BY 1").fetchall()

    def hashed(email: str) -> str:
        return hashlib.sha256((SALT + email).encode()).hexdigest()

    assert [(o, e, float(t)) for o, e, t in rows] == [
        ("o-1", hashed("ann@example.com"), 5.0),
        ("o-2", hashed("bob@example.com"), 7.25),
    ]
    assert "ann@example.com" not in run_log(root)
