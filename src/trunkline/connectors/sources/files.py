"""The ``files`` source: CSV, JSON-lines and Parquet files from a folder, each read once.

Example ``trunkline.yaml`` entry::

    sources:
      orders_files:
        type: files
        path: data/incoming        # relative to the project directory
        glob: "orders-*.csv"
        topic: orders
        key: order_id              # the record key (one column, or a list of columns)
        schema: {amount: double}   # optional; anything not named is inferred

Files are taken in name order once they have not changed for ``settle``. Large files are
read in chunks of ``chunk_size`` (whole lines); the checkpoint holds the finished files
(path, size, mtime) and how far the current file has been read, so a restart continues
in the middle of a file. A file whose size or mtime changes after it was read counts as a
new file and is read again, whole.

Values go to the topic as JSON objects, one per row, encoded by DuckDB (vectorised). Rows
that cannot be read go to the dead-letter topic with their original bytes, the file name
and the line number (Parquet: the row group); a file that cannot be opened at all (a
truncated Parquet file) goes there as one record.
"""

from __future__ import annotations

import base64
import csv
import difflib
import hashlib
import io
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BeforeValidator, Field, field_validator, model_validator

from trunkline.config import ConfigModel, Duration, Size
from trunkline.config._problems import invalid
from trunkline.connectors._json import JsonEncoder
from trunkline.connectors.base import (
    Capabilities,
    ConnectorContext,
    DeadLetter,
    JSONValue,
    LineageDataset,
    Source,
    SourceBatch,
    SourceSettings,
    TopicName,
    settings_error,
)
from trunkline.connectors.sources._parse import BadLine, CsvFormat, Parsed, parse_csv, parse_jsonl

__all__ = ["FilesSource"]

#: Type names for ``schema:``, as users write them.
TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "text": pa.string(),
    "int": pa.int64(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "bigint": pa.int64(),
    "float": pa.float64(),
    "double": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: A file that cannot be opened goes to the dead-letter topic whole if it is this small.
_WHOLE_FILE_LIMIT = 1 << 20


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a ``schema:`` type name.

    Example:
        >>> arrow_type("decimal(12, 2)")
        Decimal128Type(decimal128(12, 2))
    """
    text = name.strip().lower()
    if text in TYPES:
        return TYPES[text]
    match = _DECIMAL.match(text)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    raise KeyError(name)


def _check_types(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    for column, kind in value.items():
        if not isinstance(kind, str):
            raise invalid("a type name such as string, int64, double or timestamp")
        try:
            arrow_type(kind)
        except KeyError:
            close = difflib.get_close_matches(kind.lower(), list(TYPES), n=1)
            known = ", ".join([*TYPES, "decimal(p,s)"])
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise invalid(
                message=f"unknown type {kind!r} for column {column!r}", hint=f"{hint}known: {known}"
            ) from None
    return value


def _as_tuple(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


class CsvOptions(ConfigModel):
    """How CSV files are written."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="The field separator.")
    quote_char: str | None = Field(
        '"', min_length=1, max_length=1, description="The quote character; null for none."
    )
    header: bool = Field(True, description="Whether the first line names the columns.")
    columns: tuple[str, ...] | None = Field(
        None, description="Column names, for files without a header line."
    )
    newlines_in_values: bool = Field(
        False,
        description="Whether quoted values may span lines. Files are then read whole, not "
        "in chunks.",
    )
    null_values: tuple[str, ...] = Field(("",), description="Texts that mean 'no value'.")

    @model_validator(mode="after")
    def _header_or_columns(self) -> Self:
        if not self.header and not self.columns:
            raise settings_error(
                type(self),
                "header",
                self.header,
                "files without a header line need their column names",
                "add columns: [a, b, ...]",
            )
        return self


Format = Literal["auto", "csv", "jsonl", "parquet"]


class FilesConfig(SourceSettings):
    """Settings of the ``files`` source."""

    path: Path = Field(
        description="The folder to watch; relative paths start at the project directory."
    )
    glob: str = Field(
        "*",
        description="Which files of the folder to read, e.g. '*.csv' or '**/*.parquet' "
        "(with subfolders).",
    )
    topic: TopicName = Field(description="The topic the rows are written to.")
    format: Format = Field(
        "auto",
        description="csv, jsonl (one JSON object per line) or parquet; 'auto' goes by the "
        "file extension.",
    )
    key: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = Field(
        (),
        description="Column(s) whose value is the record key: one column's text, or a JSON "
        "object of several columns. Records with one key stay in order.",
    )
    timestamp: str | None = Field(
        None, description="A column holding each row's time, used as the record timestamp."
    )
    types: Annotated[dict[str, str], BeforeValidator(_check_types)] = Field(
        default_factory=dict,
        alias="schema",
        description="Column types that override inference, e.g. {amount: 'decimal(12,2)', "
        "ts: timestamptz}. Types: " + ", ".join([*TYPES, "decimal(p,s)"]) + ".",
    )
    csv: CsvOptions | None = Field(None, description="How CSV files are written.")
    chunk_size: Size = Field(
        8 * 1024 * 1024,
        description="How much of a file is read at once (whole lines); also the unit of "
        "progress saved inside a large file.",
    )
    settle: Duration = Field(
        1000,
        description="A file is read once it has not changed for this long (files still "
        "being written are left alone).",
    )
    poll_interval: Duration = Field(1000, description="How often the folder is listed.")

    @field_validator("glob")
    @classmethod
    def _relative_glob(cls, value: str) -> str:
        if not value or value.startswith("/") or ".." in Path(value).parts:
            raise invalid("a pattern inside the folder, such as '*.csv'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.csv is not None and self.format in ("jsonl", "parquet"):
            raise settings_error(
                type(self),
                "csv",
                "csv",
                f"'csv' options do not apply to format {self.format!r}",
                "remove 'csv' or set format: csv",
            )
        return self

    def declared(self) -> dict[str, pa.DataType]:
        return {name: arrow_type(kind) for name, kind in self.types.items()}


@dataclass
class _Current:
    """The file being read and how far: bytes (CSV, JSON lines) or row groups (Parquet)."""

    path: str
    size: int
    mtime: int
    offset: int = 0
    line: int = 1
    rows: int = 0
    names: tuple[str, ...] = ()
    schema: str = ""  # the file's Arrow schema (IPC, base64) once its first chunk is read

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__, names=list(self.names))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Current:
        return cls(**{**data, "names": tuple(data.get("names", ()))})


def _schema_text(schema: pa.Schema | None) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode() if schema else ""


def _schema_of(text: str) -> pa.Schema | None:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text))) if text else None


