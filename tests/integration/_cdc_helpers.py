"""Helpers for the Postgres CDC tests: a pipeline project, a writer, and the comparisons."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import psycopg

PIPELINE = """\
hub: {{path: .trunkline/hub, ack: written}}
sources:
  shop:
    type: postgres_cdc
    dsn: ${{SHOP_DSN}}
    tables: [{tables}]
    snapshot_chunk_rows: {chunk}
    checkpoint_interval: 200ms
    heartbeat_interval: 1s
    status_interval: 1s
    retry_backoff: 200ms
    retry_max_backoff: 2s
sinks:
  duck:
    type: duckdb
    path: warehouse.duckdb
    topics: [{topics}]
    mode: upsert
    key: [id]
    linger: 100ms
    retry_backoff: 200ms
  replica:
    type: postgres
    dsn: ${{SHOP_DSN}}
    db_schema: replica
    topics: [{topics}]
    mode: upsert
    key: [id]
    linger: 100ms
    retry_backoff: 200ms
"""


def pipeline(tables: list[str], chunk: int = 1000) -> str:
    topics = ", ".join(f"shop.{t}" for t in tables)
    return PIPELINE.format(tables=", ".join(tables), topics=topics, chunk=chunk)


def source_rows(
    dsn: str, table: str, columns: str = "id, seq, payload"
) -> dict[int, tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {columns} FROM {table}").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def duck_rows(
    path: Path, table: str, columns: str = "id, seq, payload"
) -> dict[int, tuple[Any, ...]] | None:
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            # Through Arrow: DuckDB's own conversion of time zones needs pytz.
            found = con.sql(f"SELECT {columns} FROM {table}").to_arrow_table()
            rows = [tuple(r.values()) for r in found.to_pylist()]
    except duckdb.Error as exc:
        print(f"cannot read {table} of {path}: {exc}")
        return None
    return {r[0]: tuple(r[1:]) for r in rows}


def replica_rows(
    dsn: str, table: str, columns: str = "id, seq, payload"
) -> dict[int, tuple[Any, ...]] | None:
    try:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(f"SELECT {columns} FROM replica.{table}").fetchall()
    except psycopg.Error:
        return None
    return {r[0]: tuple(r[1:]) for r in rows}


class Writer(threading.Thread):
    """Inserts, updates and deletes rows of ``table (id, seq, payload)`` until stopped."""

    def __init__(self, dsn: str, table: str, keys: int, seed: int = 7) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.table = table
        self.keys = keys
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.seq = 0
        self.errors: list[str] = []

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                self._transaction(conn)
            except psycopg.Error as exc:
                # The server restarting (a test does that): reconnect and go on.
                self.errors.append(str(exc).splitlines()[0] if str(exc) else repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
            time.sleep(self.rng.uniform(0.005, 0.03))
        if conn is not None:
            conn.close()

    def _transaction(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            for _ in range(self.rng.randint(1, 8)):
                self.seq += 1
                key = self.rng.randrange(self.keys)
                action = self.rng.random()
                if action < 0.15:
                    conn.execute(f"DELETE FROM {self.table} WHERE id = %s", [key])
                else:
                    conn.execute(
                        f"INSERT INTO {self.table} (id, seq, payload) VALUES (%s, %s, %s) "
                        "ON CONFLICT (id) DO UPDATE "
                        "SET seq = EXCLUDED.seq, payload = EXCLUDED.payload",
                        [key, self.seq, f"p{self.seq}"],
                    )

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


def wait_equal(
    expected: Callable[[], dict[int, tuple[Any, ...]]],
    readers: dict[str, Callable[[], dict[int, tuple[Any, ...]] | None]],
    timeout: float,
    log: Callable[[], str] = lambda: "",
) -> None:
    """Until every reader returns what ``expected`` returns (read once, at the start)."""
    want = expected()
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while True:
        found = {name: read() for name, read in readers.items()}
        if all(rows == want for rows in found.values()):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    report = {}
    for name, rows in found.items():
        if rows is None:
            report[name] = "unreadable"
            continue
        report[name] = {
            "missing": sorted(set(want) - set(rows))[:10],
            "extra": sorted(set(rows) - set(want))[:10],
            "different": sorted(k for k in set(want) & set(rows) if want[k] != rows[k])[:10],
        }
        for k in report[name]["different"][:1]:  # type: ignore[index]
            report[name]["example"] = {"source": repr(want[k]), "sink": repr(rows[k])}  # type: ignore[index]
    raise AssertionError(f"sinks differ from the source: {json.dumps(report)}\n{log()[-3000:]}")
