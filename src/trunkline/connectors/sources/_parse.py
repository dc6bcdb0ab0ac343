"""Parsing one chunk of a CSV or JSON-lines file into Arrow, with its bad lines set aside.

A chunk is whole lines of a file (the files source cuts chunks at newlines). The good path
is one vectorised ``pyarrow.csv`` / ``pyarrow.json`` call. CSV rows with the wrong number of
fields come out of pyarrow's ``invalid_row_handler``; anything else that makes a parse fail
(a value that does not convert, a line that is not JSON) sends the chunk down a bisection
over its lines, which isolates each bad line with about two parses of the chunk per bad
line, and no per-row Python on the lines that are fine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pj

from trunkline.connectors._json import concat_tables, promote_timestamps

__all__ = ["BadLine", "CsvFormat", "Parsed", "parse_csv", "parse_jsonl"]

#: Ranges of at most this many lines are parsed line by line when they fail.
_SMALL = 8


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that could not be read: its 1-based number in the file, its bytes, why."""

    line: int
    text: bytes
    error: str


@dataclass
class Parsed:
    """The good rows of a chunk (in file order), the bad lines, and the schema now in use."""

    table: pa.Table
    bad: list[BadLine] = field(default_factory=list)
    schema: pa.Schema | None = None


@dataclass(frozen=True, slots=True)
class CsvFormat:
    """How a CSV file is written, and its column names (from the header or the settings)."""

    names: tuple[str, ...]
    delimiter: str = ","
    quote_char: str | None = '"'
    newlines_in_values: bool = False
    null_values: tuple[str, ...] = ("",)


class _Lines:
    """Where each line of a chunk starts, for cutting it by line and numbering bad lines."""

    def __init__(self, chunk: bytes, first_line: int) -> None:
        self.chunk = chunk
        self.first_line = first_line
        newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
        starts = np.concatenate([[0], newlines + 1])
        if len(starts) > 1 and starts[-1] >= len(chunk):
            starts = starts[:-1]  # the chunk ends with a newline: no line after it
        self.starts = starts.astype(np.int64)
        self.ends = np.append(self.starts[1:], len(chunk))

    def __len__(self) -> int:
        return len(self.starts)

    def span(self, a: int, b: int) -> bytes:
        return self.chunk[int(self.starts[a]) : int(self.ends[b - 1])]

    def text(self, i: int) -> bytes:
        return self.chunk[int(self.starts[i]) : int(self.ends[i])].rstrip(b"\r\n")

    def number(self, i: int) -> int:
        return self.first_line + i

    def without(self, numbers: set[int]) -> bytes:
        """The chunk without the lines numbered ``numbers`` (file line numbers)."""
        keep = [
            self.chunk[int(self.starts[i]) : int(self.ends[i])]
            for i in range(len(self))
            if self.number(i) not in numbers
        ]
        return b"".join(keep)

    def nonempty(self, a: int, b: int) -> np.ndarray:
        """Line indexes in [a, b) that are not blank (pyarrow skips blank lines)."""
        lengths = self.ends[a:b] - self.starts[a:b]
        blank = np.zeros(b - a, dtype=bool)
        for width in (1, 2):  # "\n" or "\r\n"
            candidates = np.flatnonzero(lengths == width)
            for j in candidates:
                start = int(self.starts[a + j])
                blank[j] = self.chunk[start : start + width].strip() == b""
        blank |= lengths == 0
        return np.arange(a, b)[~blank]


