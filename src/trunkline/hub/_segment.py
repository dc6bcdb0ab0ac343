"""The on-disk format of the embedded log: record batches, segment files and offset indexes.

Kafka's log layout is the model. A partition is a folder of segments; a segment is a
``<base offset>.log`` file of record batches plus a sparse ``<base offset>.index``.

A batch on disk is a fixed 64-byte header followed by its payload::

    magic        4s   b"TLB1"
    header_crc   u32  CRC-32C of the rest of the header (bytes 8..64)
    base_offset  i64  offset of the batch's first record
    payload_len  u32
    payload_crc  u32  CRC-32C of the payload
    record_count u32  records present (compaction can remove some)
    last_delta   u32  last offset - base offset (kept when compaction removes records)
    first_ts     i64  smallest record timestamp (ms)
    max_ts       i64  largest record timestamp (ms)
    append_ms    i64  wall-clock time of the append (retention counts from here)
    attributes   u16  bit 0: rewritten by compaction; bit 1: template values
    reserved     u16 + u32 (zero; pads the header to 64 bytes)

The payload is one Arrow IPC record-batch message in :data:`STORE_SCHEMA`, so reading a batch
back is a zero-copy view of the bytes read from disk, and writing one is a single serialise.
A batch whose values are a template (:mod:`trunkline.hub._template`: text fragments rendered
to bytes when read) has attribute bit 1 set, and its payload is an IPC stream of the schema
message (the template's texts are its field names) followed by the record-batch message.
Header and payload sizes are multiples of 8, so every batch starts 8-byte aligned in its file
and, read into an aligned buffer, its Arrow columns are aligned as Arrow requires.

The header has its own checksum so that recovery can tell a torn tail (no valid header after
the damage) from corruption in the middle of the log (a valid header follows the damage).

An index entry (16 bytes: relative offset u32, position u32, max timestamp of the batches
before it i64) is added for the first batch of a segment and then every
:data:`INDEX_INTERVAL` bytes. The index is a cache: it is never fsynced and is rebuilt from
the log whenever it disagrees with it.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from trunkline.errors import CorruptSegment
from trunkline.hub._types import FETCH_SCHEMA, HEADER_TYPE, TIMESTAMP_TYPE, Compression

log = logging.getLogger("trunkline.hub")

MAGIC = b"TLB1"
HEADER = struct.Struct("<4sIqIIIIqqqHHI")
HEADER_SIZE = HEADER.size
INDEX_ENTRY = struct.Struct("<IIq")
INDEX_INTERVAL = 4096
ATTR_COMPACTED = 1
ATTR_TEMPLATE = 2
NO_TIMESTAMP = -(2**63)

#: What a batch payload holds. Offsets are stored relative to the batch's base offset.
STORE_SCHEMA = pa.schema(
    [
        pa.field("offset_delta", pa.int32(), nullable=False),
        pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", HEADER_TYPE),
    ]
)


def store_schema(value_type: pa.DataType) -> pa.Schema:
    """:data:`STORE_SCHEMA`, or its form for a template value column of ``value_type``."""
    if value_type == pa.binary():
        return STORE_SCHEMA
    return STORE_SCHEMA.set(3, pa.field("value", value_type))


def _fetch_schema(value_type: pa.DataType) -> pa.Schema:
    if value_type == pa.binary():
        return FETCH_SCHEMA
    return FETCH_SCHEMA.set(3, pa.field("value", value_type))


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    payload_len: int
    payload_crc: int
    record_count: int
    last_delta: int
    first_ts: int
    max_ts: int
    append_ms: int
    attributes: int = 0

    @property
    def size(self) -> int:
        """Bytes the batch takes on disk, header included."""
        return HEADER_SIZE + self.payload_len

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_delta + 1

    def pack(self) -> bytes:
        rest = HEADER.pack(
            MAGIC,
            0,
            self.base_offset,
            self.payload_len,
            self.payload_crc,
            self.record_count,
            self.last_delta,
            self.first_ts,
            self.max_ts,
            self.append_ms,
            self.attributes,
            0,
            0,
        )[8:]
        return MAGIC + struct.pack("<I", crc32c.crc32c(rest)) + rest


def unpack_header(data: bytes | memoryview, pos: int = 0) -> BatchHeader | None:
    """The header at ``pos``, or None if it is incomplete, lacks the magic or fails its CRC."""
    if len(data) - pos < HEADER_SIZE:
        return None
    fields = HEADER.unpack_from(data, pos)
    if fields[0] != MAGIC or crc32c.crc32c(data[pos + 8 : pos + HEADER_SIZE]) != fields[1]:
        return None
    return BatchHeader(*fields[2:11])


def read_aligned(fd: int, size: int, pos: int) -> pa.Buffer:
    """``size`` bytes at ``pos``, read into a 64-byte aligned Arrow buffer (may be shorter)."""
    buffer = pa.allocate_buffer(size)
    got = os.preadv(fd, [memoryview(buffer)], pos)
    return buffer if got == size else buffer.slice(0, got)


def encode_batch(
    records: pa.RecordBatch,
    base_offset: int,
    append_ms: int,
    compression: Compression,
    *,
    last_delta: int | None = None,
    attributes: int = 0,
) -> tuple[bytes, list[Any], int]:
    """Header, payload parts and size on disk of one batch (``records`` in STORE_SCHEMA).

    The payload comes as a list of buffers that reference ``records``' own memory (no copy);
    written one after the other they form the batch's IPC message. ``last_delta`` defaults to
    the last record's delta; compaction passes the original one so that a batch keeps its
    offset range when records are removed from it.
    """
    if records.schema.field(3).type == pa.binary():
        parts = _serializer(compression)(records)
        attributes &= ~ATTR_TEMPLATE
    else:
        parts = _stream(records, compression)
        attributes |= ATTR_TEMPLATE
    crc, size = 0, 0
    for part in parts:
        crc = crc32c.crc32c(part, crc)
        size += memoryview(part).nbytes
    if size % 8:
        # IPC messages are 8-byte multiples already; keep the invariant even if one is not.
        pad = bytes(8 - size % 8)
        parts.append(pad)
        crc = crc32c.crc32c(pad, crc)
        size += len(pad)
    minmax = pc.min_max(records.column(1))
    first = minmax["min"].value
    if last_delta is None:
        last_delta = records.column(0)[-1].as_py() if records.num_rows else 0
    header = BatchHeader(
        base_offset=base_offset,
        payload_len=size,
        payload_crc=crc,
        record_count=records.num_rows,
        last_delta=last_delta,
        first_ts=first if first is not None else NO_TIMESTAMP,
        max_ts=minmax["max"].value if first is not None else NO_TIMESTAMP,
        append_ms=append_ms,
        attributes=attributes,
    )
    return header.pack(), parts, header.size


class _Collector:
    """A write-only file that keeps what it is given (by reference) instead of copying it."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def write(self, data: Any) -> None:
        self.parts.append(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Serializer:
    """Encodes record batches as IPC messages without copying their buffers.

    An IPC stream writer hands each message to its sink piece by piece, large buffers as
    views of the batch's own memory; collecting those pieces and writing them with one
    ``pwritev`` skips the copy that ``RecordBatch.serialize`` makes (the bytes are the same).
    The stream's schema message goes out once, when the serializer is made, and is dropped.
    """

    def __init__(self, compression: Compression) -> None:
        self._sink = _Collector()
        codec = None if compression is Compression.NONE else compression.value
        self._writer = ipc.new_stream(
            pa.PythonFile(self._sink, mode="w"),
            STORE_SCHEMA,
            options=ipc.IpcWriteOptions(compression=codec),
        )
        self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=STORE_SCHEMA))
        self._lock = threading.Lock()

    def __call__(self, records: pa.RecordBatch) -> list[Any]:
        with self._lock:
            self._sink.parts = []
            self._writer.write_batch(records)
            return self._sink.parts