class FilesSource(Source):
    """Reads new CSV, JSON-lines and Parquet files of a folder into a topic, each once."""

    Config: ClassVar[type[FilesConfig]] = FilesConfig
    capabilities: ClassVar[Capabilities] = Capabilities(exclusive=True, exactly_once=True)
    backlog_unit: ClassVar[str] = "bytes"

    config: FilesConfig

    def __init__(self, name: str, config: FilesConfig) -> None:
        super().__init__(name, config)
        self._context: ConnectorContext | None = None
        self._folder = Path()
        self._done: dict[str, tuple[int, int]] = {}
        self._current: _Current | None = None
        self._encoder: JsonEncoder | None = None
        self._pending: list[tuple[str, int, int]] = []
        self._next_scan = 0.0
        self._declared: dict[str, pa.DataType] = {}

    def topics(self) -> tuple[str, ...]:
        return (self.config.topic,)

    def open(self, context: ConnectorContext, state: JSONValue | None) -> None:
        self._context = context
        self._folder = context.path(self.config.path)
        self._declared = self.config.declared()
        self._encoder = JsonEncoder(key=self.config.key, timestamp=self.config.timestamp)
        state = state or {}
        self._done = {path: (int(s), int(m)) for path, (s, m) in state.get("done", {}).items()}
        current = state.get("current")
        self._current = _Current.from_json(current) if current else None
        context.register_system("files", str(self._folder))
        context.register_dataset(self.config.glob, "fileset", description="files read by trunkline")

    def lineage(self) -> tuple[LineageDataset, ...]:
        return (LineageDataset(self.config.topic, self.config.glob, "fileset"),)

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    def snapshot(self) -> JSONValue:
        return {
            "done": {path: list(stamp) for path, stamp in sorted(self._done.items())},
            "current": self._current.to_json() if self._current else None,
        }

    def backlog(self) -> float | None:
        pending = sum(size for _, size, _ in self._pending)
        if self._current is not None:
            pending += max(0, self._current.size - self._current.offset)
        return float(pending)

    # -- scanning ---------------------------------------------------------------------

    def _scan(self) -> None:
        now = time.time()
        if time.monotonic() < self._next_scan:
            return
        self._next_scan = time.monotonic() + self.config.poll_interval / 1000
        found: list[tuple[str, int, int]] = []
        if not self._folder.is_dir():
            self._pending = []
            return
        for path in sorted(self._folder.glob(self.config.glob)):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if not path.is_file() or path.name.startswith("."):
                continue
            rel = path.relative_to(self._folder).as_posix()
            stamp = (stat.st_size, stat.st_mtime_ns)
            if self._done.get(rel) == stamp:
                continue
            if now - stat.st_mtime < self.config.settle / 1000:
                continue  # still being written, maybe
            found.append((rel, stat.st_size, stat.st_mtime_ns))
        self._pending = found
        # Forget finished files that are gone, so that the checkpoint does not grow forever.
        for rel in [rel for rel in self._done if not (self._folder / rel).exists()]:
            del self._done[rel]

    def poll(self, timeout: float) -> SourceBatch | None:
        if self._current is None:
            self._scan()
            if not self._pending:
                time.sleep(min(timeout, self.config.poll_interval / 1000))
                return None
            rel, size, mtime = self._pending.pop(0)
            if rel in self._done:
                self._log(f"{rel} changed after it was read (size or mtime); reading it again")
            current = self._current = _Current(rel, size, mtime)
        current = self._current
        assert current is not None
        try:
            return self._read(current)
        except FileNotFoundError:
            self._log(f"{current.path} disappeared while being read; moving on")
            self._finish(current)
            return SourceBatch(self.config.topic, _empty(), position={"file": current.path})

    def _log(self, message: str) -> None:
        if self._context is not None:
            self._context.log.warning("%s", message)

    def _finish(self, current: _Current) -> None:
        self._done[current.path] = (current.size, current.mtime)
        self._current = None

    def _format(self, rel: str) -> str:
        if self.config.format != "auto":
            return self.config.format
        return _EXTENSIONS.get(Path(rel).suffix.lower(), "csv")

    # -- reading ----------------------------------------------------------------------

    def _read(self, current: _Current) -> SourceBatch:
        path = self._folder / current.path
        kind = self._format(current.path)
        if kind == "parquet":
            return self._read_parquet(path, current)
        key = _file_key(current)
        with open(path, "rb") as f:
            if kind == "csv" and current.offset == 0 and not current.names:
                self._read_header(f, current)
                missing = self._missing_columns(current.names)
                if missing:
                    letter = self._bad_file(path, current, missing)
                    self._finish(current)
                    return self._batch(current, _empty_rows(), key, [letter], [f"{key}:file"])
            f.seek(current.offset)
            whole = kind == "csv" and self._csv_options().newlines_in_values
            chunk = f.read() if whole else _read_lines(f, self.config.chunk_size)
        start_offset, first_line = current.offset, current.line
        schema = _schema_of(current.schema)
        parsed: Parsed
        if not chunk:
            parsed = Parsed(_empty_rows(), [], schema)
        elif kind == "csv":
            fmt = self._csv_format(current.names)
            parsed = parse_csv(chunk, first_line, fmt, schema, self._declared)
        else:
            parsed = parse_jsonl(chunk, first_line, schema, self._declared)
        current.offset += len(chunk)
        current.line += chunk.count(b"\n")
        current.schema = _schema_text(parsed.schema)
        letters = [self._bad_line(current.path, bad) for bad in parsed.bad]
        ids = [f"{key}:{start_offset}:L{bad.line}" for bad in parsed.bad]
        prefix = f"{key}:{start_offset}:"
        batch = self._batch(current, parsed.table, prefix, letters, ids)
        if not chunk or current.offset >= current.size:
            self._finish(current)
        return batch

    def _read_header(self, f: io.BufferedReader, current: _Current) -> None:
        options = self._csv_options()
        if not options.header:
            current.names = tuple(options.columns or ())
            return
        line = f.readline()
        current.offset = len(line)
        current.line = 2
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        reader = csv.reader([text], delimiter=options.delimiter, quotechar=options.quote_char)
        names = next(reader, [])
        current.names = tuple(n if n else f"column_{i + 1}" for i, n in enumerate(names))

    def _csv_options(self) -> CsvOptions:
        return self.config.csv or CsvOptions()

    def _csv_format(self, names: tuple[str, ...]) -> CsvFormat:
        options = self._csv_options()
        return CsvFormat(
            names=names,
            delimiter=options.delimiter,
            quote_char=options.quote_char,
            newlines_in_values=options.newlines_in_values,
            null_values=options.null_values,
        )

    def _read_parquet(self, path: Path, current: _Current) -> SourceBatch:
        key = _file_key(current)
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            letter = self._bad_file(path, current, f"not a readable Parquet file: {exc}")
            self._finish(current)
            return self._batch(current, _empty_rows(), f"{key}:", [letter], [f"{key}:file"])
        groups = parquet.num_row_groups
        group = current.offset
        if group >= groups:
            self._finish(current)
            return self._batch(current, _empty_rows(), f"{key}:", [], [])
        try:
            table = parquet.read_row_group(group)
        except (OSError, pa.ArrowException) as exc:
            letter = DeadLetter(
                value=None,
                error=f"row group {group} of {groups} cannot be read: {exc}",
                stage="source",
                origin=f"{current.path}#row-group-{group}",
                details={"file": current.path, "row_group": str(group)},
            )
            current.offset += 1
            if current.offset >= groups:
                self._finish(current)
            return self._batch(current, _empty_rows(), f"{key}:", [letter], [f"{key}:g{group}"])
        current.offset += 1
        current.rows += table.num_rows
        if current.offset >= groups:
            self._finish(current)
        problem = self._missing_columns(table.column_names)
        if not problem and self._declared:
            problem, table = _cast_declared(table, self._declared)
        if problem:
            letter = DeadLetter(
                value=None,
                error=problem,
                stage="source",
                origin=f"{current.path}#row-group-{group}",
                details={"file": current.path, "row_group": str(group)},
            )
            return self._batch(current, _empty_rows(), f"{key}:", [letter], [f"{key}:g{group}"])
        return self._batch(current, table, f"{key}:g{group}:", [], [])

    def _missing_columns(self, names: Sequence[str]) -> str:
        wanted = [*self.config.key, *([self.config.timestamp] if self.config.timestamp else [])]
        absent = [c for c in wanted if c not in names]
        if not absent:
            return ""
        return (
            f"column(s) {', '.join(map(repr, absent))} named in the settings are not in the "
            f"file; its columns: {', '.join(names)}"
        )

    def _batch(
        self,
        current: _Current,
        rows: pa.Table,
        prefix: str,
        letters: list[DeadLetter],
        letter_ids: list[str],
    ) -> SourceBatch:
        position = {"file": current.path, "line": current.line - 1}
        if not rows.num_rows or not rows.num_columns:
            return SourceBatch(
                self.config.topic,
                _empty(),
                position=position,
                ids=pa.array([], pa.binary()),
                dead_letters=tuple(letters),
                dead_letter_ids=tuple(letter_ids),
            )
        assert self._encoder is not None
        records = self._encoder.encode(rows)
        numbers = pc.cast(pa.array(np.arange(rows.num_rows, dtype=np.int64)), pa.string())
        ids = pc.binary_join_element_wise(pa.scalar(prefix), numbers, "").cast(pa.binary())
        return SourceBatch(
            self.config.topic,
            records,
            position=position,
            ids=ids,
            dead_letters=tuple(letters),
            dead_letter_ids=tuple(letter_ids),
        )

    def _bad_line(self, rel: str, bad: BadLine) -> DeadLetter:
        return DeadLetter(
            value=bad.text,
            error=bad.error,
            stage="source",
            origin=f"{rel}:{bad.line}",
            details={"file": rel, "line": str(bad.line)},
        )

    def _bad_file(self, path: Path, current: _Current, error: str) -> DeadLetter:
        details = {"file": current.path, "size": str(current.size)}
        value: bytes | None = None
        if current.size <= _WHOLE_FILE_LIMIT:
            value = path.read_bytes()
        else:
            details["value"] = "omitted: the file is larger than 1 MiB; it stays in place"
        return DeadLetter(
            value=value, error=error, stage="source", origin=current.path, details=details
        )


