"""The ``postgres_cdc`` source and the ``postgres`` sink against a real PostgreSQL.

Pipelines run in this process (the runtime's own threads): PostgreSQL -> hub -> DuckDB and
PostgreSQL (schema ``replica`` of the same database).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy.engine import make_url

from trunkline.connectors import SOURCES
from trunkline.errors import ConnectorError
from trunkline.project import Project
from trunkline.runtime import Runner, RunOptions
from trunkline.testing.connectors import make_context

sys.path.insert(0, str(Path(__file__).parent))
from _cdc_helpers import duck_rows, pipeline, replica_rows, source_rows, wait_equal

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres


@contextlib.contextmanager
def running(root: Path, dsn: str) -> Iterator[Runner]:
    project = Project.open(root, env={"SHOP_DSN": dsn})
    runner = Runner(project, RunOptions(status_interval=0.5))
    runner.start()
    try:
        yield runner
    finally:
        runner.shutdown()
        project.close()


def caught_up(runner: Runner, group: str, timeout: float = 60) -> None:
    hub = runner.project.hub
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = hub.describe_group(group)
        if described.offsets and described.lag == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{group} did not catch up: {hub.describe_group(group)}")


def _project(tmp_path: Path, text: str) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "trunkline.yaml").write_text(text)
    return root


# -- types ------------------------------------------------------------------------------

KINDS = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE kinds (
    id bigint PRIMARY KEY, amount numeric(20, 6), big numeric, at timestamptz, local timestamp,
    day date, doc jsonb, tags text[], nums integer[], u uuid, raw bytea, m mood,
    f double precision, ok boolean, note text
)
"""
INSERT = (
    "INSERT INTO kinds VALUES (%(id)s, %(amount)s, %(big)s, %(at)s, %(local)s, %(day)s, "
    "%(doc)s, %(tags)s, %(nums)s, %(u)s, %(raw)s, %(m)s, %(f)s, %(ok)s, %(note)s)"
)


def _kind_rows(first: int) -> list[dict[str, Any]]:
    from psycopg.types.json import Jsonb

    base = {
        "amount": Decimal("12345678901234.123456"),
        "big": Decimal("-0.000000000000000000001"),
        "at": datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        "local": datetime(1999, 12, 31, 12, 0, 0, 500),
        "day": date(2024, 2, 29),
        "doc": Jsonb({"a": [1, 2.5, "x"], "ü": {"nested": None}, "q": 'say "hi"\\n'}),
        "tags": ["plain", None, "with,comma", "{braces}", 'quo"te', "back\\slash", ""],
        "nums": [1, None, -3],
        "u": uuid.UUID("0b7e5a3c-1f2d-4e5f-8a9b-0c1d2e3f4a5b"),
        "raw": b"\x00\x01binary\xff",
        "m": "happy",
        "f": 0.1,
        "ok": True,
        "note": 'line one\nline "two"\ttabbed \\ back ✓ 𝄞',
    }
    rows = []
    for i in range(first, first + 3):
        row = dict(base, id=i)
        if i % 3 == 1:
            row.update(amount=Decimal("-1.500000"), f=-1e300, ok=False, tags=[], m="sad")
        if i % 3 == 2:
            row = dict.fromkeys(base) | {"id": i}
        rows.append(row)
    return rows


#: The source's values as PostgreSQL writes them in text where the sinks keep text (numeric
#: exactly, scale included), as Python objects elsewhere.
SOURCE_COLUMNS = (
    'id, amount::text, big::text, "at", "local", "day", doc, tags, nums, u::text, '
    "encode(raw, 'hex'), m::text, f, ok, note"
)
NAMES = ["id", "amount", "big", "at", "local", "day", "doc", "tags", "nums", "u", "raw", "m"]
NAMES += ["f", "ok", "note"]
COLUMNS = ", ".join(f'"{name}"' for name in NAMES)


