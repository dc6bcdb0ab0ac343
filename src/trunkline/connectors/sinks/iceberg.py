"""The ``iceberg`` sink: topics into Apache Iceberg tables, with few commits, exactly once.

Example ``trunkline.yaml`` entry::

    sinks:
      lake:
        type: iceberg
        warehouse: lake                      # data and metadata files (folder or URI)
        catalog: "${ICEBERG_CATALOG}"        # optional; SQLite in the warehouse by default,
                                             # or postgresql://user:pw@host/db
        topics: [shop.public.orders]
        mode: upsert                         # or append
        key: [id]
        commit_interval: 10s                 # at most one commit per table this often...
        commit_size: 64MiB                   # ...unless this much is waiting

Tables live in a SQL catalog (pyiceberg's ``SqlCatalog``, the same tables that Spark's,
Trino's and DuckDB's Iceberg readers know) under ``namespace``, one per topic, created
from the first records and evolved as new fields appear.

Records are buffered per table and committed at most once per ``commit_interval``
(earlier when ``commit_size`` of Arrow data waits, and on shutdown), because every commit
adds metadata. Each commit stores the offsets it covers in its snapshot's summary
(``trunkline.offsets.<sink>``); after a restart the sink reads them back and resumes
there, so a record is never committed twice (exactly-once), even when the crash came
between the Iceberg commit and the hub's offset commit.

Append mode adds every record as a row. Upsert mode applies, per key, the last change of
the commit: deletes delete (tombstones, Debezium ``d``), ``t`` empties the table, and a
Debezium placeholder for an unchanged TOASTed value keeps the stored value. Upserts are
copy-on-write (pyiceberg rewrites the data files that hold changed keys), which every
Iceberg reader reads.

Maintenance runs with the commits (see :mod:`._iceberg_tables`): old metadata files are
deleted after each commit (keeping ``metadata_versions``), manifests are merged, and every
``expire_interval`` snapshots older than ``snapshot_max_age`` (beyond the last
``snapshots_keep``) are expired and the files only they referenced deleted.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BeforeValidator, Field, SecretStr

from trunkline.config import Duration, Size
from trunkline.connectors._sql import quote_identifier
from trunkline.connectors.base import Capabilities, ConnectorContext, LineageDataset, Sink
from trunkline.connectors.sinks._changes import OP, SEQ, collapse, read_changes
from trunkline.connectors.sinks._iceberg_tables import (
    MAINTAINED,
    ensure_properties,
    expire_snapshots,
    fit,
    offsets_key,
    offsets_text,
    stored_offsets,
)
from trunkline.connectors.sinks._tables import TableSinkSettings
from trunkline.connectors.sources.files import _check_types, arrow_type
from trunkline.engines.iceberg import catalog_columns
from trunkline.errors import ConnectorError, IncompatibleChange, TargetUnavailable
from trunkline.hub import FetchedBatch, TopicPartition

__all__ = ["IcebergSink"]


class IcebergConfig(TableSinkSettings):
    """Settings of the ``iceberg`` sink."""

    warehouse: str = Field(
        "lake",
        min_length=1,
        description="Where tables keep their data and metadata files: a folder (relative "
        "paths start at the project directory) or a URI such as s3://bucket/lake.",
    )
    catalog: SecretStr | None = Field(
        None,
        description="The SQL catalog, as an SQLAlchemy URL: sqlite:///path/catalog.db or "
        "postgresql://user:${PW}@host/db (psycopg 3). By default catalog.db in the warehouse.",
    )
    catalog_name: str = Field(
        "trunkline", min_length=1, description="The catalog's name inside the SQL catalog."
    )
    catalog_properties: dict[str, str] = Field(
        default_factory=dict,
        description="More pyiceberg catalog properties (s3.endpoint, s3.access-key-id...).",
    )
    namespace: str = Field("trunkline", min_length=1, description="The namespace of the tables.")
    types: Annotated[dict[str, str], BeforeValidator(_check_types)] = Field(
        default_factory=dict,
        alias="schema",
        description="Column types that override what the first records suggest, e.g. "
        "{amount: double} when early values happen to be whole numbers.",
    )
    commit_interval: Duration = Field(
        10_000,
        description="At most one commit per table this often: each commit adds metadata, so "
        "fewer, larger commits keep the table fast to read.",
    )
    commit_size: Size = Field(
        64 * 1024 * 1024,
        description="...but commit earlier once this much data (in memory, as Arrow) waits "
        "for a table.",
    )
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="Table properties to set (on top of those the sink sets for "
        "maintenance), e.g. {write.parquet.compression-codec: zstd}.",
    )
    metadata_versions: int = Field(
        10,
        ge=1,
        description="Old metadata files kept after each commit "
        "(write.metadata.previous-versions-max); older ones are deleted.",
    )
    snapshots_keep: int = Field(10, ge=1, description="Snapshots always kept when old ones expire.")
    snapshot_max_age: Duration = Field(
        3_600_000,
        description="Snapshots older than this (beyond snapshots_keep) expire: time travel "
        "reaches this far back.",
    )
    expire_interval: Duration = Field(
        600_000, description="How often old snapshots are expired (after a commit)."
    )

    def declared(self) -> dict[str, pa.DataType]:
        return {name: arrow_type(kind) for name, kind in self.types.items()}


@dataclass
class _Pending:
    """What waits to be committed to one table."""

    chunks: list[pa.Table] = field(default_factory=list)
    bytes: int = 0
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)
    since: float = 0.0

    @property
    def rows(self) -> int:
        return sum(c.num_rows for c in self.chunks)


def _translate(exc: Exception, doing: str) -> ConnectorError:
    from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
    from sqlalchemy.exc import OperationalError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, CommitFailedException | OperationalError | OSError | NoSuchTableError):
        # A concurrent commit, a locked catalog, a disk or a network: try again.
        return TargetUnavailable(f"{doing}: {text}")
    return ConnectorError(f"{doing}: {type(exc).__name__}: {text}", retryable=False)


class IcebergSink(Sink):
    """Copies topics into Iceberg tables; offsets live in the snapshot summaries."""

    Config: ClassVar[type[IcebergConfig]] = IcebergConfig
    # One writer per table: commits never race, and the stored offsets are the truth.
    capabilities: ClassVar[Capabilities] = Capabilities(
        exclusive=True, exactly_once=True, upsert=True
    )
    config: IcebergConfig

    def __init__(self, name: str, config: IcebergConfig) -> None:
        super().__init__(name, config)
        self._context: ConnectorContext | None = None
        self._catalog: Any = None
        self._tables: dict[str, Any] = {}
        self._pending: dict[str, _Pending] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._reported: dict[TopicPartition, int] = {}
        self._order = 0
        self._draining = False
        self._next_expiry: dict[str, float] = {}
        self._declared: dict[str, pa.DataType] = {}

    # -- lifecycle --------------------------------------------------------------------

    def open(self, context: ConnectorContext) -> None:
        from pyiceberg.catalog.sql import SqlCatalog

        self._context = context
        self._declared = self.config.declared()
        warehouse = self._warehouse(context)
        uri = self._catalog_uri(context, warehouse)
        try:
            self._catalog = SqlCatalog(
                self.config.catalog_name,
                **{"uri": uri, "warehouse": warehouse, **self.config.catalog_properties},
            )
            self._catalog.create_namespace_if_not_exists(self.config.namespace)
        except Exception as exc:
            self.close()
            raise _translate(exc, f"cannot open the Iceberg catalog of sink {self.name!r}") from exc
        context.register_system("iceberg", warehouse)

    def _warehouse(self, context: ConnectorContext) -> str:
        text = self.config.warehouse
        if "://" in text:
            return text
        folder = context.path(text)
        folder.mkdir(parents=True, exist_ok=True)
        return folder.resolve().as_uri()

    def _catalog_uri(self, context: ConnectorContext, warehouse: str) -> str:
        if self.config.catalog is not None:
            uri = self.config.catalog.get_secret_value()
            # psycopg 3 is the PostgreSQL driver trunkline installs (SQLAlchemy's default for
            # a bare postgresql:// URL is psycopg2).
            for plain in ("postgresql://", "postgres://"):
                if uri.startswith(plain):
                    return "postgresql+psycopg://" + uri.removeprefix(plain)
            return uri
        if not warehouse.startswith("file://"):
            raise ConnectorError(
                f"sink {self.name!r}: a warehouse at {warehouse} needs a 'catalog' (a SQL "
                "catalog URL): the default SQLite catalog lives in a local warehouse folder",
                retryable=False,
            )
        return f"sqlite:///{Path(context.path(self.config.warehouse)) / 'catalog.db'}"

    def close(self) -> None:
        self._pending.clear()
        self._tables.clear()
        if self._catalog is not None:
            catalog, self._catalog = self._catalog, None
            engine = getattr(catalog, "engine", None)
            if engine is not None:
                engine.dispose()

    def drain(self) -> None:
        self._draining = True

    def assign(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        stored: dict[TopicPartition, int] = {}
        for topic in {*self.config.topics, *(tp.topic for tp in partitions)}:
            name = self.config.table_for(topic)
            table = self._load(name)
            if table is None:
                continue
            for tp, offset in stored_offsets(table, self.name).items():
                stored[tp] = max(offset, stored.get(tp, -1))
        self._committed.update(stored)
        return {tp: stored[tp] for tp in partitions if tp in stored}

    def revoke(self, partitions: Collection[TopicPartition]) -> None:
        # Exclusive: partitions only move when the process stops; drop what is not durable.
        lost = set(partitions)
        for name, pending in list(self._pending.items()):
            if lost & set(pending.offsets):
                del self._pending[name]

    # -- writing ----------------------------------------------------------------------

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        tp = TopicPartition(batch.topic, batch.partition)
        name = self.config.table_for(topic)
        batch = self._not_committed(tp, batch)
        pending = self._pending.setdefault(name, _Pending())
        if not pending.chunks:
            pending.since = time.monotonic()
        pending.offsets[tp] = max(batch.next_offset, pending.offsets.get(tp, 0))
        pending.topics.add(topic)
        if not len(batch):
            return
        upsert = self.config.mode == "upsert"
        changes = read_changes(batch, self.config.format, self.config.key if upsert else ())
        bad = list(changes.bad)
        rows = changes.rows
        if not upsert and rows.num_rows:
            upserts = pc.equal(rows.column(OP), "u")
            self._count("deletes_ignored", rows.num_rows - int(pc.sum(upserts).as_py() or 0))
            rows = rows.filter(upserts)
        if upsert and rows.num_rows:
            rows, missing = _require_keys(rows, self.config.key, topic)
            bad += missing
        if rows.num_rows:
            rows, refused = self._fitted(name, topic, rows)
            bad += refused
        if bad:
            assert self._context is not None
            bad.sort()
            self._context.dead_letters.write_records(
                batch, [r for r, _ in bad], [e for _, e in bad], topic=topic
            )
        if rows.num_rows:
            # A global order across batches: the last change of a key wins at commit.
            order = pc.add(rows.column(SEQ), pa.scalar(self._order, pa.int64()))
            rows = rows.set_column(rows.column_names.index(SEQ), SEQ, order)
            if not upsert:
                rows = rows.drop_columns([SEQ, OP])
            pending.chunks.append(rows)
            pending.bytes += rows.nbytes
        self._order += len(batch)

    def _not_committed(self, tp: TopicPartition, batch: FetchedBatch) -> FetchedBatch:
        """``batch`` without records the table already holds (the check behind exactly-once)."""
        committed = self._committed.get(tp, -1)
        if not len(batch) or committed < 0:
            return batch
        offsets = batch.records.column("offset")
        if pc.min(offsets).as_py() >= committed:
            return batch
        if self._context is not None:
            self._context.log.warning(
                "%s: skipping records of %s[%d] below %d, already committed to Iceberg",
                self.name,
                tp.topic,
                tp.partition,
                committed,
            )
        keep = pc.greater_equal(offsets, committed)
        return FetchedBatch(
            batch.topic, batch.partition, batch.records.filter(keep), batch.next_offset
        )

    def _fitted(
        self, name: str, topic: str, rows: pa.Table
    ) -> tuple[pa.Table, list[tuple[int, str]]]:
        """``rows`` in the table's schema (creating or evolving the table); bad rows by seq."""
        helpers = [c for c in (SEQ, OP) if c in rows.column_names]
        data = rows.drop_columns(helpers)
        data = data.select([f.name for f in data.schema if not pa.types.is_null(f.type)])
        data = _with_declared(data, self._declared)
        table = self._load(name)
        try:
            if table is None:
                if not data.num_columns or not pc.any(pc.equal(rows.column(OP), "u")).as_py():
                    return rows.slice(0, 0), []  # nothing to create a table from yet
                table = self._create(name, data.schema)
            where = f"{self.config.namespace}.{name}"
            fitted = fit(data, table, where)
        except (IncompatibleChange, ConnectorError):
            raise
        except Exception as exc:
            raise _translate(exc, f"preparing Iceberg table {name!r} for {topic}") from exc
        seqs = rows.column(SEQ).combine_chunks()
        bad = [(int(seqs[i].as_py()), error) for i, error in fitted.bad]
        kept = rows
        if fitted.bad:
            kept = rows.filter(
                pa.array(np.isin(np.arange(rows.num_rows), [i for i, _ in fitted.bad], invert=True))
            )
        out = fitted.rows
        for helper in helpers:
            out = out.append_column(helper, kept.column(helper))
        if fitted.evolved:
            self._register(name, table)
        return out, bad

    def _load(self, name: str) -> Any:
        from pyiceberg.exceptions import NoSuchTableError

        table = self._tables.get(name)
        if table is not None:
            return table
        try:
            table = self._catalog.load_table((self.config.namespace, name))
        except NoSuchTableError:
            return None
        except Exception as exc:
            raise _translate(exc, f"loading Iceberg table {name!r}") from exc
        ensure_properties(table, self._properties())
        self._tables[name] = table
        return table

    def _properties(self) -> dict[str, str]:
        return {
            **MAINTAINED,
            "write.metadata.previous-versions-max": str(self.config.metadata_versions),
            **self.config.properties,
        }

    def _create(self, name: str, schema: pa.Schema) -> Any:
        table = self._catalog.create_table_if_not_exists(
            (self.config.namespace, name), schema=schema, properties=self._properties()
        )
        ensure_properties(table, self._properties())
        self._tables[name] = table
        self._register(name, table)
        return table

    # -- committing -------------------------------------------------------------------

    def snapshot(self) -> dict[TopicPartition, int]:
        now = time.monotonic()
        interval = self.config.commit_interval / 1000
        due = {
            name
            for name, p in self._pending.items()
            if self._draining or p.bytes >= self.config.commit_size or now - p.since >= interval
        }
        # Tables fed by one partition (the retry topic feeds several) commit together: its
        # offset may only move past records that every one of them holds.
        grew = True
        while grew:
            shared = {tp for n in due for tp in self._pending[n].offsets}
            more = {n for n, p in self._pending.items() if shared & set(p.offsets)} - due
            due |= more
            grew = bool(more)
        for name in sorted(due):
            self._commit(name, self._pending.pop(name))
        # Offsets move on also for records that left no rows (all bad, or filtered): the
        # table does not need a commit for them.
        for pending in self._pending.values():
            if not pending.chunks:
                self._committed.update(pending.offsets)
        self._pending = {n: p for n, p in self._pending.items() if p.chunks}
        report = {tp: o for tp, o in self._committed.items() if self._reported.get(tp, -1) < o}
        self._reported.update(report)
        return report

    def _commit(self, name: str, pending: _Pending) -> None:
        if not pending.chunks:
            self._committed.update(pending.offsets)
            return
        table = self._tables[name]
        started = time.perf_counter()
        try:
            table.refresh()
            stored = stored_offsets(table, self.name)
            for tp in pending.offsets:
                if stored.get(tp, -1) > self._committed.get(tp, -1):
                    raise ConnectorError(
                        f"Iceberg table {name!r} holds {tp.topic}[{tp.partition}] up to "
                        f"offset {stored[tp]}, beyond what this sink wrote: another process "
                        "committed to it; restarting from the table's offsets",
                        retryable=True,
                    )
            offsets = {**stored, **pending.offsets}
            properties = {offsets_key(self.name): offsets_text(offsets)}
            transaction = table.transaction()
            with warnings.catch_warnings():
                # "Delete operation did not match any records" is expected for new keys.
                warnings.simplefilter("ignore")
                if self.config.mode == "upsert":
                    self._apply_changes(transaction, table, pending, properties)
                else:
                    data = pa.concat_tables(pending.chunks, promote_options="permissive")
                    transaction.append(data, snapshot_properties=properties)
                transaction.commit_transaction()
        except ConnectorError:
            raise
        except Exception as exc:
            raise _translate(
                exc, f"committing {pending.rows} rows to Iceberg table {name!r}"
            ) from exc
        self._committed.update(pending.offsets)
        self._count("commits", 1)
        self._count("rows_committed", pending.rows)
        if self._context is not None:
            self._context.metrics.gauge("commit_seconds", round(time.perf_counter() - started, 4))
        self._maintain(name, table)

    def _apply_changes(
        self, transaction: Any, table: Any, pending: _Pending, properties: dict[str, str]
    ) -> None:
        from pyiceberg.expressions import AlwaysTrue

        key = self.config.key
        changes = pa.concat_tables(pending.chunks, promote_options="permissive")
        net = collapse(changes, key)
        empty = table.current_snapshot() is None
        if net.truncated and not empty:
            transaction.delete(AlwaysTrue(), snapshot_properties=properties)
            empty = True
        rows = net.rows
        if not empty:
            if net.missing:
                rows = _keep_stored(table, rows, key, net.missing)
            transaction.delete(_match(net.touched, key), snapshot_properties=properties)
        # The snapshot of the append carries the offsets even when nothing is left to add.
        transaction.append(rows, snapshot_properties=properties)

    def _maintain(self, name: str, table: Any) -> None:
        now = time.monotonic()
        if now < self._next_expiry.get(name, 0.0):
            return
        self._next_expiry[name] = now + self.config.expire_interval / 1000
        try:
            expired, deleted = expire_snapshots(
                table, keep=self.config.snapshots_keep, max_age_ms=self.config.snapshot_max_age
            )
        except Exception as exc:
            # Maintenance failing must not stop the data: it is tried again next interval.
            if self._context is not None:
                self._context.log.warning(
                    "%s: expiring snapshots of %s failed: %s", self.name, name, exc
                )
            return
        self._count("snapshots_expired", expired)
        self._count("files_deleted", deleted)

    # -- catalog ----------------------------------------------------------------------

    def _count(self, name: str, value: float) -> None:
        if self._context is not None and value:
            self._context.metrics.count(name, value)

    def _register(self, name: str, table: Any) -> None:
        if self._context is None:
            return
        # The planner reads these as SQL types, so the names are the ones discovery gives
        # (``BIGINT``, not Iceberg's ``long``).
        columns = catalog_columns(table.schema())
        self._context.register_dataset(f"{self.config.namespace}.{name}", "table", columns=columns)

    def lineage(self) -> tuple[LineageDataset, ...]:
        namespace = self.config.namespace
        return tuple(
            LineageDataset(t, f"{namespace}.{self.config.table_for(t)}") for t in self.topics()
        )