def _stream(records: pa.RecordBatch, compression: Compression) -> list[Any]:
    """The schema and record-batch messages of ``records`` (buffers by reference)."""
    sink = _Collector()
    codec = None if compression is Compression.NONE else compression.value
    writer = ipc.new_stream(
        pa.PythonFile(sink, mode="w"),
        records.schema,
        options=ipc.IpcWriteOptions(compression=codec),
    )
    writer.write_batch(records)
    parts = sink.parts
    sink.parts = []
    writer.close()  # its end-of-stream marker goes to the discarded list
    return parts


_SERIALIZERS: dict[Compression, _Serializer] = {}
_SERIALIZERS_LOCK = threading.Lock()


def _serializer(compression: Compression) -> _Serializer:
    found = _SERIALIZERS.get(compression)
    if found is None:
        with _SERIALIZERS_LOCK:
            found = _SERIALIZERS.setdefault(compression, _Serializer(compression))
    return found


def decode_records(header: BatchHeader, payload: pa.Buffer) -> pa.RecordBatch:
    """A stored batch as :data:`FETCH_SCHEMA` rows (absolute offsets), without copying data;
    template values stay templates (:attr:`FetchedBatch.records` renders them)."""
    stored = decode_stored(header, payload)
    offsets = pc.add(stored.column(0).cast(pa.int64()), pa.scalar(header.base_offset, pa.int64()))
    schema = _fetch_schema(stored.schema.field(3).type)
    return pa.RecordBatch.from_arrays([offsets, *stored.columns[1:]], schema=schema)