def _sink_canonical(row: tuple[Any, ...]) -> tuple[Any, ...]:
    values = list(row)
    values[2] = None if values[2] is None else values[2].astimezone(UTC)
    # A date arrives as a JSON string that JSON readers take for a timestamp at midnight.
    values[4] = None if values[4] is None else values[4].date()
    values[5] = None if values[5] is None else json.loads(values[5])
    values[6] = None if values[6] is None else list(values[6])
    values[7] = None if values[7] is None else list(values[7])
    return tuple(values)


def test_types_round_trip_through_both_sinks(tmp_path: Path, cdc_db: str) -> None:
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute(KINDS)
        with conn.cursor() as cursor:
            cursor.executemany(INSERT, _kind_rows(0))  # read by the snapshot
    root = _project(tmp_path, pipeline(["public.kinds"], chunk=2))

    def expected() -> dict[int, tuple[Any, ...]]:
        rows = source_rows(cdc_db, "kinds", SOURCE_COLUMNS)
        return {k: (*v[:2], v[2] and v[2].astimezone(UTC), *v[3:]) for k, v in rows.items()}

    def duck() -> dict[int, tuple[Any, ...]] | None:
        rows = duck_rows(root / "warehouse.duckdb", "shop_public_kinds", COLUMNS)
        return None if rows is None else {k: _sink_canonical(v) for k, v in rows.items()}

    def replica() -> dict[int, tuple[Any, ...]] | None:
        rows = replica_rows(cdc_db, "shop_public_kinds", COLUMNS)
        return None if rows is None else {k: _sink_canonical(v) for k, v in rows.items()}

    with running(root, cdc_db) as runner:
        wait_equal(expected, {"postgres": replica}, 60)
        with psycopg.connect(cdc_db, autocommit=True) as conn:
            with conn.cursor() as cursor:
                cursor.executemany(INSERT, _kind_rows(10))  # streamed
            conn.execute("UPDATE kinds SET note = 'changed', amount = 0.000001 WHERE id = 0")
            conn.execute("DELETE FROM kinds WHERE id = 11")
        wait_equal(expected, {"postgres": replica}, 60)
        caught_up(runner, "sink-duck")
        # Lineage: table -> topic -> both sinks' tables, each edge named by its connector.
        meta = runner.project.meta
        for target, sink in (("replica.replica", "replica"), ("duck.main", "duck")):
            edges = meta.lineage(f"{target}.shop_public_kinds")
            assert [(str(e.source), str(e.target), e.job) for e in edges] == [
                ("hub.shop.public.kinds", f"{target}.shop_public_kinds", sink),
                ("shop.public.kinds", "hub.shop.public.kinds", "shop"),
            ]
    # DuckDB lets one process open its file: read it once the run is over.
    wait_equal(expected, {"duckdb": duck}, 0)
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        types = dict(con.sql("DESCRIBE shop_public_kinds").fetchall()[i][:2] for i in range(15))
    assert types["at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["nums"] == "BIGINT[]"


def test_unchanged_toast_value_is_kept_by_both_sinks(tmp_path: Path, cdc_db: str) -> None:
    big = "".join(uuid.uuid4().hex for _ in range(400))  # 12.8 kB that does not compress
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, seq bigint, payload text)")
        conn.execute("ALTER TABLE docs ALTER COLUMN payload SET STORAGE EXTERNAL")
        conn.execute("INSERT INTO docs VALUES (1, 1, %s), (2, 1, %s)", [big, big[::-1]])
    root = _project(tmp_path, pipeline(["public.docs"]))
    expected = lambda: source_rows(cdc_db, "docs")  # noqa: E731
    readers = {"postgres": lambda: replica_rows(cdc_db, "shop_public_docs")}
    with running(root, cdc_db) as runner:
        wait_equal(expected, readers, 60)
        with psycopg.connect(cdc_db, autocommit=True) as conn:
            # Only seq changes: pgoutput sends the TOASTed payload as "unchanged".
            conn.execute("UPDATE docs SET seq = 2 WHERE id = 1")
            with conn.transaction():
                conn.execute("UPDATE docs SET seq = 3 WHERE id = 2")
                conn.execute("UPDATE docs SET payload = 'short now' WHERE id = 2")
                conn.execute("UPDATE docs SET seq = 4 WHERE id = 2")
        wait_equal(expected, readers, 60)
        caught_up(runner, "sink-duck")
    duck = {"duckdb": lambda: duck_rows(root / "warehouse.duckdb", "shop_public_docs")}
    wait_equal(expected, duck, 0)
    # The placeholder travelled through the hub as Debezium writes it.
    with Project.open(root, env={"SHOP_DSN": cdc_db}) as project:
        fetched = project.hub.fetch("shop.public.docs", 0, 0, max_records=100)
        values = [json.loads(v) for v in fetched.records.column("value").to_pylist() if v]
    updates = [v for v in values if v["op"] == "u"]
    assert updates[0]["after"]["payload"] == "__debezium_unavailable_value"


