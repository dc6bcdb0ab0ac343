"""The ``postgres_cdc`` source: a consistent snapshot of PostgreSQL tables, then every change.

Example ``trunkline.yaml`` entry::

    sources:
      shop_db:
        type: postgres_cdc
        dsn: ${SHOP_DSN}              # postgresql://user:password@host:5432/shop
        tables: [public.orders, public.customers]
        topic_prefix: shop            # topics shop.public.orders, shop.public.customers

The server needs ``wal_level = logical`` and a user with the REPLICATION attribute (or a
superuser) that may read the tables; creating the publication needs ownership of them.

How it works:

1. **Publication and slot.** The source creates (or checks) the publication of its tables
   and a pgoutput replication slot. The slot is created on a replication connection with an
   exported snapshot, and the snapshot transaction imports it (``SET TRANSACTION
   SNAPSHOT``) before that connection does anything else.
2. **Snapshot.** Tables are read in that ``REPEATABLE READ`` transaction, in chunks by key
   (:mod:`._pgsnapshot`), as ``op: r`` events; the checkpoint holds the last key of each
   table, so progress survives restarts.
3. **Streaming** starts at the slot's consistent point: what the snapshot saw is exactly
   what committed before it, so nothing is missed or repeated. Changes come as pgoutput
   over the streaming replication protocol (:mod:`._pgwire`); events are Debezium's
   envelope (:mod:`._pgevents`) keyed by the primary key, one topic per table:
   ``<topic_prefix>.<schema>.<table>``.
4. **Confirming.** The checkpoint holds the stream position; the slot is told a position
   (standby status update) only after a checkpoint holding it was saved, that is after its
   events are durable in the hub. PostgreSQL keeps the WAL until then.

After a restart in the middle of the snapshot the exported snapshot is gone. The source
takes a new one (from a temporary slot, at LSN *Y*), reads the rest of the tables from it,
and remembers per table from which key on rows were read at *Y* (after the last key already
in the hub, see :mod:`._pgsegments`): streaming still starts at the first consistent point,
and for those rows drops the changes that committed before *Y*, which the new snapshot
contains, except those from a row's first delete on (a snapshot cannot say that a row is
gone). A table added to the ``tables`` of a running source is snapshotted alone the same
way, while the others keep their position.

A slot that disappears (dropped, or invalidated by ``max_slot_wal_keep_size``) stops the
source with an error that says so: changes were lost, and a silent new snapshot would hide
it.

Heartbeats: between transactions the source confirms the server's position from keepalives,
and every ``heartbeat_interval`` it writes a small logical message (``pg_logical_emit_message``)
into the WAL of its database, so that a slot whose tables are idle still moves forward and
PostgreSQL can recycle the WAL that other activity writes.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from trunkline.connectors.base import (
    Capabilities,
    ConnectorContext,
    JSONValue,
    LineageDataset,
    Source,
    SourceBatch,
)
from trunkline.connectors.sources._pgcatalog import (
    Column,
    SlotState,
    Table,
    describe_tables,
    ensure_publication,
    lookup_types,
    slot_state,
)
from trunkline.connectors.sources._pgconfig import PostgresCdcConfig, default_name, split_table
from trunkline.connectors.sources._pgevents import ChangeSet, EventBuilder
from trunkline.connectors.sources._pgoutput import Relation, format_lsn, parse_lsn
from trunkline.connectors.sources._pgsegments import (
    Replayed,
    Segment,
    in_snapshot,
    written_bound,
)
from trunkline.connectors.sources._pgsnapshot import SnapshotReader, last_key
from trunkline.connectors.sources._pgstream import HEARTBEAT_PREFIX, ChangeStream, Taken
from trunkline.connectors.sources._pgvalues import SESSION_SETTINGS
from trunkline.connectors.sources._pgwire import ReplicationConnection, SlotMissing
from trunkline.errors import ConnectorError, HubError, TargetUnavailable
from trunkline.meta import Column as MetaColumn

__all__ = ["PostgresCdcConfig", "PostgresCdcSource"]


@dataclass
class _Progress:
    """Snapshot progress of one table."""

    done: bool = False
    after: list[str] | None = None
    rows: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"done": self.done, "after": self.after, "rows": self.rows}


@dataclass
class _Ready:
    batch: SourceBatch
    lsn: int  # the resume position once this batch is durable


class PostgresCdcSource(Source):
    """Snapshots PostgreSQL tables, then streams their changes (logical replication)."""

    Config: ClassVar[type[PostgresCdcConfig]] = PostgresCdcConfig
    # One owner per slot; record ids are stable (a change's WAL position and its place
    # among changes at that position; a snapshot row's key), so nothing is written to the
    # hub twice after a crash.
    capabilities: ClassVar[Capabilities] = Capabilities(exclusive=True, exactly_once=True)
    backlog_unit: ClassVar[str] = "bytes"

    config: PostgresCdcConfig

    def __init__(self, name: str, config: PostgresCdcConfig) -> None:
        super().__init__(name, config)
        self.prefix = config.topic_prefix or name
        self.slot = config.slot or default_name("trunkline_", name)
        self.publication = config.publication or default_name("trunkline_", name)
        self._names = [split_table(t) for t in config.tables]
        self._context: ConnectorContext | None = None
        self._conn: psycopg.Connection | None = None
        self._tables: dict[str, Table] = {}
        self._builders: dict[str, EventBuilder] = {}
        self._retired: list[EventBuilder] = []
        self._progress: dict[str, _Progress] = {}
        self._segments: dict[str, list[Segment]] = {}
        self._replayed: dict[str, Replayed] = {}
        self._lsn = 0  # resume position after every batch returned so far
        self._system = ""
        self._reader: SnapshotReader | None = None
        self._snapshot_lsn = 0
        self._snapshot_ms = 0
        self._stream: ChangeStream | None = None
        self._ready: deque[_Ready] = deque()
        self._confirm: int | None = None
        self._confirmed = 0
        self._next_status = 0.0
        self._next_heartbeat = 0.0
        self._next_lag = 0.0
        self._wal_now = 0
        self._last_empty = 0.0
        self._changes_at_heartbeat = 0
        self._heartbeats = True
        self._server_version = 0

    def topic(self, schema: str, table: str) -> str:
        return f"{self.prefix}.{schema}.{table}"

    def topics(self) -> tuple[str, ...]:
        return tuple(self.topic(s, t) for s, t in self._names)

    # -- opening ------------------------------------------------------------------------

    def open(self, context: ConnectorContext, state: JSONValue | None) -> None:
        self._context = context
        try:
            self._open(context, state)
        except psycopg.Error as exc:
            self.close()
            raise _translate(exc, "opening the source") from exc
        except BaseException:
            self.close()
            raise

    def _conninfo(self) -> str:
        return self.config.dsn.get_secret_value()

    def _open(self, context: ConnectorContext, state: JSONValue | None) -> None:
        conn = self._conn = psycopg.connect(
            self._conninfo(),
            autocommit=True,
            connect_timeout=max(1, round(self.config.connect_timeout / 1000)),
            application_name=f"trunkline {self.name}",
        )
        for setting, value in SESSION_SETTINGS.items():
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(value)))
        self._server_version = conn.info.server_version
        self._check_server(conn)
        tables = describe_tables(conn, self._names)
        self._tables = {t.qualified: t for t in tables.values()}
        for table in tables.values():
            if not table.key:
                context.log.warning(
                    "table %s has no primary key (nor replica identity index): its events "
                    "have no key, and a restart in the middle of its snapshot reads it again",
                    table.qualified,
                )
        added = ensure_publication(
            conn, self.publication, list(tables.values()), create=self.config.create_publication
        )
        if added and state:
            context.log.info("added to publication %s: %s", self.publication, ", ".join(added))
        system = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        self._system = system[0] if system else ""
        if state:
            self._resume(conn, state)
        else:
            self._start_fresh(conn)
        for table in self._tables.values():
            self._builders[table.qualified] = EventBuilder(table, self.prefix, conn.info.dbname)
        self._register(context)

    def _check_server(self, conn: psycopg.Connection) -> None:
        level = _show(conn, "wal_level")
        if level != "logical":
            raise ConnectorError(
                f"PostgreSQL runs with wal_level = {level}; logical replication needs "
                "wal_level = logical (set it in postgresql.conf and restart the server)",
                retryable=False,
            )
        encoding = _show(conn, "server_encoding")
        if encoding not in ("UTF8", "SQL_ASCII"):
            raise ConnectorError(
                f"the database encoding is {encoding}; postgres_cdc reads UTF8 databases",
                retryable=False,
            )

    def _own_slot(self, conn: psycopg.Connection, found: SlotState) -> None:
        """Refuse a slot of this name that another database or decoder uses: slots are
        per server, and another project's source of the same name has the same default."""
        if found.database == conn.info.dbname and found.plugin == "pgoutput":
            return
        raise ConnectorError(
            f"replication slot {self.slot!r} belongs to database {found.database!r} (plugin "
            f"{found.plugin!r}), not to this source's database {conn.info.dbname!r} with "
            "pgoutput: another source on this server uses the name; give this one its own "
            "with the setting 'slot'",
            retryable=False,
        )

    def _start_fresh(self, conn: psycopg.Connection) -> None:
        existing = slot_state(conn, self.slot)
        if existing is not None:
            self._own_slot(conn, existing)
            if existing.active_pid is not None or self.config.slot is not None:
                raise ConnectorError(
                    f"replication slot {self.slot!r} exists already, but this source has no "
                    "checkpoint that says where it stands; drop it (SELECT "
                    f"pg_drop_replication_slot('{self.slot}')) to start over with a new "
                    "snapshot, or name another slot",
                    retryable=False,
                )
            # Ours, left by a run that stopped before its first checkpoint: nothing read
            # from it was kept, so a new slot and snapshot lose nothing.
            self._log_warning(f"dropping slot {self.slot}, left before a first checkpoint")
            conn.execute("SELECT pg_drop_replication_slot(%s)", [self.slot])
        self._progress = {t: _Progress(done=self.config.snapshot == "never") for t in self._tables}
        replication = self._replication()
        try:
            if self.config.snapshot == "never":
                rows = replication.command(
                    f"CREATE_REPLICATION_SLOT {self.slot} LOGICAL pgoutput"
                    + (
                        " (SNAPSHOT 'nothing')"
                        if self._server_version >= 150000
                        else " NOEXPORT_SNAPSHOT"
                    )
                )
                self._lsn = parse_lsn(str(rows[0][1]))
                return
            self._lsn, snapshot = replication.create_slot(
                self.slot, temporary=False, server_version=self._server_version
            )
            self._open_reader(snapshot, self._lsn)
        finally:
            replication.close()

    def _resume(self, conn: psycopg.Connection, state: Mapping[str, Any]) -> None:
        saved_slot = state.get("slot", self.slot)
        if saved_slot != self.slot:
            raise ConnectorError(
                f"the checkpoint of source {self.name!r} belongs to slot {saved_slot!r}, but "
                f"the settings name slot {self.slot!r}; changing the slot needs a new snapshot "
                "(remove the source's checkpoint to start over)",
                retryable=False,
            )
        if state.get("system") and self._system and state["system"] != self._system:
            raise ConnectorError(
                f"the checkpoint of source {self.name!r} was taken on another PostgreSQL "
                f"cluster (system {state['system']}, now {self._system})",
                retryable=False,
            )
        self._lsn = int(state["lsn"])
        found = slot_state(conn, self.slot)
        if found is None or found.wal_status == "lost":
            why = "no longer exists" if found is None else "was invalidated (wal_status lost)"
            raise SlotMissing(
                f"replication slot {self.slot!r} {why}: the changes after LSN "
                f"{format_lsn(self._lsn)} that it held are lost. trunkline does not take a new "
                "snapshot on its own, as that would hide the loss; to start over, remove the "
                f"checkpoint of source {self.name!r} (.trunkline/checkpoints/"
                f"source-{self.name}.json, or with a PostgreSQL metadata store its row "
                f"'source-{self.name}' of runtime_checkpoints) and run again"
            )
        self._own_slot(conn, found)
        confirmed = parse_lsn(found.confirmed_flush) if found.confirmed_flush else 0
        if confirmed > self._lsn:
            raise SlotMissing(
                f"replication slot {self.slot!r} was advanced to {format_lsn(confirmed)}, past "
                f"this source's checkpoint at {format_lsn(self._lsn)} (by another consumer?): "
                "the changes in between are lost"
            )
        self._progress = {}
        saved = state.get("tables", {})
        for qualified in self._tables:
            entry = saved.get(qualified)
            if entry is None:
                self._progress[qualified] = _Progress()  # new: snapshotted alone
            else:
                self._progress[qualified] = _Progress(
                    bool(entry.get("done")), entry.get("after"), int(entry.get("rows", 0))
                )
        self._segments = {
            t: [(bound, int(lsn)) for bound, lsn in segments]
            for t, segments in state.get("segments", {}).items()
            if t in self._tables
        }
        self._replayed = {
            t: Replayed.from_json(
                saved_keys, f"checkpoint of source {self.name!r}, replayed[{t!r}]"
            )
            for t, saved_keys in state.get("replayed", {}).items()
            if t in self._segments
        }
        pending = [t for t, p in self._progress.items() if not p.done]
        if pending:
            replication = self._replication()
            try:
                temp = f"{self.slot[:40]}_{int(time.time() * 1000) % 10**9}"
                point, snapshot = replication.create_slot(
                    temp, temporary=True, server_version=self._server_version
                )
                self._open_reader(snapshot, point)
            finally:
                replication.close()
            written = state.get("written", {})
            for qualified in pending:
                bound = self._progress[qualified].after
                table = self._tables[qualified]
                topic = self.topic(table.schema, table.name)
                hub = self._context.hub if self._context is not None else None
                if hub is not None:
                    # Without saved offsets every record of the topic came after the checkpoint.
                    since = {int(p): int(o) for p, o in written.get(topic, {}).items()}
                    bound = written_bound(conn, hub, table, topic, since) or bound
                self._segments.setdefault(qualified, []).append((bound, point))
            self._log_info(
                f"snapshot of {', '.join(pending)} continues from a new snapshot at "
                f"{format_lsn(point)}; changes before it are skipped for rows read from it"
            )

    def _open_reader(self, snapshot: str, lsn: int) -> None:
        self._reader = SnapshotReader(self._conninfo(), snapshot, SESSION_SETTINGS)
        self._snapshot_lsn = lsn
        self._snapshot_ms = int(time.time() * 1000)

    def _replication(self) -> ReplicationConnection:
        return ReplicationConnection(
            self._conninfo(),
            settings=SESSION_SETTINGS,
            application_name=f"trunkline {self.name}",
            connect_timeout=self.config.connect_timeout / 1000,
        )

    def _register(self, context: ConnectorContext) -> None:
        if context.meta is None:
            return
        assert self._conn is not None
        info = self._conn.info
        context.register_system("postgres", f"postgresql://{info.host}:{info.port}/{info.dbname}")
        for table in self._tables.values():
            context.register_dataset(
                table.qualified,
                "table",
                columns=[MetaColumn(c.name, c.type.name) for c in table.columns],
            )

    def lineage(self) -> tuple[LineageDataset, ...]:
        # The tables as the server named them in open (the settings may quote or fold case).
        return tuple(
            LineageDataset(self.topic(t.schema, t.name), t.qualified) for t in self._tables.values()
        )

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> JSONValue:
        # Called once every batch returned is durable: the position may be confirmed to
        # the server after the runtime has saved this (at the next poll).
        self._confirm = self._lsn
        return {
            "slot": self.slot,
            "system": self._system,
            "lsn": self._lsn,
            "position": format_lsn(self._lsn),
            "tables": {t: p.to_json() for t, p in self._progress.items()},
            "segments": {t: [list(s) for s in segs] for t, segs in self._segments.items() if segs},
            "replayed": {t: r.to_json() for t, r in self._replayed.items() if r},
            "written": self._written(),
        }

    def _written(self) -> dict[str, dict[str, int]]:
        """End offsets of the topic of the table being snapshotted (all its batches so far
        are durable): what a crash leaves after them is found there after a restart."""
        hub = self._context.hub if self._context is not None else None
        active = next((t for t, p in self._progress.items() if not p.done), None)
        if hub is None or active is None or self._reader is None:
            return {}
        table = self._tables[active]
        topic = self.topic(table.schema, table.name)
        try:
            return {topic: {str(p): o for p, o in hub.end_offsets(topic).items()}}
        except HubError:
            return {}

    def backlog(self) -> float | None:
        """WAL not yet read, in bytes: from the stream's view of the server's WAL end, or
        (during a snapshot) from the server's current position, asked once a second."""
        stream = self._stream
        if stream is not None:
            if stream.caught_up and not self._ready:
                return 0.0
            return float(max(0, stream.wal_end - self._lsn))
        if self._conn is not None and time.monotonic() >= self._next_lag:
            self._next_lag = time.monotonic() + 1.0
            with contextlib.suppress(psycopg.Error):
                row = self._conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                if row:
                    self._wal_now = parse_lsn(row[0])
        return float(max(0, self._wal_now - self._lsn)) if self._wal_now else None

    def close(self) -> None:
        for closing in (self._reader, self._stream.connection if self._stream else None):
            if closing is not None:
                with contextlib.suppress(Exception):
                    closing.close()
        self._reader = None
        self._stream = None
        self._builders = {}
        self._retired = []
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.close()

    # -- polling --------------------------------------------------------------------------

    def poll(self, timeout: float) -> SourceBatch | None:
        try:
            return self._poll(timeout)
        except psycopg.Error as exc:
            raise _translate(exc, "reading changes") from exc

    def _poll(self, timeout: float) -> SourceBatch | None:
        if self._reader is not None:
            batch = self._snapshot_step()
            if batch is not None:
                return batch
        if self._ready:
            return self._hand_out()
        stream = self._stream or self._start_stream()
        self._housekeeping(stream)
        stream.pump(timeout, self.config.max_batch_rows)
        if stream.reply_wanted():
            stream.connection.send_status(self._confirmed)
        self._queue(stream.take())
        if self._ready:
            return self._hand_out()
        return None

    def _hand_out(self) -> SourceBatch:
        ready = self._ready.popleft()
        self._lsn = ready.lsn
        return ready.batch

    # -- snapshot -------------------------------------------------------------------------

    def _snapshot_step(self) -> SourceBatch | None:
        reader = self._reader
        assert reader is not None
        for qualified, progress in self._progress.items():
            if progress.done:
                continue
            table = self._tables[qualified]
            limit = self.config.snapshot_chunk_rows
            if table.key:
                chunk = reader.chunk(table, progress.after, limit)
                progress.done = chunk.num_rows < limit
            else:
                scanned = reader.scan(table, limit)
                progress.done = scanned is None
                chunk = scanned if scanned is not None else pa.table({})
            if not chunk.num_rows:
                progress.done = True
                continue
            texts = [chunk.column(i).combine_chunks() for i in range(len(table.columns))]
            records, ids = self._builders[qualified].snapshot(
                texts, lsn=self._snapshot_lsn, ts_ms=self._snapshot_ms, first_row=progress.rows
            )
            if table.key:
                progress.after = last_key(table, chunk)
            progress.rows += chunk.num_rows
            self._count("snapshot_rows", chunk.num_rows)
            position = {"snapshot": qualified, "rows": progress.rows, "done": progress.done}
            return SourceBatch(
                self.topic(table.schema, table.name), records, position=position, ids=ids
            )
        reader.close()
        self._reader = None
        self._log_info(
            "snapshot done: " + ", ".join(f"{t} {p.rows:,} rows" for t, p in self._progress.items())
        )
        return None

    # -- streaming ------------------------------------------------------------------------

    def _start_stream(self) -> ChangeStream:
        connection = self._replication()
        try:
            options = {"proto_version": "1", "publication_names": _quote_ident(self.publication)}
            if self._server_version >= 140000:
                options["messages"] = "true"
            connection.start(self.slot, self._lsn, options)
            # The position this source resumed from is in its saved checkpoint.
            connection.send_status(self._lsn)
        except BaseException:
            connection.close()
            raise
        self._confirmed = self._lsn
        self._stream = ChangeStream(connection, self._lsn, self._table_of)
        now = time.monotonic()
        self._next_status = now + self.config.status_interval / 1000
        self._next_heartbeat = now + self.config.heartbeat_interval / 1000
        return self._stream

    def _table_of(self, relation: Relation) -> Table | None:
        qualified = f"{relation.schema}.{relation.name}"
        known = self._tables.get(qualified)
        if known is None:
            return None
        columns = tuple(c.name for c in known.columns)
        types = tuple(c.type.oid for c in known.columns)
        if columns == relation.columns and types == relation.type_oids:
            return known
        # The table changed (a column added, dropped, retyped): follow the stream's shape.
        assert self._conn is not None
        found = lookup_types(self._conn, relation.type_oids)
        table = Table(
            known.schema,
            known.name,
            known.oid,
            tuple(
                Column(name, found[oid])
                for name, oid in zip(relation.columns, relation.type_oids, strict=True)
            ),
            tuple(k for k in known.key if k in relation.columns),
            relation.identity,
        )
        self._tables[qualified] = table
        # Buffered changes of the old shape keep their builder until they are queued.
        self._retired.extend(b for b in [self._builders.get(qualified)] if b is not None)
        self._builders[qualified] = EventBuilder(table, self.prefix, _database(self._conn))
        self._log_info(f"columns of {qualified} changed: {', '.join(relation.columns)}")
        return table

    def _queue(self, taken: Taken) -> None:
        batches: list[SourceBatch] = []
        for table, changes in taken.sets:
            changes = self._skip_snapshotted(table, changes)
            if not len(changes):
                continue
            builder = self._builders[table.qualified]
            if builder.table.columns != table.columns:
                builder = next(b for b in self._retired if b.table.columns == table.columns)
            records, ids = builder.changes(changes, tombstones=self.config.tombstones)
            batches.append(
                SourceBatch(
                    self.topic(table.schema, table.name),
                    records,
                    position={"lsn": format_lsn(taken.safe_lsn)},
                    ids=ids,
                )
            )
        self._count("changes", taken.rows)
        if not batches and taken.safe_lsn > self._lsn:
            # Only the position moved (keepalives, heartbeats, other tables' changes): hand
            # out an empty batch now and then so that it is checkpointed and confirmed.
            interval = self.config.status_interval / 1000
            if time.monotonic() - self._last_empty >= interval:
                self._last_empty = time.monotonic()
                first = next(iter(self._tables.values()))
                empty = pa.table({"value": pa.array([], pa.binary())})
                batches.append(
                    SourceBatch(
                        self.topic(first.schema, first.name),
                        empty,
                        position={"lsn": format_lsn(taken.safe_lsn)},
                        ids=pa.array([], pa.binary()),
                    )
                )
        self._retired = []  # every change of an old shape is queued by now
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            self._ready.append(_Ready(batch, taken.safe_lsn if last else self._lsn))
        if self._segments and taken.safe_lsn >= max(
            lsn for segs in self._segments.values() for _, lsn in segs
        ):
            # The stream has passed every snapshot taken after a restart: nothing to skip.
            self._segments = {}
            self._replayed = {}

    def _skip_snapshotted(self, table: Table, changes: ChangeSet) -> ChangeSet:
        """Drop changes that a snapshot taken after a restart already holds."""
        segments = self._segments.get(table.qualified)
        if not segments:
            return changes
        assert self._conn is not None
        replayed = self._replayed.setdefault(table.qualified, Replayed())
        drop = in_snapshot(self._conn, table, changes, segments, replayed)
        if not drop.any():
            return changes
        self._count("changes_in_snapshot", int(drop.sum()))
        return changes.take(np.flatnonzero(~drop))

    def _housekeeping(self, stream: ChangeStream) -> None:
        now = time.monotonic()
        connection = stream.connection
        if self._confirm is not None and self._confirm > self._confirmed:
            connection.send_status(self._confirm)
            self._confirmed = self._confirm
            self._next_status = now + self.config.status_interval / 1000
        self._confirm = None
        if now >= self._next_status:
            connection.send_status(self._confirmed)
            self._next_status = now + self.config.status_interval / 1000
        interval = self.config.heartbeat_interval / 1000
        if interval and now >= self._next_heartbeat:
            self._next_heartbeat = now + interval
            if stream.changes == self._changes_at_heartbeat:
                self._heartbeat(connection)
            self._changes_at_heartbeat = stream.changes
        if now >= self._next_lag:
            self._next_lag = now + 1.0
            behind = max(0, stream.wal_end - self._lsn)
            caught_up = stream.caught_up and not self._ready
            seconds = 0.0
            if not caught_up and stream.last_commit_ms:
                seconds = max(0.0, time.time() - stream.last_commit_ms / 1000)
            self._gauge("slot_lag_bytes", 0 if caught_up else behind)
            self._gauge("slot_lag_seconds", round(seconds, 3))

    def _heartbeat(self, connection: ReplicationConnection) -> None:
        """An idle stream: a message into this database's WAL, whose position comes back
        through the slot, and a request for the server's position."""
        assert self._conn is not None
        if self._heartbeats and self._server_version >= 140000:
            try:
                self._conn.execute(
                    "SELECT pg_logical_emit_message(false, %s, %s)", [HEARTBEAT_PREFIX, self.name]
                )
            except psycopg.errors.InsufficientPrivilege as exc:
                self._heartbeats = False
                self._log_warning(f"heartbeats off: {_first_line(exc)}")
        connection.send_status(self._confirmed, reply=True)
        self._count("heartbeats", 1)

    # -- reporting ------------------------------------------------------------------------

    def _count(self, name: str, value: float) -> None:
        if self._context is not None and value:
            self._context.metrics.count(name, value)

    def _gauge(self, name: str, value: float) -> None:
        if self._context is not None:
            self._context.metrics.gauge(name, value)

    def _log_info(self, message: str) -> None:
        if self._context is not None:
            self._context.log.info("%s", message)

    def _log_warning(self, message: str) -> None:
        if self._context is not None:
            self._context.log.warning("%s", message)


def _database(conn: psycopg.Connection | None) -> str:
    return conn.info.dbname if conn is not None else ""


def _show(conn: psycopg.Connection, setting: str) -> str:
    row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
    return str(row[0]) if row else ""


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: Errors a retry cannot fix: missing rights, settings, features.
_PERMANENT = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ObjectNotInPrerequisiteState,
    psycopg.errors.FeatureNotSupported,
    psycopg.errors.InvalidParameterValue,
)


def _translate(exc: psycopg.Error, doing: str) -> ConnectorError:
    """A driver error in trunkline's terms: unreachable servers are retried, refusals that
    a retry cannot change stop the source."""
    text = f"{doing}: {_first_line(exc)}"
    if isinstance(exc, psycopg.OperationalError):
        return TargetUnavailable(text)
    return ConnectorError(text, retryable=not isinstance(exc, _PERMANENT))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
