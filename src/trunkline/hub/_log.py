"""One partition of the embedded log: durable appends, reads, recovery, retention, compaction.

A partition folder holds segment files (see :mod:`trunkline.hub._segment`), a ``hw`` file and
two lock files. Several processes may use one partition at once:

* Appends are serialised by an exclusive ``flock`` on ``.lock`` (plus a thread lock, because
  flock is per open file, not per thread).
* After an append is durable at the ack level, the writer rewrites ``hw`` — the *high
  watermark*: next offset, active segment and the byte position where acknowledged data ends.
  Readers never read past it, so they never see a half-written batch, nor (with
  ``ack=fsync``) a batch that a power cut could still take away.
* A writer that takes the lock first checks that the active segment ends where ``hw`` says,
  and that no segment starts at ``hw``'s next offset (a writer killed in a roll leaves one,
  with ``hw`` and the old segment untouched). If not, the previous writer died mid-append:
  the newest segment's bytes past the watermark are scanned;
  complete, valid batches are kept, and a torn tail is truncated and reported. Damage that is
  followed by valid data is corruption, not a torn tail, and is raised — never truncated.
* Retention and compaction take ``.clean.lock`` and only touch closed segments; the active
  segment is never deleted or compacted (Kafka's rule).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.errors import CorruptSegment, HubError, OffsetOutOfRange, StorageFull
from trunkline.hub._segment import (
    ATTR_COMPACTED,
    HEADER_SIZE,
    INDEX_ENTRY,
    INDEX_INTERVAL,
    NO_TIMESTAMP,
    BatchHeader,
    OffsetIndex,
    build_index,
    check_payload,
    decode_records,
    decode_stored,
    encode_batch,
    find_valid_header,
    iter_batches,
    list_segments,
    read_aligned,
    scan,
    segment_name,
    unpack_header,
)
from trunkline.hub._types import TopicConfig

log = logging.getLogger("trunkline.hub")

_HW = struct.Struct("<qqqq")
_HW_SIZE = _HW.size + 4
_READ_CHUNK = 1 << 20
_OPEN_READERS = 4
_FLUSH_BYTES = 64 << 20
_IOV_MAX = 1024


class Ack(StrEnum):
    """When a produce is acknowledged."""

    FSYNC = "fsync"  # data and size are on stable storage: survives power loss
    WRITTEN = "written"  # data is in the OS page cache: survives a crash of the process


@dataclass(frozen=True, slots=True)
class Watermark:
    next_offset: int
    segment_base: int
    position: int
    segment_max_ts: int

    def pack(self) -> bytes:
        body = _HW.pack(self.next_offset, self.segment_base, self.position, self.segment_max_ts)
        return body + struct.pack("<I", crc32c.crc32c(body))


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery found and did at the tail of a partition.

    ``removed_bytes`` were cut off a torn tail; ``missing_bytes`` were acknowledged (below the
    high watermark) but are no longer in the file — something outside trunkline shortened it.
    """

    path: str
    position: int
    removed_bytes: int
    next_offset: int
    missing_bytes: int = 0
    missing_from_offset: int | None = None

    def __str__(self) -> str:
        parts = [f"recovered {self.path}:"]
        if self.missing_bytes:
            parts.append(
                f"the file is {self.missing_bytes} bytes shorter than its acknowledged data "
                f"(records from offset {self.missing_from_offset} on are lost);"
            )
        if self.removed_bytes:
            parts.append(
                f"torn tail of {self.removed_bytes} bytes at byte {self.position} truncated;"
            )
        parts.append(f"the partition continues at offset {self.next_offset}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class CompactionResult:
    segments_rewritten: int
    records_removed: int
    bytes_before: int
    bytes_after: int


@dataclass(slots=True)
class _Tail:
    """The writer's view of the active segment, valid while it matches ``hw``."""

    base: int
    fd: int
    index_fd: int
    size: int
    next_offset: int
    max_ts: int
    last_indexed: int
    first_append_ms: int | None


class PartitionLog:
    """The log of one partition (see the module docstring for the protocol)."""

    def __init__(self, directory: Path, *, ack: Ack = Ack.FSYNC) -> None:
        self.dir = directory
        self._dir_text = os.fspath(directory)
        self.ack = ack
        self.hw_path = directory / "hw"
        self.reports: list[RecoveryReport] = []
        self._mutex = threading.RLock()
        self._lock_fd = -1
        self._hw_fd = -1
        self._tail: _Tail | None = None
        self._bases: list[int] = []
        self._readers: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._indexes: dict[tuple[int, int, int], OffsetIndex] = {}

    # -- creation and files -----------------------------------------------------------

    @staticmethod
    def initialise(directory: Path) -> None:
        """Lay out an empty partition (one empty segment, a watermark at offset 0)."""
        directory.mkdir(parents=True)
        name = segment_name(0)
        (directory / f"{name}.log").touch()
        (directory / f"{name}.index").touch()
        (directory / "hw").write_bytes(Watermark(0, 0, 0, NO_TIMESTAMP).pack())
        _fsync_dir(directory)

    def _path(self, base: int, suffix: str) -> Path:
        return self.dir / f"{segment_name(base)}.{suffix}"

    def close(self) -> None:
        with self._mutex:
            if self._tail is not None:
                os.close(self._tail.fd)
                os.close(self._tail.index_fd)
                self._tail = None
            for fd, _ in self._readers.values():
                os.close(fd)
            self._readers.clear()
            for fd in (self._lock_fd, self._hw_fd):
                if fd >= 0:
                    os.close(fd)
            self._lock_fd = self._hw_fd = -1

    # -- watermark --------------------------------------------------------------------

    def _hw_handle(self) -> int:
        if self._hw_fd < 0:
            try:
                self._hw_fd = os.open(self.hw_path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                raise HubError(f"partition folder {self.dir} is missing its hw file") from None
        return self._hw_fd

    def _read_hw(self) -> Watermark | None:
        raw = os.pread(self._hw_handle(), _HW_SIZE, 0)
        if len(raw) != _HW_SIZE:
            return None
        body, (crc,) = raw[: _HW.size], struct.unpack_from("<I", raw, _HW.size)
        if crc32c.crc32c(body) != crc:
            return None
        return Watermark(*_HW.unpack(body))

    def watermark(self) -> Watermark:
        """The current high watermark; repairs the partition if the file is unreadable."""
        # A reader can race a writer's 36-byte pwrite; a few re-reads settle it.
        for _ in range(5):
            hw = self._read_hw()
            if hw is not None:
                return hw
        with self._locked():
            tail = self._current_tail()
            return Watermark(tail.next_offset, tail.base, tail.size, tail.max_ts)

    def _write_hw(self, tail: _Tail) -> None:
        os.pwrite(
            self._hw_handle(),
            Watermark(tail.next_offset, tail.base, tail.size, tail.max_ts).pack(),
            0,
        )

    # -- locking ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            if self._lock_fd < 0:
                self._lock_fd = os.open(
                    self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _cleaner_locked(self) -> Iterator[None]:
        fd = os.open(self.dir / ".clean.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- writer -----------------------------------------------------------------------

    def _current_tail(self) -> _Tail:
        """The writer state, checked against ``hw`` and the file; recovers if they disagree.

        Called with the partition lock held. A writer killed during a roll leaves the old
        segment and ``hw`` as they were but a new ``<next offset>.log`` behind (empty or with
        batches): that segment is the active one now, so its existence invalidates the tail.
        """
        hw = self._read_hw()
        tail = self._tail
        if (
            tail is not None
            and hw is not None
            and hw.segment_base == tail.base
            and hw.next_offset == tail.next_offset
            and hw.position == tail.size
            and os.fstat(tail.fd).st_size == tail.size
            and (tail.next_offset == tail.base or not self._rolled_past(tail))
        ):
            return tail
        if tail is not None:
            os.close(tail.fd)
            os.close(tail.index_fd)
            self._tail = None
        self._tail = self._open_tail(hw)
        return self._tail

    def _rolled_past(self, tail: _Tail) -> bool:
        """Whether a segment starting at the tail's next offset exists (a roll happened).

        Runs before every append: a string path and ``access`` (no exception for the usual
        missing file) cost ~10 µs less per call than ``Path.exists`` here.
        """
        return os.access(f"{self._dir_text}/{segment_name(tail.next_offset)}.log", os.F_OK)

    def _open_tail(self, hw: Watermark | None) -> _Tail:
        bases = list_segments(self.dir)
        if not bases:
            raise HubError(f"partition folder {self.dir} has no segment files")
        base = bases[-1]
        path = self._path(base, "log")
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        index_fd = os.open(self._path(base, "index"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            if hw is not None and hw.segment_base == base and hw.position == size:
                tail = _Tail(base, fd, index_fd, size, hw.next_offset, hw.segment_max_ts, 0, None)
                tail.last_indexed = self._last_indexed(index_fd, size)
            else:
                tail = self._recover(base, fd, index_fd, size, hw)
            tail.first_append_ms = self._first_append_ms(fd, tail.size)
        except BaseException:
            os.close(fd)
            os.close(index_fd)
            raise
        return tail

    @staticmethod
    def _last_indexed(index_fd: int, size: int) -> int:
        length = os.fstat(index_fd).st_size
        length -= length % INDEX_ENTRY.size
        if length == 0:
            return -INDEX_INTERVAL
        _, pos, _ = INDEX_ENTRY.unpack(
            os.pread(index_fd, INDEX_ENTRY.size, length - INDEX_ENTRY.size)
        )
        return pos if pos < size else -INDEX_INTERVAL

    @staticmethod
    def _first_append_ms(fd: int, size: int) -> int | None:
        if size == 0:
            return None
        header = unpack_header(os.pread(fd, HEADER_SIZE, 0))
        return header.append_ms if header is not None else None

    def _recover(self, base: int, fd: int, index_fd: int, size: int, hw: Watermark | None) -> _Tail:
        path = self._path(base, "log")
        trusted = hw is not None and hw.segment_base == base and hw.position <= size
        if trusted and hw is not None:
            result = scan(fd, path, hw.position, size, hw.next_offset, check_payloads=True)
            max_ts = max(hw.segment_max_ts, result.max_ts)
        else:
            # No usable watermark for this segment (a crash during a roll, a truncated file,
            # or a damaged hw file): verify the whole active segment.
            result = scan(fd, path, 0, size, base, check_payloads=True)
            max_ts = result.max_ts
        if result.bad_position is not None:
            following = find_valid_header(fd, result.bad_position + 1, size)
            if following is not None:
                raise CorruptSegment(
                    f"corrupt record batch in {path} at byte {result.bad_position}, followed by "
                    f"valid batches at byte {following}: this is damage inside the log, not a "
                    "torn tail, so nothing was truncated",
                    path=str(path),
                    position=result.bad_position,
                )
            os.ftruncate(fd, result.end)
            os.fsync(fd)
        shortened = hw is not None and hw.segment_base == base and hw.position > size
        if result.bad_position is not None or shortened:
            report = RecoveryReport(
                str(path),
                result.end,
                size - result.end,
                result.next_offset,
                missing_bytes=hw.position - result.end if shortened and hw else 0,
                missing_from_offset=result.next_offset if shortened else None,
            )
            self.reports.append(report)
            log.warning("%s", report)
        index = build_index(fd, path, result.end, base)
        os.ftruncate(index_fd, 0)
        os.pwrite(index_fd, index, 0)
        tail = _Tail(base, fd, index_fd, result.end, result.next_offset, max_ts, 0, None)
        tail.last_indexed = self._last_indexed(index_fd, result.end)
        self._write_hw(tail)
        return tail

    def recover(self) -> list[RecoveryReport]:
        """Check the tail now (normally done lazily by the first append); returns new reports."""
        before = len(self.reports)
        hw = self._read_hw()
        bases = list_segments(self.dir)
        if hw is not None and bases and hw.segment_base == bases[-1]:
            with contextlib.suppress(FileNotFoundError):
                if self._path(bases[-1], "log").stat().st_size == hw.position:
                    return []
        with self._locked():
            self._current_tail()
        return self.reports[before:]

    def append(self, batches: list[pa.RecordBatch], config: TopicConfig, now_ms: int) -> list[int]:
        """Append batches (in the store schema, dense deltas); returns their base offsets.

        Returns only once the batches are durable at the ack level. On failure nothing of
        this call remains in the log and nothing is acknowledged.
        """
        with self._locked():
            tail = self._current_tail()
            # (segment base, its size before this call, its index size, created by this call)
            touched: list[tuple[int, int, int, bool]] = []
            pending: list[Any] = []
            index = bytearray()
            bases: list[int] = []
            try:
                aged = tail.first_append_ms is not None and (
                    now_ms - tail.first_append_ms >= config.segment_ms
                )
                if tail.size and aged:
                    tail = self._roll(tail, touched)
                else:
                    touched.append((tail.base, tail.size, os.fstat(tail.index_fd).st_size, False))
                position = tail.size
                for batch in batches:
                    header, payload, length = encode_batch(
                        batch, tail.next_offset, now_ms, config.compression
                    )
                    if position and position + length > config.segment_bytes:
                        self._flush(tail, pending, index, position)
                        pending, index = [], bytearray()
                        tail = self._roll(tail, touched)
                        position = 0
                    if position - tail.last_indexed >= INDEX_INTERVAL:
                        index += INDEX_ENTRY.pack(
                            tail.next_offset - tail.base, position, tail.max_ts
                        )
                        tail.last_indexed = position
                    pending.append(header)
                    pending += payload
                    bases.append(tail.next_offset)
                    if tail.first_append_ms is None:
                        tail.first_append_ms = now_ms
                    batch_max = pc.max(batch.column(1)).value
                    if batch_max is not None:
                        tail.max_ts = max(tail.max_ts, batch_max)
                    tail.next_offset += batch.num_rows
                    position += length
                    if position - tail.size >= _FLUSH_BYTES:
                        self._flush(tail, pending, index, position)
                        pending, index = [], bytearray()
                self._flush(tail, pending, index, position)
            except BaseException as exc:
                self._roll_back(touched)
                if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StorageFull(
                        f"no space left on the device holding {self.dir}: the append was "
                        "rolled back and nothing was acknowledged; free space and retry"
                    ) from exc
                raise
            self._write_hw(tail)
            return bases

    def _flush(self, tail: _Tail, buffers: list[Any], index: bytearray, end: int) -> None:
        """Write ``buffers`` at the end of the active segment and make them durable."""
        _write_all(tail.fd, buffers, tail.size)
        if self.ack is Ack.FSYNC:
            os.fdatasync(tail.fd)
        if index:
            os.pwrite(tail.index_fd, bytes(index), os.fstat(tail.index_fd).st_size)
        tail.size = end

    def _roll(self, tail: _Tail, touched: list[tuple[int, int, int, bool]]) -> _Tail:
        """Close the active segment and start a new one at the next offset."""
        base = tail.next_offset
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self._path(base, "log"), flags | os.O_EXCL, 0o644)
        touched.append((base, 0, 0, True))
        index_fd = os.open(self._path(base, "index"), flags | os.O_TRUNC, 0o644)
        _fsync_dir(self.dir)
        os.close(tail.fd)
        os.close(tail.index_fd)
        self._tail = _Tail(base, fd, index_fd, 0, base, NO_TIMESTAMP, -INDEX_INTERVAL, None)
        return self._tail

    def _roll_back(self, touched: list[tuple[int, int, int, bool]]) -> None:
        """Undo a failed append: shrink touched segments, remove segments it created."""
        for base, size, index_size, created in reversed(touched):
            try:
                if created:
                    for suffix in ("log", "index"):
                        self._path(base, suffix).unlink(missing_ok=True)
                else:
                    os.truncate(self._path(base, "log"), size)
                    os.truncate(self._path(base, "index"), index_size)
            except OSError as exc:
                log.error("rolling back a failed append in %s failed: %s", self.dir, exc)
        if self._tail is not None:
            os.close(self._tail.fd)
            os.close(self._tail.index_fd)
            self._tail = None

    # -- reader -----------------------------------------------------------------------

    def segments(self, hw: Watermark | None = None) -> list[int]:
        """Base offsets of the segments up to ``hw``'s active one, cached while not stale.

        ``hw`` must have been read before this call. The listing is cut at its active
        segment: a listing made while a writer rolls can hold a new segment but not an older
        one created during the listing (``readdir`` makes no promise about entries added
        while it runs), and a cached list with such a hole would skip that segment's records
        for good. Segments up to ``hw``'s active one existed before the listing began.
        """
        if hw is None:
            hw = self.watermark()
        bases = self._bases
        stale = (
            not bases or hw.segment_base != bases[-1] or not self._path(bases[0], "log").exists()
        )
        if stale:
            listed = list_segments(self.dir)
            self._bases = bases = listed[: bisect.bisect_right(listed, hw.segment_base)]
        return bases

    def start_offset(self) -> int:
        bases = self.segments()
        return bases[0] if bases else self.watermark().next_offset

    def end_offset(self) -> int:
        return self.watermark().next_offset

    def size_bytes(self) -> int:
        total = 0
        for base in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += self._path(base, "log").stat().st_size
        return total

    def _reader(self, base: int) -> int:
        """An open descriptor of a segment, reopened if the file was replaced or deleted."""
        path = self._path(base, "log")
        st = path.stat()  # raises FileNotFoundError once retention removed it
        cached = self._readers.get(base)
        if cached is not None and cached[1] == st.st_ino:
            self._readers.move_to_end(base)
            return cached[0]
        if cached is not None:
            del self._readers[base]  # before the open, which fails if the file is gone now
            os.close(cached[0])
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._readers[base] = (fd, os.fstat(fd).st_ino)
        while len(self._readers) > _OPEN_READERS:
            _, (old, _) = self._readers.popitem(last=False)
            os.close(old)
        return fd

    def _index(self, base: int, fd: int, size: int) -> OffsetIndex:
        ino = os.fstat(fd).st_ino
        key = (base, ino, size)
        index = self._indexes.get(key)
        if index is None:
            try:
                raw = self._path(base, "index").read_bytes()
            except FileNotFoundError:
                raw = b""
            index = OffsetIndex(raw)
            if not index.is_consistent(size):
                index = OffsetIndex(build_index(fd, self._path(base, "log"), size, base))
            self._indexes = {k: v for k, v in self._indexes.items() if k[0] != base}
            self._indexes[key] = index
        return index

    def _readable_size(self, fd: int, base: int, hw: Watermark) -> int:
        """Bytes of segment ``base`` (open as ``fd``) that a reader holding ``hw`` may read.

        ``hw``'s active segment is read up to ``hw.position`` — unless a roll closed it since
        ``hw`` was read: then ``fd`` may already be a compacted copy, shorter than that
        position. A closed segment is whole, so all of it is read.
        """
        if base != hw.segment_base or self.watermark().segment_base != base:
            return os.fstat(fd).st_size
        return hw.position

    def _seek(self, fd: int, base: int, size: int, offset: int) -> int:
        """Byte position of a batch at or before ``offset`` (0: from the start)."""
        return self._hint(fd, base, self._index(base, fd, size).entry_for(offset - base))

    @staticmethod
    def _hint(fd: int, base: int, entry: tuple[int, int]) -> int:
        """An index entry's byte position if the batch there is the one it names, else 0.

        The index is only a hint: it can belong to another version of the log (compaction
        replaces the log, then the index, and may be killed between the two).
        """
        pos, relative = entry
        if pos:
            header = unpack_header(os.pread(fd, HEADER_SIZE, pos))
            if header is None or header.base_offset != base + relative:
                return 0
        return pos

    def _batches(
        self, fd: int, base: int, pos: int, size: int
    ) -> Iterator[tuple[int, BatchHeader, pa.Buffer]]:
        """Checked batches of a segment from byte ``pos`` up to ``size``, read in chunks.

        Payloads are slices of 64-byte aligned buffers, so Arrow columns read from them are
        aligned (batches start at multiples of 8 in the file).
        """
        path = self._path(base, "log")
        while pos < size:
            data = read_aligned(fd, min(size - pos, _READ_CHUNK), pos)
            view = memoryview(data)
            consumed = 0
            for at, header in iter_batches(view, path, pos):
                payload = data.slice(at + HEADER_SIZE, header.payload_len)
                check_payload(path, pos + at, header, view[at + HEADER_SIZE : at + header.size])
                yield pos + at, header, payload
                consumed = at + header.size
            if consumed == 0:
                # A batch larger than one chunk: read exactly that batch.
                big = unpack_header(view)
                if big is None or pos + big.size > size:
                    raise CorruptSegment(
                        f"corrupt record batch in {path} at byte {pos}: "
                        + (
                            "header checksum mismatch or missing batch marker"
                            if big is None
                            else f"the batch runs past the end of the data at byte {size}"
                        ),
                        path=str(path),
                        position=pos,
                    )
                data = read_aligned(fd, big.size, pos)
                check_payload(path, pos, big, memoryview(data)[HEADER_SIZE:])
                yield pos, big, data.slice(HEADER_SIZE)
                consumed = big.size
            pos += consumed

    def read(
        self, offset: int, max_records: int, max_bytes: int
    ) -> tuple[list[pa.RecordBatch], int]:
        """Records from ``offset`` on, up to the limits, and the offset to continue from.

        Returns at least one batch when the partition has records at or after ``offset``,
        even if that batch alone is larger than ``max_bytes``. The continuation offset can
        be past the last record returned when compaction removed the records after it.
        """
        with self._mutex:
            hw = self.watermark()
            if offset == hw.next_offset:
                return [], offset
            bases = self.segments(hw)
            if offset > hw.next_offset or not bases or offset < bases[0]:
                start = bases[0] if bases else hw.next_offset
                raise OffsetOutOfRange(
                    f"offset {offset} is out of range for {self.dir}: the partition holds "
                    f"offsets {start} to {hw.next_offset - 1}",
                    start=start,
                    end=hw.next_offset,
                    requested=offset,
                )
            out: list[pa.RecordBatch] = []
            records = used = 0
            i = bisect.bisect_right(bases, offset) - 1
            while i < len(bases):
                base = bases[i]
                try:
                    fd = self._reader(base)
                except FileNotFoundError:
                    if out:
                        break
                    # Retention deleted the segment after we listed it: start again.
                    self._bases = []
                    return self.read(offset, max_records, max_bytes)
                size = self._readable_size(fd, base, hw)
                pos = self._seek(fd, base, size, offset) if offset > base else 0
                full = False
                for _, header, payload in self._batches(fd, base, pos, size):
                    if header.next_offset <= offset:
                        continue
                    batch = decode_records(header, payload)
                    if header.base_offset < offset:
                        skip = np.searchsorted(batch.column(0).to_numpy(), offset)
                        batch = batch.slice(int(skip))
                    if batch.num_rows > max_records - records:
                        batch = batch.slice(0, max_records - records)
                        offset = batch.column(0)[-1].as_py() + 1
                    else:
                        offset = header.next_offset
                    if batch.num_rows:
                        out.append(batch)
                        records += batch.num_rows
                    used += header.size
                    if records >= max_records or used >= max_bytes:
                        full = True
                        break
                if full or base == hw.segment_base:
                    break
                i += 1
                if i < len(bases):
                    offset = max(offset, bases[i])
            return out, offset

    def offset_for_time(self, timestamp: int) -> int | None:
        """First offset whose record timestamp is >= ``timestamp``, or None."""
        with self._mutex:
            hw = self.watermark()
            for base in self.segments(hw):  # ends at hw's segment: no unacknowledged roll
                try:
                    fd = self._reader(base)
                except FileNotFoundError:
                    continue
                size = self._readable_size(fd, base, hw)
                pos = self._hint(fd, base, self._index(base, fd, size).entry_for_time(timestamp))
                for _, header, payload in self._batches(fd, base, pos, size):
                    if header.max_ts < timestamp or header.record_count == 0:
                        continue
                    batch = decode_records(header, payload)
                    stamps = batch.column(1).cast(pa.int64()).to_numpy()
                    first = int(np.flatnonzero(stamps >= timestamp)[0])
                    return int(batch.column(0)[first].as_py())
            return None

    # -- retention and compaction -----------------------------------------------------

    def _segment_headers(self, base: int) -> list[BatchHeader]:
        fd = self._reader(base)
        size = os.fstat(fd).st_size
        headers, pos = [], 0
        while pos < size:
            header = unpack_header(os.pread(fd, HEADER_SIZE, pos))
            if header is None:
                break
            headers.append(header)
            pos += header.size
        return headers

    def enforce_retention(self, config: TopicConfig, now_ms: int) -> list[int]:
        """Delete closed segments past the time or size limit; returns deleted base offsets.

        Time counts from when a segment's last batch was appended, so backfilled records
        with old timestamps are not deleted on arrival, and records stamped in the future do
        not pin a segment forever.
        """
        if not config.cleanup_policy.deletes:
            return []
        deleted: list[int] = []
        with self._mutex, self._cleaner_locked():
            hw = self.watermark()  # the active segment is hw's, not the newest file (a roll)
            bases = list_segments(self.dir)
            closed = [b for b in bases[:-1] if b < hw.segment_base]
            sizes = {b: self._path(b, "log").stat().st_size for b in bases}
            total = sum(sizes.values())
            for base in closed:
                expired = False
                if config.retention_ms is not None:
                    headers = self._segment_headers(base)
                    last_append = max((h.append_ms for h in headers), default=NO_TIMESTAMP)
                    expired = now_ms - last_append > config.retention_ms
                if not expired and config.retention_bytes is not None:
                    expired = total > config.retention_bytes
                if not expired:
                    break
                self._delete_segment(base)
                total -= sizes[base]
                deleted.append(base)
            if deleted:
                _fsync_dir(self.dir)
                self._bases = []
        return deleted

    def _delete_segment(self, base: int) -> None:
        cached = self._readers.pop(base, None)
        if cached is not None:
            os.close(cached[0])
        for suffix in ("log", "index"):
            self._path(base, suffix).unlink(missing_ok=True)

    def compact(self, config: TopicConfig, now_ms: int) -> CompactionResult:
        """Keep the latest record per key in closed segments (Kafka's log compaction).

        Offsets never change. A tombstone is kept until ``delete_retention_ms`` after its
        append, so consumers that catch up within that time see the delete. Batches newer
        than ``min_compaction_lag_ms`` are left alone.
        """
        empty = CompactionResult(0, 0, 0, 0)
        if not config.cleanup_policy.compacts:
            return empty
        with self._mutex, self._cleaner_locked():
            hw = self.watermark()
            bases = list_segments(self.dir)
            closed = [b for b in bases[:-1] if b < hw.segment_base]
            if not closed:
                return empty
            winners = self._latest_offsets(bases, hw)
            rewritten = removed = before = after = 0
            for base in closed:
                result = self._compact_segment(base, winners, config, now_ms)
                if result is not None:
                    rewritten += 1
                    removed += result[0]
                    before += result[1]
                    after += result[2]
            if rewritten:
                _fsync_dir(self.dir)
                self._indexes.clear()
            return CompactionResult(rewritten, removed, before, after)

    def _latest_offsets(self, bases: list[int], hw: Watermark) -> np.ndarray:
        """Sorted offsets that hold the latest record of their key, over the acknowledged log.

        Records past ``hw`` (a roll in progress, or left by a killed writer) are left out:
        they may be torn or never acknowledged, and must not outvote acknowledged records.
        """
        keys: list[pa.Array] = []
        offsets: list[pa.Array] = []
        for base in bases:
            if base > hw.segment_base:
                break  # left by a roll that hw does not show yet: not acknowledged
            fd = self._reader(base)
            size = hw.position if base == hw.segment_base else os.fstat(fd).st_size
            for _, header, payload in self._batches(fd, base, 0, size):
                batch = decode_records(header, payload)
                keys.append(batch.column(2))
                offsets.append(batch.column(0))
        if not keys:
            return np.empty(0, dtype=np.int64)
        table = pa.table({"key": pa.concat_arrays(keys), "offset": pa.concat_arrays(offsets)})
        table = table.filter(pc.is_valid(table.column("key")))
        latest = table.group_by("key").aggregate([("offset", "max")]).column("offset_max")
        return np.sort(latest.to_numpy())

    def _compact_segment(
        self, base: int, winners: np.ndarray, config: TopicConfig, now_ms: int
    ) -> tuple[int, int, int] | None:
        fd = self._reader(base)
        size = os.fstat(fd).st_size
        path = self._path(base, "log")
        kept: list[tuple[BatchHeader, pa.RecordBatch]] = []
        removed = 0
        for _, header, payload in self._batches(fd, base, 0, size):
            stored = decode_stored(header, payload)
            if now_ms - header.append_ms < config.min_compaction_lag_ms:
                kept.append((header, stored))
                continue
            offsets = stored.column(0).to_numpy().astype(np.int64) + header.base_offset
            slot = np.minimum(np.searchsorted(winners, offsets), max(len(winners) - 1, 0))
            is_latest = winners[slot] == offsets if len(winners) else np.zeros(len(offsets), bool)
            keep = is_latest | np.asarray(pc.is_null(stored.column(2)))
            if now_ms - header.append_ms > config.delete_retention_ms:
                keep &= np.asarray(pc.is_valid(stored.column(3)))
            dropped = int(len(keep) - keep.sum())
            removed += dropped
            kept.append((header, stored.filter(pa.array(keep)) if dropped else stored))
        if removed == 0:
            return None
        tmp_log = path.with_name(path.name + ".cleaned")
        out = os.open(tmp_log, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            at = 0
            for header, stored in kept:
                if stored.num_rows == 0:
                    continue
                packed, payload, _ = encode_batch(
                    stored,
                    header.base_offset,
                    header.append_ms,
                    config.compression,
                    last_delta=header.last_delta,
                    attributes=header.attributes | ATTR_COMPACTED,
                )
                at += _write_all(out, [packed, *payload], at)
            os.fsync(out)
            index = build_index(out, tmp_log, at, base)
        finally:
            os.close(out)
        tmp_index = self._path(base, "index.cleaned")
        tmp_index.write_bytes(index)
        tmp_log.replace(path)
        tmp_index.replace(self._path(base, "index"))
        return removed, size, at


def _write_all(fd: int, buffers: list[Any], at: int) -> int:
    """Write ``buffers`` at ``at`` with as few ``pwritev`` calls as possible; returns bytes."""
    views = [memoryview(b).cast("B") for b in buffers]
    total = 0
    while views:
        written = os.pwritev(fd, views[:_IOV_MAX], at + total)
        total += written
        # A short write (disk nearly full) leaves the rest to write: skip what went out.
        while views and written >= views[0].nbytes:
            written -= views.pop(0).nbytes
        if views and written:
            views[0] = views[0][written:]
    return total


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