def test_replica_identity_full_gives_before_images(tmp_path: Path, cdc_db: str) -> None:
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, seq bigint, payload text)")
        conn.execute("CREATE TABLE f (id bigint PRIMARY KEY, seq bigint, payload text)")
        conn.execute("ALTER TABLE f REPLICA IDENTITY FULL")
    source = _cdc_source(cdc_db, ["public.t", "public.f"])
    context = make_context(tmp_path, "src", kind="source")
    source.open(context, None)
    try:
        _drain(source)
        with psycopg.connect(cdc_db, autocommit=True) as conn:
            for table in ("t", "f"):
                conn.execute(f"INSERT INTO {table} VALUES (1, 1, 'a')")
                conn.execute(f"UPDATE {table} SET seq = 2 WHERE id = 1")
                conn.execute(f"UPDATE {table} SET id = 5 WHERE id = 1")
                conn.execute(f"DELETE FROM {table} WHERE id = 5")
        events: dict[str, list[tuple[str, Any, Any, Any]]] = {"t": [], "f": []}
        deadline = time.monotonic() + 30
        while len(events["t"]) < 7 or len(events["f"]) < 7:
            assert time.monotonic() < deadline, events
            batch = source.poll(0.5)
            if batch is None:
                continue
            table = batch.topic.rsplit(".", 1)[1]
            for key, value in zip(
                batch.records.column("key").to_pylist(),
                batch.values().to_pylist(),
                strict=True,
            ):
                event = json.loads(value) if value else None
                events[table].append(
                    (
                        event["op"] if event else "tombstone",
                        json.loads(key) if key else None,
                        event and event["before"],
                        event and event["after"],
                    )
                )
    finally:
        source.close()
    row = {"id": 1, "seq": 1, "payload": "a"}
    default = events["t"]
    assert [e[0] for e in default] == ["c", "u", "d", "tombstone", "c", "d", "tombstone"]
    assert default[1][2] is None  # DEFAULT identity: no before image of an update
    assert default[2][1] == {"id": 1} and default[2][2]["id"] == 1  # the key change: delete 1
    assert default[4][1] == {"id": 5} and default[4][3]["seq"] == 2  # ...and create 5
    assert default[5][2] == {"id": 5, "seq": None, "payload": None}  # key columns only
    full = events["f"]
    assert [e[0] for e in full] == ["c", "u", "d", "tombstone", "c", "d", "tombstone"]
    assert full[1][2] == row  # FULL: the whole old row
    assert full[5][2] == {"id": 5, "seq": 2, "payload": "a"}


# -- position, slot, heartbeat ------------------------------------------------------------


def _cdc_source(dsn: str, tables: list[str], **settings: Any) -> Any:
    source_class = SOURCES.get("postgres_cdc")
    config = source_class.Config.model_validate({"dsn": dsn, "tables": tables, **settings})
    return source_class("src", config)


def _drain(source: Any, quiet: float = 0.3) -> list[Any]:
    batches = []
    while True:
        batch = source.poll(quiet)
        if batch is None:
            return batches
        batches.append(batch)


def _slot(dsn: str, slot: str = "trunkline_src") -> tuple[str, str] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots "
            "WHERE slot_name = %s",
            [slot],
        ).fetchone()
    return None if row is None else (row[0], row[1])


