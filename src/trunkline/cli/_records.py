"""``trunkline produce`` and ``trunkline consume``."""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from enum import StrEnum
from typing import IO, Annotated, Any

import pyarrow as pa
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from trunkline.cli._common import bad_input, err, print_json, project
from trunkline.errors import InvalidRecord
from trunkline.hub import FetchedBatch, Hub, TopicPartition
from trunkline.hub.protocol import AutoOffsetReset

#: Records per produce call when reading from stdin.
CHUNK = 50_000


class InputFormat(StrEnum):
    JSON = "json"
    RAW = "raw"


class OutputFormat(StrEnum):
    JSON = "json"
    RAW = "raw"


def _lines(data: bytes) -> list[tuple[int, bytes]]:
    """Non-blank lines with their 1-based line numbers (CRLF tolerated)."""
    out = []
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.removesuffix(b"\r")
        if line.strip():
            out.append((number, line))
    return out


def _key_of(number: int, line: bytes, key_field: str | None) -> bytes | None:
    """Validate one JSON line and pull out its key field."""
    try:
        value = json.loads(line)
    except ValueError as exc:
        shown = line[:60].decode("utf-8", "replace")
        detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRecord(
            f"stdin line {number}: expected a JSON value, found {shown!r}"
            + (f" ({detail})" if detail else "")
            + "; use --format raw to send lines as they are"
        ) from None
    if key_field is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRecord(
            f"stdin line {number}: --key-field {key_field!r} needs a JSON object, "
            f"found {type(value).__name__}"
        )
    if key_field not in value:
        fields = ", ".join(sorted(value)[:10]) or "none"
        raise InvalidRecord(
            f"stdin line {number}: expected a field {key_field!r} for the key, found "
            f"fields: {fields}"
        )
    key = value[key_field]
    if key is None:
        return None
    return key.encode() if isinstance(key, str) else json.dumps(key).encode()


