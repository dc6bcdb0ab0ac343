"""Settings that sinks writing topics into tables share: which table, append or upsert, key."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, Self

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from trunkline.connectors.base import (
    ConnectorContext,
    LineageDataset,
    Sink,
    SinkSettings,
    settings_error,
)
from trunkline.connectors.sinks._changes import OP, ValueFormat, read_changes
from trunkline.errors import ConnectorError
from trunkline.hub import FetchedBatch, TopicPartition
from trunkline.meta import Column

__all__ = ["DatabaseSink", "DatabaseSinkSettings", "TableSinkSettings", "table_name"]


def table_name(topic: str) -> str:
    """The default table of a topic: its name with every character but letters, digits and
    ``_`` replaced by ``_`` (``shop.public.orders`` -> ``shop_public_orders``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", topic)


class TableSinkSettings(SinkSettings):
    """Settings of a sink that writes each topic into a table (``duckdb``, ``iceberg``...)."""

    table: str | None = Field(
        None,
        min_length=1,
        description="The table of the (one) topic; by default the topic's name with '.' and "
        "'-' turned into '_'.",
    )
    tables: dict[str, str] = Field(
        default_factory=dict, description="Table per topic, for sinks that read several topics."
    )
    mode: Literal["append", "upsert"] = Field(
        "append",
        description="append: every record becomes a row. upsert: one row per key, replaced "
        "by newer records and removed by deletes (tombstones, Debezium 'd' events).",
    )
    key: tuple[str, ...] = Field(
        (), description="The primary key columns (upsert mode only); must be in the values."
    )
    format: ValueFormat = Field(
        "auto",
        description="What the values are: json (one row per value), debezium (change "
        "events with before/after/op) or auto (decide by their fields).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode == "upsert" and not self.key:
            raise settings_error(
                type(self),
                "mode",
                self.mode,
                "mode 'upsert' needs the primary key columns in 'key'",
                "add key: [id] (the columns that identify a row)",
            )
        if self.mode == "append" and self.key:
            raise settings_error(
                type(self),
                "key",
                list(self.key),
                "'key' only applies to mode 'upsert'; append mode keeps every record",
                "set mode: upsert, or remove key",
            )
        if self.table is not None and len(self.topics) > 1:
            raise settings_error(
                type(self),
                "table",
                self.table,
                f"'table' names the table of one topic; this sink reads {len(self.topics)}",
                "use tables: {topic: table} instead",
            )
        unknown = sorted(set(self.tables) - set(self.topics))
        if unknown:
            raise settings_error(
                type(self),
                "tables",
                unknown[0],
                f"'tables' names topic {unknown[0]!r}, which is not in 'topics'",
            )
        return self

    def table_for(self, topic: str) -> str:
        if topic in self.tables:
            return self.tables[topic]
        if self.table is not None:
            return self.table
        return table_name(topic)


class DatabaseSinkSettings(TableSinkSettings):
    """Settings of a sink writing into the tables of one schema of a database."""

    db_schema: str = Field(min_length=1, description="The schema the tables go in.")


class DatabaseSink(Sink):
    """What the sinks writing into a database's tables (``duckdb``, ``postgres``) share:
    the tables' columns as last seen, offsets written so far, dead letters, counters, the
    catalog entries of their tables (the runtime records the edges :meth:`lineage` names),
    and applying batches in the background.

    A batch is decoded in :meth:`write_batch` (the caller's thread) and applied, in one
    transaction with its offsets, by a worker thread (:meth:`_submit`), one batch in flight:
    while the database applies batch N the runtime fetches and decodes batch N+1.
    :meth:`durable` reports the batches applied so far without waiting; :meth:`snapshot`
    waits for the one in flight. An error of a batch surfaces at the next call that waits
    (``write_batch``, ``snapshot``, ``durable`` once it is known); the runtime then restarts
    the sink, which resumes from the offsets stored in its target.
    """

    config: DatabaseSinkSettings

    def __init__(self, name: str, config: DatabaseSinkSettings) -> None:
        super().__init__(name, config)
        self._context: ConnectorContext | None = None
        #: Columns (name -> SQL type) of each table, as last read or changed.
        self._columns: dict[str, dict[str, str]] = {}
        #: The next offset of each partition written (and committed with the data).
        self._done: dict[TopicPartition, int] = {}
        self._done_lock = threading.Lock()
        self._linked: set[str] = set()
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def _changes(self, batch: FetchedBatch) -> tuple[pa.Table, list[tuple[int, str]]]:
        """The batch's changes (:func:`~trunkline.connectors.sinks._changes.read_changes`)
        and the records that could not be read; in append mode deletes are counted and left
        out."""
        upsert = self.config.mode == "upsert"
        changes = read_changes(batch, self.config.format, self.config.key if upsert else ())
        rows = changes.rows
        if not upsert and rows.num_rows:
            inserts = pc.equal(rows.column(OP), "u")
            # Only inserts (the usual case) need no filter, which would copy every column.
            if not pc.all(inserts).as_py():
                kept = rows.filter(inserts)
                self._count("deletes_ignored", rows.num_rows - kept.num_rows)
                rows = kept
        return rows, list(changes.bad)

    # -- applying in the background -----------------------------------------------------

    def _start_worker(self) -> None:
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"sink-{self.name}-apply")

    def _stop_worker(self) -> None:
        """Let the batch in flight finish; work not snapshotted may be dropped."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.shutdown(wait=True, cancel_futures=True)
        self._pending = None

    def _submit(self, apply: Callable[..., None], *args: Any) -> None:
        """Run ``apply(*args)`` in the worker once the batch before it is applied; raises
        what that one raised. ``apply`` calls :meth:`_applied` when its transaction is in."""
        self._wait()
        if self._worker is None:
            raise ConnectorError(f"the sink {self.name!r} is not open", retryable=True)
        self._pending = self._worker.submit(apply, *args)

    def _wait(self) -> None:
        """Until the batch in flight is applied; raises what applying it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _applied(self, tp: TopicPartition, next_offset: int, seconds: float) -> None:
        """A batch's transaction is in; ``seconds`` it took (``trunkline status`` shows it
        as the checkpoint's duration: the offsets are stored in that transaction)."""
        with self._done_lock:
            self._done[tp] = next_offset
        if self._context is not None:
            self._context.metrics.gauge("checkpoint_seconds", round(seconds, 4))

    def _take_done(self) -> dict[TopicPartition, int]:
        with self._done_lock:
            done, self._done = self._done, {}
        return done

    def snapshot(self) -> dict[TopicPartition, int]:
        # Every batch is applied in its own transaction: once the one in flight is in, all
        # that was written is durable.
        self._wait()
        return self._take_done()

    def durable(self) -> dict[TopicPartition, int]:
        pending = self._pending
        if pending is not None and pending.done():
            self._wait()  # its error, if it failed
        return self._take_done()

    def revoke(self, partitions: Collection[TopicPartition]) -> None:
        self._wait()
        with self._done_lock:
            for tp in partitions:
                self._done.pop(tp, None)

    def _dead_letter(self, batch: FetchedBatch, topic: str, bad: list[tuple[int, str]]) -> None:
        assert self._context is not None
        bad.sort()
        self._context.dead_letters.write_records(
            batch, [row for row, _ in bad], [error for _, error in bad], topic=topic
        )

    def _count(self, name: str, value: float) -> None:
        if self._context is not None and value:
            self._context.metrics.count(name, value)

    def _register(self, table: str, columns: Mapping[str, str]) -> None:
        if self._context is not None:
            self._context.register_dataset(
                f"{self.config.db_schema}.{table}",
                "table",
                columns=[Column(name, kind) for name, kind in columns.items()],
            )

    def _link(self, topic: str, table: str) -> None:
        """Register a table this run writes but did not create (its columns, once)."""
        if topic in self._linked or self._context is None:
            return
        self._linked.add(topic)
        if table in self._columns:
            self._register(table, self._columns[table])

    def lineage(self) -> tuple[LineageDataset, ...]:
        schema, table = self.config.db_schema, self.config.table_for
        return tuple(LineageDataset(t, f"{schema}.{table(t)}") for t in self.topics())
