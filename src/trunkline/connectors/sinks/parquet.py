"""The ``parquet`` sink: topics into partitioned Parquet files of a folder, exactly once.

Example ``trunkline.yaml`` entry::

    sinks:
      lake:
        type: parquet
        path: lake
        topics: [orders]
        partition_by: ["date(ts)", country]
        target_file_size: 128MiB

Layout: ``<path>/<topic>/date=2026-11-25/country=DE/p<partition>-<first>-<next>.parquet``,
where ``first`` is the offset of the file's first record and ``next`` the offset after its
last one, in that topic partition. A file is written under a hidden temporary name and
renamed into place when it reaches ``target_file_size`` or has been open for
``roll_interval`` (fsynced before and after the rename). Only then do its offsets count
as written: the offsets the sink reports, and stores in ``<path>/_trunkline/<sink>/``,
never pass a file that is not in place.

After a crash the sink resumes from its stored offsets; files of the partition that start
at or after them were written after the last commit and are deleted before reading
resumes, so the records they held are written again exactly once.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import AfterValidator, Field

from trunkline.config import Duration, Size
from trunkline.config._problems import invalid
from trunkline.connectors.base import (
    Capabilities,
    ConnectorContext,
    LineageDataset,
    Sink,
    SinkSettings,
)
from trunkline.connectors.sinks._changes import OP, SEQ, ValueFormat, read_changes
from trunkline.errors import ConnectorError, TargetUnavailable
from trunkline.hub import FetchedBatch, TopicPartition

__all__ = ["ParquetSink", "PartitionExpr"]

_EXPR = re.compile(r"^\s*(?:(date|year|month|day|hour)\s*\(\s*([^()]+?)\s*\)|([^()]+?))\s*$")
_FORMATS = {"date": "%Y-%m-%d", "year": "%Y", "month": "%m", "day": "%d", "hour": "%H"}
_NULL = "__HIVE_DEFAULT_PARTITION__"
_FILE = re.compile(r"^p(\d+)-(\d{20})-(\d{20})\.parquet$")


@dataclass(frozen=True, slots=True)
class PartitionExpr:
    """One ``partition_by`` entry: a column, or ``date|year|month|day|hour(column)``.

    Example:
        >>> PartitionExpr.parse("date(ts)")
        PartitionExpr(function='date', column='ts')
        >>> PartitionExpr.parse("country").directory_key
        'country'
    """

    function: str | None
    column: str

    @classmethod
    def parse(cls, text: str) -> PartitionExpr:
        match = _EXPR.match(text)
        if not match:
            raise ValueError(text)
        if match.group(1):
            return cls(match.group(1), match.group(2))
        return cls(None, match.group(3).strip())

    @property
    def directory_key(self) -> str:
        return self.function or self.column

    def values(self, rows: pa.Table) -> pa.Array:
        """The directory value of each row, as text (vectorised)."""
        if self.column not in rows.column_names:
            return pa.nulls(rows.num_rows, pa.string())
        column = rows.column(self.column).combine_chunks()
        if self.function is None:
            if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
                return pc.strftime(column, "%Y-%m-%d")
            return column.cast(pa.string())
        if pa.types.is_string(column.type):
            column = column.cast(pa.timestamp("us", tz="UTC"))
        if pa.types.is_date(column.type):
            column = column.cast(pa.timestamp("s"))
        return pc.strftime(column, _FORMATS[self.function])


def _check_partitioning(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        try:
            PartitionExpr.parse(value)
        except ValueError:
            raise invalid(
                "a column name or date(column), year(...), month(...), day(...), hour(...)"
            ) from None
    return values


class ParquetConfig(SinkSettings):
    """Settings of the ``parquet`` sink."""

    path: Path = Field(
        description="The folder the files go in; relative paths start at the project directory."
    )
    partition_by: Annotated[tuple[str, ...], AfterValidator(_check_partitioning)] = Field(
        (),
        description="Folders per value: a column, or date(col), year(col), month(col), "
        "day(col), hour(col) of a timestamp column, e.g. ['date(ts)', country].",
    )
    target_file_size: Size = Field(
        128 * 1024 * 1024, description="A file is closed and put in place at this size..."
    )
    roll_interval: Duration = Field(
        60_000,
        description="...or once it has been open this long. Records count as written (and "
        "their offsets are committed) only once their file is in place.",
    )
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = Field(
        "zstd", description="Compression of the Parquet files."
    )
    format: ValueFormat = Field(
        "auto",
        description="What the values are: json, debezium (the 'after' rows are written) or auto.",
    )


def _escape(values: pa.Array) -> pa.Array:
    """Directory-safe text (Hive's escaping for the characters that matter in a path)."""
    for char, code in (("%", "%25"), ("/", "%2F"), ("=", "%3D"), ("\\", "%5C"), ("\n", "%0A")):
        values = pc.replace_substring(values, char, code)
    values = pc.replace_substring_regex(values, r"^\.", "%2E")
    return pc.fill_null(values, _NULL)


def _fit(rows: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``rows`` in ``schema`` (absent columns as nulls), or None if they do not fit it."""
    if not set(rows.column_names) <= set(schema.names):
        return None
    columns = [
        rows.column(f.name) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
        for f in schema
    ]
    try:
        return pa.Table.from_arrays(columns, names=schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _OpenFile:
    """A file being written: the rows of one topic partition for one folder."""

    tp: TopicPartition
    folder: Path
    temp: Path
    writer: pq.ParquetWriter
    schema: pa.Schema
    first: int
    next: int
    opened: float
    rows: int = 0

    def size(self) -> int:
        try:
            return self.temp.stat().st_size
        except FileNotFoundError:
            return 0


class ParquetSink(Sink):
    """Writes topics as partitioned Parquet files; offsets are derived from files in place."""

    Config: ClassVar[type[ParquetConfig]] = ParquetConfig
    capabilities: ClassVar[Capabilities] = Capabilities(exactly_once=True)
    config: ParquetConfig

    def __init__(self, name: str, config: ParquetConfig) -> None:
        super().__init__(name, config)
        self.root = Path(config.path)
        self._context: ConnectorContext | None = None
        self._exprs = [PartitionExpr.parse(p) for p in config.partition_by]
        self._open: dict[tuple[TopicPartition, Path], _OpenFile] = {}
        self._written: dict[TopicPartition, int] = {}
        self._stored: dict[TopicPartition, int] = {}

    # -- lifecycle --------------------------------------------------------------------

    def open(self, context: ConnectorContext) -> None:
        self._context = context
        self.root = context.path(self.config.path)
        try:
            self._offsets_dir().mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TargetUnavailable(f"cannot create {self._offsets_dir()}: {exc}") from exc
        context.register_system("parquet", str(self.root))
        # Only the description: the runtime records the edges topic -> files (lineage()).
        for topic in self.topics():
            context.register_dataset(topic, "fileset", description=f"Parquet files of {topic}")

    def close(self) -> None:
        for key in list(self._open):
            self._abort(key)

    def drain(self) -> None:
        for key in list(self._open):
            self._roll(key)

    def _offsets_dir(self) -> Path:
        return self.root / "_trunkline" / self.name

    def _marker(self, tp: TopicPartition) -> Path:
        return self._offsets_dir() / f"{tp.topic}.{tp.partition}.json"

    def assign(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        resume = {}
        for tp in partitions:
            stored = self._read_marker(tp)
            if stored is not None:
                resume[tp] = stored
                self._stored[tp] = stored
            self._remove_uncommitted(tp, stored or 0)
        return resume

    def revoke(self, partitions: Collection[TopicPartition]) -> None:
        for key in [k for k in self._open if k[0] in partitions]:
            self._abort(key)
        for tp in partitions:
            self._written.pop(tp, None)
            self._stored.pop(tp, None)

    def _read_marker(self, tp: TopicPartition) -> int | None:
        try:
            return int(json.loads(self._marker(tp).read_text())["next_offset"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectorError(
                f"offsets file {self._marker(tp)} is damaged ({exc}); the files of "
                f"{tp.topic}[{tp.partition}] cannot be trusted to be complete",
                retryable=False,
            ) from exc

    def _remove_uncommitted(self, tp: TopicPartition, committed: int) -> None:
        """Delete files of ``tp`` written after the last commit, and abandoned temp files."""
        topic_dir = self.root / tp.topic
        if not topic_dir.is_dir():
            return
        prefix = f"p{tp.partition}-"
        for path in topic_dir.rglob(f"*{prefix}*"):
            name = path.name
            if name.startswith(f".{prefix}") and name.endswith(".inprogress"):
                path.unlink(missing_ok=True)
                continue
            match = _FILE.match(name)
            if match and int(match.group(1)) == tp.partition and int(match.group(2)) >= committed:
                path.unlink(missing_ok=True)
                if self._context is not None:
                    self._context.log.info("removed %s, written after the last commit", path)

    # -- writing ----------------------------------------------------------------------

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        changes = read_changes(batch, self.config.format)
        tp = TopicPartition(batch.topic, batch.partition)
        if changes.bad and self._context is not None:
            bad = sorted(changes.bad)
            self._context.dead_letters.write_records(
                batch, [r for r, _ in bad], [e for _, e in bad], topic=topic
            )
        rows = changes.rows
        if rows.num_rows:
            upserts = pc.equal(rows.column(OP), "u")
            if self._context is not None:
                self._context.metrics.count(
                    "deletes_ignored", rows.num_rows - int(pc.sum(upserts).as_py() or 0)
                )
            rows = rows.filter(upserts)
        if rows.num_rows:
            offsets = batch.records.column("offset").combine_chunks().take(rows.column(SEQ))
            data = rows.drop_columns([SEQ, OP])
            data = data.select(
                [f.name for f in data.schema if not pa.types.is_null(f.type)] or data.column_names
            )
            try:
                self._write(tp, topic, data, offsets)
            except OSError as exc:
                raise TargetUnavailable(f"writing {topic} to {self.root}: {exc}") from exc
        self._written[tp] = batch.next_offset

    def _write(self, tp: TopicPartition, topic: str, data: pa.Table, offsets: pa.Array) -> None:
        if self._exprs:
            parts = [f"{e.directory_key}=" for e in self._exprs]
            values = [_escape(e.values(data)) for e in self._exprs]
            joined = pc.binary_join_element_wise(
                *[
                    pc.binary_join_element_wise(pa.scalar(p), v, "")
                    for p, v in zip(parts, values, strict=True)
                ],
                "/",
            )
            encoded = joined.dictionary_encode()
            folders = encoded.dictionary.to_pylist()
            indices = encoded.indices.to_numpy(zero_copy_only=False)
            groups = [(Path(folders[i]), np.flatnonzero(indices == i)) for i in range(len(folders))]
        else:
            groups = [(Path(), np.arange(data.num_rows))]
        for folder, rows in groups:
            if len(rows) == data.num_rows:
                part, part_offsets = data, offsets
            else:
                take = pa.array(rows)
                part, part_offsets = data.take(take), offsets.take(take)
            self._append(tp, self.root / topic / folder, part, part_offsets)

    def _append(self, tp: TopicPartition, folder: Path, rows: pa.Table, offsets: pa.Array) -> None:
        key = (tp, folder)
        current = self._open.get(key)
        if current is not None and rows.schema != current.schema:
            fitted = _fit(rows, current.schema)
            if fitted is None:
                # New columns or types: this file ends here, the next one has the new schema.
                self._roll(key)
                current = None
            else:
                rows = fitted
        first, last = int(offsets[0].as_py()), int(offsets[-1].as_py())
        if current is None:
            folder.mkdir(parents=True, exist_ok=True)
            temp = folder / f".p{tp.partition}-{first:020d}.{uuid.uuid4().hex}.inprogress"
            compression = None if self.config.compression == "none" else self.config.compression
            writer = pq.ParquetWriter(temp, rows.schema, compression=compression)
            current = _OpenFile(
                tp, folder, temp, writer, rows.schema, first, first, time.monotonic()
            )
            self._open[key] = current
        current.writer.write_table(rows)
        current.rows += rows.num_rows
        current.next = last + 1
        if current.size() >= self.config.target_file_size:
            self._roll(key)

    def _roll(self, key: tuple[TopicPartition, Path]) -> None:
        """Close a file and put it in place under its final name."""
        current = self._open.pop(key)
        current.writer.close()
        final = (
            current.folder
            / f"p{current.tp.partition}-{current.first:020d}-{current.next:020d}.parquet"
        )
        _fsync(current.temp)
        current.temp.replace(final)
        _fsync(current.folder)
        if self._context is not None:
            self._context.metrics.count("files")

    def _abort(self, key: tuple[TopicPartition, Path]) -> None:
        current = self._open.pop(key)
        try:
            current.writer.close()
        finally:
            current.temp.unlink(missing_ok=True)

    def snapshot(self) -> dict[TopicPartition, int]:
        now = time.monotonic()
        limit = self.config.roll_interval / 1000
        for key in [k for k, f in self._open.items() if now - f.opened >= limit]:
            self._roll(key)
        durable: dict[TopicPartition, int] = {}
        for tp, written in self._written.items():
            pending = [f.first for (t, _), f in self._open.items() if t == tp]
            offset = min(pending) if pending else written
            if offset > self._stored.get(tp, -1):
                durable[tp] = offset
        for tp, offset in durable.items():
            self._store(tp, offset)
        return durable

    def _store(self, tp: TopicPartition, offset: int) -> None:
        marker = self._marker(tp)
        temp = marker.with_name(f".{marker.name}.{uuid.uuid4().hex}.tmp")
        temp.write_text(json.dumps({"next_offset": offset, "stored_at": time.time()}))
        _fsync(temp)
        temp.replace(marker)
        _fsync(marker.parent)
        self._stored[tp] = offset

    def lineage(self) -> tuple[LineageDataset, ...]:
        return tuple(LineageDataset(t, t, "fileset") for t in self.topics())