def _bisect(
    lines: _Lines,
    a: int,
    b: int,
    parse: Callable[[bytes, list[tuple[int, str]]], pa.Table],
    bad: list[BadLine],
) -> list[pa.Table]:
    """Parse lines [a, b); on failure split the range and recurse. Output keeps line order."""
    if b <= a:
        return []
    invalid: list[tuple[int, str]] = []
    try:
        table = parse(lines.span(a, b), invalid)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        if b - a == 1:
            text = lines.text(a)
            if text.strip():
                bad.append(BadLine(lines.number(a), text, _short(exc)))
            return []
        if b - a <= _SMALL:
            return [t for i in range(a, b) for t in _bisect(lines, i, i + 1, parse, bad)]
        middle = (a + b) // 2
        return _bisect(lines, a, middle, parse, bad) + _bisect(lines, middle, b, parse, bad)
    if invalid:
        rows = lines.nonempty(a, b)
        for number, error in invalid:
            i = int(rows[number - 1]) if 0 < number <= len(rows) else a
            bad.append(BadLine(lines.number(i), lines.text(i), error))
    return [table]


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("JSON parse error: ", "CSV parse error: "):
        text = text.removeprefix(prefix)
    return text.removesuffix(" in row 0")


def _concat(tables: list[pa.Table], schema: pa.Schema | None) -> pa.Table:
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return pa.table({}) if schema is None else schema.empty_table()
    return concat_tables(tables)


def _parse_chunk(
    lines: _Lines, parse: Callable[..., pa.Table], bad: list[BadLine], infer: bool
) -> list[pa.Table]:
    """The fast path, else bisection; when inferring, the good lines are parsed together
    again so that their types are inferred once, from all of them."""
    tables = _bisect_fast(lines, parse, bad)
    if tables is not None:
        return tables
    tables = _bisect(lines, 0, len(lines), parse, bad)
    if infer and bad and len(tables) > 1:
        good = lines.without({b.line for b in bad})
        try:
            return [parse(good, [])]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    return tables


def _no_null_types(schema: pa.Schema) -> pa.Schema:
    # A column empty in the first chunk would be typed "null" and refuse every later value.
    return pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in schema]
    )


def _widened(schema: pa.Schema, inferred: pa.Schema) -> pa.Schema | None:
    """``schema`` with integer columns widened to float where ``inferred`` found floats."""
    changed = False
    fields = []
    for f in schema:
        other = inferred.field(f.name) if f.name in inferred.names else None
        if other is not None and pa.types.is_integer(f.type) and pa.types.is_floating(other.type):
            fields.append(pa.field(f.name, pa.float64()))
            changed = True
        else:
            fields.append(f)
    return pa.schema(fields) if changed else None


def parse_csv(
    chunk: bytes,
    first_line: int,
    fmt: CsvFormat,
    schema: pa.Schema | None,
    declared: Mapping[str, pa.DataType],
) -> Parsed:
    """Parse whole CSV lines (no header). ``schema`` is the file's, from its first chunk.

    Args:
        chunk: Whole lines of the file.
        first_line: The 1-based line number of the chunk's first line.
        fmt: Dialect and column names.
        schema: Column types found so far in this file (None: infer them from this chunk).
        declared: Types given in the settings; they win over inference.
    """
    parse_options = pcsv.ParseOptions(
        delimiter=fmt.delimiter,
        quote_char=fmt.quote_char if fmt.quote_char is not None else False,
        newlines_in_values=fmt.newlines_in_values,
    )

    def parse_with(types: Mapping[str, pa.DataType]) -> Callable[..., pa.Table]:
        def parse(data: bytes, invalid: list[tuple[int, str]]) -> pa.Table:
            def handler(row: pcsv.InvalidRow) -> str:
                invalid.append(
                    (
                        row.number or 0,
                        f"expected {row.expected_columns} fields, found {row.actual_columns}",
                    )
                )
                return "skip"

            options = pcsv.ParseOptions(
                delimiter=parse_options.delimiter,
                quote_char=parse_options.quote_char,
                newlines_in_values=parse_options.newlines_in_values,
                invalid_row_handler=handler,
            )
            return pcsv.read_csv(
                pa.py_buffer(data),
                # Serial parsing: pyarrow only knows the row number of an invalid row then.
                read_options=pcsv.ReadOptions(
                    column_names=list(fmt.names), use_threads=False, block_size=len(data) + 1
                ),
                parse_options=options,
                convert_options=pcsv.ConvertOptions(
                    column_types=dict(types),
                    null_values=list(fmt.null_values),
                    strings_can_be_null=True,
                ),
            )

        return parse

    lines = _Lines(chunk, first_line)
    types: dict[str, pa.DataType] = dict(declared)
    if schema is not None:
        types = {f.name: f.type for f in schema} | types
    bad: list[BadLine] = []
    tables = _bisect_fast(lines, parse_with(types), bad)
    if tables is None and schema is not None:
        # Maybe integers became decimals further down the file: widen and try again.
        try:
            inferred = parse_with(declared)(chunk, []).schema
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            inferred = None
        wider = _widened(schema, inferred) if inferred is not None else None
        if wider is not None:
            schema = wider
            types = {f.name: f.type for f in schema} | dict(declared)
            tables = _bisect_fast(lines, parse_with(types), bad)
    if tables is None:
        bad.clear()
        tables = _parse_chunk(lines, parse_with(types), bad, infer=schema is None)
    table = _concat(tables, schema)
    if schema is None and table.num_columns:
        schema = _no_null_types(table.schema)
        if schema != table.schema:
            table = table.cast(schema)
    return Parsed(table, bad, schema)