def test_lost_slot_is_a_loud_error_not_a_new_snapshot(tmp_path: Path, cdc_db: str) -> None:
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, seq bigint, payload text)")
        conn.execute("INSERT INTO t VALUES (1, 1, 'a')")
    source = _cdc_source(cdc_db, ["t"])
    context = make_context(tmp_path, "src", kind="source")
    source.open(context, None)
    _drain(source)
    state = json.loads(json.dumps(source.snapshot()))
    source.close()
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot('trunkline_src')")
    again = _cdc_source(cdc_db, ["t"])
    with pytest.raises(ConnectorError, match="no longer exists") as raised:
        again.open(context, state)
    assert raised.value.retryable is False
    assert "remove the checkpoint" in str(raised.value)
    assert _slot(cdc_db) is None, "no new slot was created behind the user's back"


def test_a_slot_of_the_same_name_in_another_database_is_refused_not_taken(
    tmp_path: Path, cdc_db: str, postgres_service: str
) -> None:
    """Slots are per server: another project's source of the same name has the same default
    slot name, in its own database. That slot is neither dropped nor read."""
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, seq bigint, payload text)")
    other = make_url(postgres_service).set(drivername="postgresql")
    other_dsn = other.render_as_string(hide_password=False)
    with psycopg.connect(other_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('trunkline_src', 'pgoutput')")
    try:
        source = _cdc_source(cdc_db, ["t"])
        with pytest.raises(ConnectorError, match="belongs to database") as raised:
            source.open(make_context(tmp_path, "src", kind="source"), None)
        source.close()
        assert raised.value.retryable is False
        assert repr(other.database) in str(raised.value)
        assert "setting 'slot'" in str(raised.value)
        with psycopg.connect(other_dsn) as conn:
            kept = conn.execute(
                "SELECT database FROM pg_replication_slots WHERE slot_name = 'trunkline_src'"
            ).fetchone()
        assert kept == (other.database,), "the other database's slot is still there"
    finally:
        with psycopg.connect(other_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot('trunkline_src')")


def test_the_last_key_written_is_the_greatest_by_value_not_by_text(
    tmp_path: Path, cdc_db: str
) -> None:
    """After a restart mid-snapshot, the rows the hub holds past the checkpoint are found by
    their greatest key: 100000 comes after 99 (as text it would not)."""
    from trunkline.connectors.sources._pgcatalog import describe_tables
    from trunkline.connectors.sources._pgsegments import written_bound
    from trunkline.hub.embedded import EmbeddedHub

    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE n (id bigint PRIMARY KEY)")
        conn.execute("CREATE TABLE s (region text, id int, PRIMARY KEY (region, id))")
        tables = describe_tables(conn, [("public", "n"), ("public", "s")])
        with EmbeddedHub(tmp_path / "hub") as hub:
            hub.create_topic("n")
            hub.create_topic("s")
            hub.produce("n", [{"key": b'{"id":5}', "value": b"{}"}])
            hub.produce(
                "n", [{"key": f'{{"id":{k}}}'.encode(), "value": b"{}"} for k in (99, 100000, 7)]
            )
            hub.produce(
                "s",
                [
                    {"key": k.encode(), "value": b"{}"}
                    for k in (
                        '{"region":"eu","id":100}',
                        '{"region":"eu","id":99}',
                        '{"region":"ap","id":5}',
                    )
                ],
            )
            found = {t.name: t for t in tables.values()}
            assert written_bound(conn, hub, found["n"], "n", {0: 1}) == ["100000"]
            assert written_bound(conn, hub, found["n"], "n", {}) == ["100000"]
            assert written_bound(conn, hub, found["n"], "n", {0: 4}) is None
            assert written_bound(conn, hub, found["s"], "s", {}) == ["eu", "100"]


def test_position_is_confirmed_only_after_a_checkpoint_and_heartbeats_move_idle_slots(
    tmp_path: Path, cdc_db: str
) -> None:
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, seq bigint, payload text)")
        conn.execute("CREATE TABLE unrelated (id serial PRIMARY KEY, filler text)")
    source = _cdc_source(cdc_db, ["t"], heartbeat_interval="200ms", status_interval="200ms")
    context = make_context(tmp_path, "src", kind="source")
    source.open(context, None)
    try:
        _drain(source)
        created = _slot(cdc_db)
        assert created is not None
        with psycopg.connect(cdc_db, autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES (1, 1, 'a')")
        batches = [b for b in _drain(source) if b.records.num_rows]
        assert batches, "the insert arrives"
        time.sleep(0.5)
        source.poll(0.1)
        assert _slot(cdc_db) == created, "nothing is confirmed before a checkpoint"
        source.snapshot()  # the runtime saves it, then polls again: now it is confirmed
        source.poll(0.1)
        deadline = time.monotonic() + 10
        while _slot(cdc_db) == created:
            assert time.monotonic() < deadline, "the checkpointed position is confirmed"
            source.poll(0.1)
        # The captured table stays idle while other tables write WAL: heartbeats and
        # keepalives move the slot on, so that PostgreSQL can recycle that WAL.
        with psycopg.connect(cdc_db, autocommit=True) as conn:
            for _ in range(20):
                conn.execute(
                    "INSERT INTO unrelated (filler) "
                    "SELECT repeat('x', 1000) FROM generate_series(1, 500)"
                )
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + 30
        while True:
            for batch in _drain(source, quiet=0.2):
                assert not batch.records.num_rows  # only the position moves
            source.snapshot()
            source.poll(0.1)
            with psycopg.connect(cdc_db) as conn:
                caught_up = conn.execute(
                    "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots "
                    "WHERE slot_name = 'trunkline_src'",
                    [target],
                ).fetchone()[0]
            if caught_up:
                break
            assert time.monotonic() < deadline, "an idle slot keeps up with the WAL"
        assert context.metrics.counters.get("heartbeats", 0) >= 1  # type: ignore[attr-defined]
        assert source.backlog() == 0
    finally:
        source.close()


def test_table_added_to_a_running_source_is_snapshotted_alone(tmp_path: Path, cdc_db: str) -> None:
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE a (id bigint PRIMARY KEY, seq bigint, payload text)")
        conn.execute("CREATE TABLE b (id bigint PRIMARY KEY, seq bigint, payload text)")
        conn.execute("INSERT INTO a SELECT g, g, 'a' FROM generate_series(1, 50) g")
        conn.execute("INSERT INTO b SELECT g, g, 'b' FROM generate_series(1, 70) g")
    context = make_context(tmp_path, "src", kind="source")
    first = _cdc_source(cdc_db, ["a"], snapshot_chunk_rows=16)
    first.open(context, None)
    read = _drain(first)
    state = json.loads(json.dumps(first.snapshot()))
    first.close()
    assert sum(b.records.num_rows for b in read) == 50
    with psycopg.connect(cdc_db, autocommit=True) as conn:
        conn.execute("UPDATE a SET seq = 100 WHERE id = 1")  # streamed, not snapshotted again
        conn.execute("UPDATE b SET seq = 100 WHERE id = 1")  # before b's snapshot: in it
    second = _cdc_source(cdc_db, ["a", "b"], snapshot_chunk_rows=16)
    second.open(context, state)
    try:
        batches = _drain(second)
        with psycopg.connect(cdc_db, autocommit=True) as conn:
            conn.execute("UPDATE b SET seq = 200 WHERE id = 2")  # after: streamed
        batches += _drain(second)
    finally:
        second.close()
    ops: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}
    for batch in batches:
        table = batch.topic.rsplit(".", 1)[1]
        for value in batch.values().to_pylist():
            event = json.loads(value)
            ops[table].append((event["op"], event["after"]["id"]))
    assert ops["a"] == [("u", 1)], "table a is not snapshotted again"
    assert sorted(i for op, i in ops["b"] if op == "r") == list(range(1, 71))
    assert [(op, i) for op, i in ops["b"] if op != "r"] == [("u", 2)]
