"""The PostgreSQL connectors through the shared conformance suites (a real server)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from trunkline.testing.connectors import SinkConformance, SourceConformance

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres


def _row_json(value: bytes) -> bytes:
    return json.dumps(json.loads(value)["after"], sort_keys=True).encode()


class TestPostgresCdcSource(SourceConformance):
    source_type = "postgres_cdc"
    poll_timeout = 0.3

    def comparable(self, value: bytes) -> bytes:
        # Events carry their LSN, transaction and times; the input says only the row.
        return _row_json(value)

    @pytest.fixture
    def settings(self, cdc_db: str) -> dict[str, Any]:
        with psycopg.connect(cdc_db, autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL)")
        return {
            "dsn": cdc_db,
            "tables": ["public.items"],
            "snapshot_chunk_rows": 64,
            "heartbeat_interval": "0s",
        }

    @pytest.fixture
    def add_input(self, settings: dict[str, Any]) -> Callable[[int], list[bytes]]:
        counter = itertools.count()

        def add(n: int) -> list[bytes]:
            first = next(counter) * 100_000
            rows = [{"id": first + i, "name": f"row {first + i}"} for i in range(n)]
            with (
                psycopg.connect(settings["dsn"], autocommit=True) as conn,
                conn.cursor() as cursor,
            ):
                cursor.executemany("INSERT INTO items (id, name) VALUES (%(id)s, %(name)s)", rows)
            return [json.dumps(r, sort_keys=True).encode() for r in rows]

        return add

    @pytest.fixture
    def add_bad_input(self) -> Callable[[], tuple[list[bytes], int]]:
        pytest.skip("a database enforces its types: it has no malformed rows to read")


class TestPostgresSink(SinkConformance):
    sink_type = "postgres"

    @pytest.fixture
    def settings(self, postgres_db: str) -> dict[str, Any]:
        return {"topics": ["t"], "dsn": postgres_db, "db_schema": "sink"}

    @pytest.fixture
    def upsert_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "mode": "upsert", "key": ["id"]}

    @pytest.fixture
    def read_target(self, settings: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
        def read() -> list[dict[str, Any]]:
            from psycopg.rows import dict_row

            with psycopg.connect(settings["dsn"], row_factory=dict_row) as conn:
                return list(conn.execute("SELECT * FROM sink.t").fetchall())

        return read