def produce(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic to write to.")],
    key_field: Annotated[
        str | None,
        typer.Option(help="JSON field whose value becomes the record key (JSON input only)."),
    ] = None,
    partition: Annotated[
        int | None, typer.Option(help="Write every record to this partition.")
    ] = None,
    input_format: Annotated[
        InputFormat,
        typer.Option("--format", help="json: one JSON value per line; raw: lines as they are."),
    ] = InputFormat.JSON,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Produce the lines of stdin as records. Every line is checked before anything is sent."""
    if key_field is not None and input_format is InputFormat.RAW:
        raise bad_input("--key-field needs --format json: raw lines have no fields")
    lines = _lines(sys.stdin.buffer.read())
    keys: list[bytes | None] = []
    if input_format is InputFormat.JSON:
        keys = [_key_of(number, line, key_field) for number, line in lines]
    hub = project(ctx).hub
    hub.describe_topic(topic)  # an unknown topic fails before any work
    values = [line for _, line in lines]
    counts: dict[int, int] = {}
    dead: dict[str, int] = {}  # dead-letter topic -> records (a contract's dead_letter policy)
    started = time.perf_counter()
    with _progress(len(values)) as progress:
        task = progress.add_task(f"producing to {topic}", total=len(values))
        for first in range(0, len(values), CHUNK):
            columns: dict[str, Any] = {
                "value": pa.array(values[first : first + CHUNK], pa.binary())
            }
            if key_field is not None:
                columns["key"] = pa.array(keys[first : first + CHUNK], pa.binary())
            result = hub.produce(topic, pa.table(columns), partition=partition)
            for p in result.partitions.to_pylist():
                if p >= 0:  # -1: dead-lettered by the topic's contract
                    counts[p] = counts.get(p, 0) + 1
            letters = getattr(result, "dead_lettered", 0)
            if letters:
                target = str(getattr(result, "dead_letter_topic", f"{topic}.dlq"))
                dead[target] = dead.get(target, 0) + letters
            progress.advance(task, len(result))
    elapsed = time.perf_counter() - started
    written = sum(counts.values())
    summary = {
        "topic": topic,
        "records": written,
        "partitions": counts,
        "dead_lettered": dead,
        "seconds": elapsed,
    }
    if as_json:
        print_json(summary)
    else:
        spread = ", ".join(f"{p}: {n:,}" for p, n in sorted(counts.items())) or "-"
        err().print(f"produced {written:,} record(s) to {topic} (partitions {spread})")
        for target, letters in dead.items():
            err().print(
                f"[yellow]{letters:,} record(s) broke the contract[/yellow] and went to {target}"
            )


def _progress(total: int) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeRemainingColumn(),
        console=err(),
        transient=True,
        disable=total < 200_000 or not sys.stderr.isatty(),
    )


def _text(data: bytes | None) -> tuple[str | None, bool]:
    """Text when the bytes are UTF-8, else base64; the flag says which."""
    if data is None:
        return None, False
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def _write(batch: FetchedBatch, limit: int, output: OutputFormat, stream: IO[bytes]) -> int:
    """Print up to ``limit`` records of a batch; returns how many were printed."""
    records = batch.records.slice(0, limit)
    values = records.column("value").to_pylist()
    if output is OutputFormat.RAW:
        stream.write(b"".join((v or b"") + b"\n" for v in values))
        return len(values)
    offsets = records.column("offset").to_pylist()
    stamps = records.column("timestamp").cast(pa.int64()).to_pylist()
    keys = records.column("key").to_pylist()
    headers = records.column("headers").to_pylist()
    lines = []
    for i, offset in enumerate(offsets):
        key, key_b64 = _text(keys[i])
        value, value_b64 = _text(values[i])
        row: dict[str, Any] = {
            "topic": batch.topic,
            "partition": batch.partition,
            "offset": offset,
            "timestamp": stamps[i],
            "key": key,
            "value": value,
            "headers": [
                {"key": h["key"], "value": _text(h["value"])[0]} for h in (headers[i] or [])
            ],
        }
        if key_b64:
            row["key_encoding"] = "base64"
        if value_b64:
            row["value_encoding"] = "base64"
        lines.append(json.dumps(row, ensure_ascii=False))
    stream.write(("\n".join(lines) + "\n").encode())
    return len(offsets)


def consume(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic to read.")],
    group: Annotated[
        str | None,
        typer.Option(help="Consumer group: resume from its committed offsets and commit."),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option(help="Start at the oldest record (where nothing is committed).")
    ] = False,
    max_records: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after this many records.")
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="Keep waiting for new records instead of stopping at the end.")
    ] = False,
    output: Annotated[
        OutputFormat,
        typer.Option("--format", help="json: one object per record; raw: values only."),
    ] = OutputFormat.JSON,
    partition: Annotated[
        int | None, typer.Option(help="Only this partition (without --group).")
    ] = None,
    offset: Annotated[
        int | None, typer.Option(help="Start at this offset (without --group).")
    ] = None,
) -> None:
    """Print records. Without --follow, stops at the end of the topic as it was at the start."""
    if group is not None and (partition is not None or offset is not None):
        raise bad_input("--partition and --offset need no --group: a group reads its own offsets")
    hub = project(ctx).hub
    ends = hub.end_offsets(topic)
    if partition is not None and partition not in ends:
        raise bad_input(
            f"topic {topic!r} has {len(ends)} partition(s); partition {partition} does not exist"
        )
    printed = 0
    remaining = max_records if max_records is not None else sys.maxsize
    reset: AutoOffsetReset = "earliest" if from_beginning or offset is not None else "latest"
    name = group or f"trunkline-console-{uuid.uuid4().hex[:12]}"
    stream = sys.stdout.buffer
    with hub.consumer(name, [topic], auto_offset_reset=reset, client="trunkline-cli") as consumer:
        placed: set[TopicPartition] = set()
        try:
            while remaining > 0:
                batches = consumer.poll(1.0 if follow else 0.5)
                if group is None:
                    batches = _place(consumer, batches, placed, partition, offset)
                for batch in batches:
                    if remaining <= 0:
                        break
                    shown = _write(batch, remaining, output, stream)
                    printed += shown
                    remaining -= shown
                    if group is not None:
                        last = batch.records.column("offset")[shown - 1].as_py()
                        consumer.commit({TopicPartition(batch.topic, batch.partition): last + 1})
                stream.flush()
                if not follow and not batches and _caught_up(consumer, ends, partition):
                    break
        finally:
            if group is None:
                consumer.close()
                _forget_group(hub, name)
    err().print(f"consumed {printed:,} record(s) from {topic}")


def _place(
    consumer: Any,
    batches: list[FetchedBatch],
    placed: set[TopicPartition],
    partition: int | None,
    offset: int | None,
) -> list[FetchedBatch]:
    """Without a group: position newly assigned partitions and keep the chosen partition."""
    fresh = [tp for tp in consumer.assignment() if tp not in placed]
    if fresh:
        for tp in fresh:
            placed.add(tp)
            if offset is not None:
                consumer.seek(tp, offset)
        if offset is not None:
            # Records polled before the seek are dropped; the next poll starts at the offset.
            return []
    return [b for b in batches if partition is None or b.partition == partition]


def _caught_up(consumer: Any, ends: dict[int, int], partition: int | None) -> bool:
    assigned = consumer.assignment()
    if not assigned:
        return False
    wanted = [tp for tp in assigned if partition is None or tp.partition == partition]
    return all(consumer.position(tp) >= ends.get(tp.partition, 0) for tp in wanted)


def _forget_group(hub: Hub, group: str) -> None:
    """A console consumer's throwaway group leaves nothing behind."""
    try:
        if group in hub.list_groups():
            hub.delete_group(group)
    except Exception as exc:
        err().print(f"[yellow]note[/yellow]: could not remove group {group}: {exc}")
