"""The ``postgres`` sink: Debezium changes applied as the DuckDB sink applies them, table
evolution, values that do not fit, and exactly-once offsets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from trunkline.connectors import SINKS
from trunkline.errors import IncompatibleChange
from trunkline.hub import TopicPartition
from trunkline.testing.connectors import RecordingDeadLetters, fetched, make_context

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

PLACEHOLDER = "__debezium_unavailable_value"


def _event(op: str, before: Any = None, after: Any = None) -> bytes:
    source = {"lsn": 1, "txId": 1, "ts_ms": 0, "schema": "public", "table": "t"}
    return json.dumps(
        {"before": before, "after": after, "source": source, "op": op, "ts_ms": 0}
    ).encode()


def _key(i: int | None) -> bytes | None:
    return None if i is None else json.dumps({"id": i}).encode()


def _sink(kind: str, settings: dict[str, Any]) -> Any:
    sink_class = SINKS.get(kind)
    return sink_class("snk", sink_class.Config.model_validate(settings))


def _apply(
    sink: Any, root: Path, batches: list[tuple[list[bytes | None], list[bytes | None]]]
) -> Any:
    context = make_context(root, "snk")
    sink.open(context)
    sink.assign([TopicPartition("t", 0)])
    offset = 0
    for values, keys in batches:
        sink.write_batch("t", fetched("t", 0, offset, values, keys))
        offset += len(values)
    offsets = sink.snapshot()
    sink.close()
    return context, offsets


def _rows_pg(dsn: str, table: str = "t") -> dict[int, tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT id, seq, payload FROM sink.{table} ORDER BY id").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _rows_duck(path: Path) -> dict[int, tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.sql("SELECT id, seq, payload FROM t ORDER BY id").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_debezium_changes_land_as_in_the_duckdb_sink(tmp_path: Path, postgres_db: str) -> None:
    def row(i: int, seq: int, payload: str | None = "x") -> dict[str, Any]:
        return {"id": i, "seq": seq, "payload": payload}

    first = [(_event("r", after=row(i, 0, f"big-{i}")), _key(i)) for i in range(1, 8)]
    second = [
        # The TOASTed payload did not change: both sinks keep what they have.
        (_event("u", after=row(1, 1, PLACEHOLDER)), _key(1)),
        # Changed, then unchanged again in the same batch: the last real value wins.
        (_event("u", after=row(2, 1, "new-2")), _key(2)),
        (_event("u", after=row(2, 2, PLACEHOLDER)), _key(2)),
        # Deleted, then created with a placeholder: no old value to keep any more.
        (_event("d", before={"id": 3, "seq": None, "payload": None}), _key(3)),
        (None, _key(3)),
        (_event("c", after=row(3, 3, PLACEHOLDER)), _key(3)),
        # A key change: delete of the old key, create of the new one.
        (_event("d", before={"id": 4, "seq": None, "payload": None}), _key(4)),
        (_event("c", after=row(40, 4, "moved")), _key(40)),
        (None, _key(5)),  # a tombstone alone deletes
        (_event("c", after=row(8, 8, "late")), _key(8)),
    ]
    third = [
        (_event("t"), None),  # truncate: only what follows stays
        (_event("c", after=row(9, 9, "after truncate")), _key(9)),
    ]
    batches = [([v for v, _ in part], [k for _, k in part]) for part in (first, second)]
    settings = {"topics": ["t"], "mode": "upsert", "key": ["id"]}
    pg = {**settings, "dsn": postgres_db, "db_schema": "sink"}
    duck = {**settings, "path": str(tmp_path / "w.duckdb")}
    _, offsets = _apply(_sink("postgres", pg), tmp_path, batches)
    _apply(_sink("duckdb", duck), tmp_path, batches)
    assert offsets == {TopicPartition("t", 0): 17}
    expected = {
        1: (1, "big-1"),
        2: (2, "new-2"),
        3: (3, None),
        6: (0, "big-6"),
        7: (0, "big-7"),
        8: (8, "late"),
        40: (4, "moved"),
    }
    assert _rows_pg(postgres_db) == expected
    assert _rows_duck(tmp_path / "w.duckdb") == expected
    # A truncate empties the table; what follows it stays.
    pg_sink = _sink("postgres", pg)
    context = make_context(tmp_path, "snk")
    pg_sink.open(context)
    resume = pg_sink.assign([TopicPartition("t", 0)])
    assert resume == {TopicPartition("t", 0): 17}, "offsets are kept with the rows"
    pg_sink.write_batch("t", fetched("t", 0, 17, [v for v, _ in third], [k for _, k in third]))
    pg_sink.snapshot()
    pg_sink.close()
    assert _rows_pg(postgres_db) == {9: (9, "after truncate")}


def test_tables_evolve_and_values_that_do_not_fit_are_dead_letters(
    tmp_path: Path, postgres_db: str
) -> None:
    settings = {"topics": ["t"], "dsn": postgres_db, "db_schema": "sink"}
    batches = [
        ([json.dumps({"id": 1, "seq": 1, "payload": "a"}).encode()], None),
        # A new field becomes a column; an integer column that gets decimals widens.
        ([json.dumps({"id": 2, "seq": 2.5, "payload": "b", "extra": [1, 2]}).encode()], None),
    ]
    _apply(_sink("postgres", settings), tmp_path, [(v, [None] * len(v)) for v, _ in batches])
    with psycopg.connect(postgres_db) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'sink' AND table_name = 't'"
            ).fetchall()
        )
        rows = conn.execute("SELECT id, seq, extra FROM sink.t ORDER BY id").fetchall()
    assert types["seq"] == "double precision"
    assert types["extra"] == "ARRAY"
    assert rows == [(1, 1.0, None), (2, 2.5, [1, 2])]
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE sink.typed (id bigint PRIMARY KEY, at timestamptz)")
    typed = {**settings, "table": "typed", "mode": "upsert", "key": ["id"]}
    values: list[bytes | None] = [
        json.dumps({"id": 1, "at": "2024-01-01T00:00:00Z"}).encode(),
        json.dumps({"id": 2, "at": "not a time"}).encode(),
    ]
    context, _ = _apply(_sink("postgres", typed), tmp_path, [(values, [None, None])])
    dead = context.dead_letters
    assert isinstance(dead, RecordingDeadLetters)
    assert [(o, "timestamp" in e) for _, _, o, e in dead.records] == [(1, True)]
    # When no value fits any more, the sink stops and says why.
    later: list[bytes | None] = [json.dumps({"id": 3, "at": {"nested": 1}}).encode()]
    with pytest.raises(IncompatibleChange, match="column 'at'"):
        _apply(_sink("postgres", typed), tmp_path, [(later, [None])])