def _file_key(current: _Current) -> str:
    """A short identity of one version of a file, stable across restarts."""
    digest = hashlib.blake2b(
        f"{current.path}\0{current.size}\0{current.mtime}".encode(), digest_size=6
    )
    return digest.hexdigest()


def _read_lines(f: io.BufferedReader, size: int) -> bytes:
    """About ``size`` bytes of whole lines (more if one line is longer), or the rest."""
    data = f.read(size)
    if len(data) < size:
        return data  # the end of the file, whole (a last line without newline included)
    cut = data.rfind(b"\n")
    if cut >= 0:
        f.seek(cut + 1 - len(data), os.SEEK_CUR)
        return data[: cut + 1]
    parts = [data]
    while True:
        more = f.read(size)
        if not more:
            return b"".join(parts)
        cut = more.find(b"\n")
        if cut >= 0:
            f.seek(cut + 1 - len(more), os.SEEK_CUR)
            parts.append(more[: cut + 1])
            return b"".join(parts)
        parts.append(more)


def _cast_declared(table: pa.Table, declared: Mapping[str, pa.DataType]) -> tuple[str, pa.Table]:
    """``table`` with the declared types, or why it cannot have them."""
    for name, kind in declared.items():
        if name in table.column_names and table.schema.field(name).type != kind:
            i = table.column_names.index(name)
            try:
                table = table.set_column(i, name, table.column(i).cast(kind))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                return (
                    f"column {name!r} cannot be read as {kind} (declared in 'schema'): {exc}",
                    table,
                )
    return "", table


def _empty() -> pa.Table:
    return pa.table({"value": pa.array([], pa.binary())})


def _empty_rows() -> pa.Table:
    return pa.table({})