def decode_stored(header: BatchHeader, payload: pa.Buffer) -> pa.RecordBatch:
    """A stored batch in :data:`STORE_SCHEMA` (or its template form)."""
    if header.attributes & ATTR_TEMPLATE:
        return ipc.open_stream(pa.BufferReader(payload)).read_next_batch()
    return ipc.read_record_batch(payload, STORE_SCHEMA)


def check_payload(path: Path, pos: int, header: BatchHeader, payload: bytes | memoryview) -> None:
    if crc32c.crc32c(payload) != header.payload_crc:
        raise CorruptSegment(
            f"corrupt record batch in {path} at byte {pos} (offsets {header.base_offset}-"
            f"{header.next_offset - 1}): payload checksum mismatch",
            path=str(path),
            position=pos,
        )


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


def list_segments(directory: Path) -> list[int]:
    """Base offsets of the segments in a partition folder, ascending."""
    bases = []
    for entry in os.scandir(directory):
        name = entry.name
        if name.endswith(".log") and len(name) == 24 and name[:20].isdigit():
            bases.append(int(name[:20]))
    bases.sort()
    return bases


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Where a scan of a segment stopped and why."""

    end: int  # byte position after the last valid batch
    next_offset: int
    max_ts: int
    batches: int
    bad_position: int | None  # first invalid position, None if the scan reached the end


def scan(
    fd: int, path: Path, start: int, size: int, expected_offset: int, *, check_payloads: bool
) -> ScanResult:
    """Walk batch headers from ``start`` to ``size``, stopping at the first invalid batch.

    A batch is invalid if its header is incomplete or fails its checksum, if its base offset
    is not the expected one, if it extends past ``size``, or (with ``check_payloads``) if
    its payload fails its checksum.
    """
    pos, expected, max_ts, count = start, expected_offset, NO_TIMESTAMP, 0
    chunk_size = 1 << 20
    while pos < size:
        head = os.pread(fd, HEADER_SIZE, pos)
        header = unpack_header(head)
        if (
            header is None
            or header.base_offset < expected
            or pos + header.size > size
            or header.next_offset <= header.base_offset
        ):
            return ScanResult(pos, expected, max_ts, count, pos)
        if check_payloads:
            crc, done = 0, 0
            while done < header.payload_len:
                part = os.pread(
                    fd, min(chunk_size, header.payload_len - done), pos + HEADER_SIZE + done
                )
                crc = crc32c.crc32c(part, crc)
                done += len(part)
            if crc != header.payload_crc:
                return ScanResult(pos, expected, max_ts, count, pos)
        pos += header.size
        expected = header.next_offset
        max_ts = max(max_ts, header.max_ts)
        count += 1
    return ScanResult(pos, expected, max_ts, count, None)


def find_valid_header(fd: int, start: int, size: int) -> int | None:
    """Position of the first batch header with a valid checksum at or after ``start``."""
    chunk = 1 << 20
    pos = start
    while pos < size:
        data = os.pread(fd, min(chunk + HEADER_SIZE, size - pos), pos)
        at = data.find(MAGIC)
        while at != -1:
            if unpack_header(data, at) is not None:
                return pos + at
            at = data.find(MAGIC, at + 1)
        if len(data) <= HEADER_SIZE:
            return None
        pos += len(data) - HEADER_SIZE
    return None


def iter_batches(
    data: bytes | memoryview, path: Path, origin: int
) -> Iterator[tuple[int, BatchHeader]]:
    """Headers of the complete batches in ``data`` (read from ``path`` at byte ``origin``).

    Stops at the first incomplete batch; a header that fails its checksum is corruption.
    """
    pos = 0
    end = len(data)
    while end - pos >= HEADER_SIZE:
        header = unpack_header(data, pos)
        if header is None:
            raise CorruptSegment(
                f"corrupt record batch in {path} at byte {origin + pos}: "
                "header checksum mismatch or missing batch marker",
                path=str(path),
                position=origin + pos,
            )
        if pos + header.size > end:
            return
        yield pos, header
        pos += header.size


class OffsetIndex:
    """The sparse index of one segment, held in memory as numpy arrays."""

    __slots__ = ("max_ts_before", "positions", "relative")

    def __init__(self, raw: bytes) -> None:
        usable = len(raw) - len(raw) % INDEX_ENTRY.size
        entries = np.frombuffer(
            raw[:usable], dtype=np.dtype([("rel", "<u4"), ("pos", "<u4"), ("ts", "<i8")])
        )
        self.relative = entries["rel"].astype(np.int64)
        self.positions = entries["pos"].astype(np.int64)
        self.max_ts_before = entries["ts"]

    def is_consistent(self, size: int) -> bool:
        """Sorted and inside the file: anything else means the cache is stale."""
        if not len(self.positions):
            return True
        return bool(
            self.positions[0] == 0
            and np.all(np.diff(self.positions) > 0)
            and np.all(np.diff(self.relative) >= 0)
            and self.positions[-1] < size
        )

    def entry_for(self, relative_offset: int) -> tuple[int, int]:
        """(byte position, relative offset) of the last indexed batch starting at or before
        ``relative_offset``; (0, 0) when there is none."""
        return self._entry(int(np.searchsorted(self.relative, relative_offset, side="right")) - 1)

    def entry_for_time(self, timestamp: int) -> tuple[int, int]:
        """(byte position, relative offset) of the indexed batch from which the first record
        with a timestamp >= ``timestamp`` can follow; (0, 0) when that is the start."""
        return self._entry(int(np.searchsorted(self.max_ts_before, timestamp, side="left")) - 1)

    def _entry(self, i: int) -> tuple[int, int]:
        return (int(self.positions[i]), int(self.relative[i])) if i >= 0 else (0, 0)


def build_index(fd: int, path: Path, size: int, base_offset: int) -> bytes:
    """Index bytes for a segment, rebuilt from its batch headers."""
    out = bytearray()
    pos, last_indexed, max_ts = 0, -INDEX_INTERVAL, NO_TIMESTAMP
    while pos < size:
        header = unpack_header(os.pread(fd, HEADER_SIZE, pos))
        if header is None or pos + header.size > size:
            break
        if pos - last_indexed >= INDEX_INTERVAL:
            out += INDEX_ENTRY.pack(header.base_offset - base_offset, pos, max_ts)
            last_indexed = pos
        max_ts = max(max_ts, header.max_ts)
        pos += header.size
    if pos < size:
        log.warning("index rebuild of %s stopped at byte %d of %d", path, pos, size)
    return bytes(out)