def _bisect_fast(
    lines: _Lines, parse: Callable[..., pa.Table], bad: list[BadLine]
) -> list[pa.Table] | None:
    """One parse of the whole chunk; None if it failed (the caller bisects)."""
    if len(lines) == 0:
        return []
    invalid: list[tuple[int, str]] = []
    try:
        table = parse(lines.chunk, invalid)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if invalid:
        rows = lines.nonempty(0, len(lines))
        for number, error in invalid:
            i = int(rows[number - 1]) if 0 < number <= len(rows) else 0
            bad.append(BadLine(lines.number(i), lines.text(i), error))
    return [table]


def parse_jsonl(
    chunk: bytes,
    first_line: int,
    schema: pa.Schema | None,
    declared: Mapping[str, pa.DataType],
) -> Parsed:
    """Parse whole JSON lines, one object per line; arguments as for :func:`parse_csv`."""

    def parse_with(explicit: pa.Schema | None) -> Callable[..., pa.Table]:
        def parse(data: bytes, invalid: list[tuple[int, str]]) -> pa.Table:
            options = pj.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="infer")
            return pj.read_json(
                pa.py_buffer(data),
                read_options=pj.ReadOptions(use_threads=True, block_size=len(data) + 1),
                parse_options=options,
            )

        return parse

    def explicit_for(current: pa.Schema | None) -> pa.Schema | None:
        fields = {f.name: f for f in current} if current is not None else {}
        fields |= {name: pa.field(name, kind) for name, kind in declared.items()}
        return pa.schema(list(fields.values())) if fields else None

    lines = _Lines(chunk, first_line)
    bad: list[BadLine] = []
    tables = _bisect_fast(lines, parse_with(explicit_for(schema)), bad)
    if tables is None and schema is not None:
        try:
            inferred = parse_with(explicit_for(None))(chunk, []).schema
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            inferred = None
        wider = _widened(schema, inferred) if inferred is not None else None
        if wider is not None:
            schema = wider
            tables = _bisect_fast(lines, parse_with(explicit_for(schema)), bad)
    if tables is None:
        bad.clear()
        tables = _parse_chunk(lines, parse_with(explicit_for(schema)), bad, infer=schema is None)
    table = _concat(tables, schema)
    if table.num_columns:
        table = promote_timestamps(table)
        if schema is None:
            schema = _no_null_types(table.schema)
        else:
            # Fields first seen in this chunk join the file's schema.
            extra = [f for f in table.schema if f.name not in schema.names]
            schema = _no_null_types(pa.schema([*schema, *extra]))
    return Parsed(table, bad, schema)