def _with_declared(data: pa.Table, declared: dict[str, pa.DataType]) -> pa.Table:
    for name, kind in declared.items():
        if name in data.column_names and data.schema.field(name).type != kind:
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                i = data.column_names.index(name)
                data = data.set_column(i, pa.field(name, kind), data.column(i).cast(kind))
    return data


def _require_keys(
    rows: pa.Table, key: tuple[str, ...], topic: str
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Rows with every key column; the others, by seq, with why."""
    absent = [k for k in key if k not in rows.column_names]
    truncates = pc.equal(rows.column(OP), "t")
    if absent:
        if pc.any(pc.equal(rows.column(OP), "u")).as_py():
            fields = ", ".join(c for c in rows.column_names if c not in (SEQ, OP))
            raise IncompatibleChange(
                f"mode upsert with key {list(key)}, but the records of topic {topic!r} have "
                f"no field {absent[0]!r}; their fields: {fields or 'none'}"
            )
        keep = truncates
    else:
        keep = pc.invert(pc.is_null(rows.column(key[0])))
        for k in key[1:]:
            keep = pc.and_(keep, pc.invert(pc.is_null(rows.column(k))))
        keep = pc.or_(keep, truncates)
    if pc.all(keep).as_py():
        return rows, []
    error = f"a value for each key column ({', '.join(key)}) is needed, found none"
    seqs = pc.filter(rows.column(SEQ), pc.invert(keep)).to_pylist()
    return rows.filter(keep), [(int(s), error) for s in seqs]


def _match(keys: pa.Table, key: tuple[str, ...]) -> Any:
    """A filter for the rows of ``keys``; with one key column also bounded by its range,
    so that files whose key range does not overlap are not even opened."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual
    from pyiceberg.table.upsert_util import create_match_filter

    matches = create_match_filter(keys, list(key))
    if len(key) == 1 and keys.num_rows:
        column = keys.column(key[0])
        low, high = pc.min(column).as_py(), pc.max(column).as_py()
        if low is not None and high is not None:
            bounds = And(
                GreaterThanOrEqual(term=key[0], value=low), LessThanOrEqual(term=key[0], value=high)
            )
            return And(bounds, matches)
    return matches


def _keep_stored(
    table: Any, rows: pa.Table, key: tuple[str, ...], missing: dict[str, pa.Array]
) -> pa.Table:
    """Fill columns whose value was a TOAST placeholder with the value the table holds."""
    from pyiceberg.table.upsert_util import create_match_filter

    needed = missing[next(iter(missing))]
    for flags in list(missing.values())[1:]:
        needed = pc.or_(needed, flags)
    wanted = rows.filter(needed).select(list(key))
    if not wanted.num_rows:
        return rows
    stored = (
        table.scan(row_filter=create_match_filter(wanted, list(key)))
        .select(*key, *missing)
        .to_arrow()
    )
    q = quote_identifier
    flagged = rows
    for i, flags in enumerate(missing.values()):
        flagged = flagged.append_column(f"__m{i}", flags)
    on = " AND ".join(f"r.{q(k)} IS NOT DISTINCT FROM s.{q(k)}" for k in key)
    replaced = ", ".join(
        f"CASE WHEN r.__m{i} THEN s.{q(c)} ELSE r.{q(c)} END AS {q(c)}"
        for i, c in enumerate(missing)
    )
    names = ", ".join(q(c) for c in rows.column_names)
    con = duckdb.connect()
    try:
        con.register("r", flagged)
        con.register("s", stored)
        query = f"SELECT r.* REPLACE ({replaced}) FROM r LEFT JOIN s ON {on}"  # noqa: S608
        return con.sql(f"SELECT {names} FROM ({query})").to_arrow_table()  # noqa: S608
    finally:
        con.close()
