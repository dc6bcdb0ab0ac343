"""Compaction and time lookups while other processes write, roll, compact or get killed.

* A writer killed in a roll leaves ``<next offset>.log`` behind — possibly with a torn batch —
  and ``hw`` unchanged; a live writer leaves the same picture for the moment between its roll
  and its ``hw`` write. Everything past the watermark is unacknowledged: the cleaner and
  ``offsets_for_time`` must not read it (it used to raise ``CorruptSegment`` from ``maintain``
  and return offsets nobody had acknowledged).
* Compaction replaces a segment's log, then its index. A compaction killed between the two
  renames leaves the old index next to the new log; the index is only a hint, so time lookups
  must check the batch header it points at, as offset lookups do.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trunkline.hub import CleanupPolicy, Record, TopicConfig
from trunkline.hub._segment import list_segments
from trunkline.hub.embedded import EmbeddedHub

T0 = 1_700_000_000_000


def _read(hub: EmbeddedHub) -> dict[int, tuple[bytes | None, bytes | None]]:
    rows: dict[int, tuple[bytes | None, bytes | None]] = {}
    offset, end = hub.start_offsets("t")[0], hub.end_offsets("t")[0]
    while offset < end:
        batch = hub.fetch("t", 0, offset, max_records=3)
        rows.update({m.offset: (m.key, m.value) for m in batch.messages()})
        offset = batch.next_offset
    return rows


@pytest.mark.parametrize("torn", [True, False])
def test_cleaner_and_time_lookup_stop_at_the_watermark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torn: bool
) -> None:
    path = tmp_path / "hub"
    config = TopicConfig(
        segment_bytes=2048, cleanup_policy=CleanupPolicy.COMPACT, retention_ms=None
    )
    with EmbeddedHub(path) as other:
        other.create_topic("t", config)
        for i in range(12):  # six closed segments of two records, key k0 written four times
            other.produce("t", [Record(b"v" * 300, key=f"k{i % 3}".encode(), timestamp=T0 + i)])
        part = path / "topics" / "t" / "0"
        assert list_segments(part) == [0, 2, 4, 6, 8, 10]
        with EmbeddedHub(path) as killed:
            # Killed after writing into the new segment, before the watermark moved.
            monkeypatch.setattr(killed.partition_log("t", 0), "_write_hw", lambda tail: None)
            killed.produce("t", [Record(b"w" * 1500, key=b"k0", timestamp=T0 + 100)])
        assert list_segments(part) == [0, 2, 4, 6, 8, 10, 12]
        if torn:
            new = part / f"{12:020d}.log"
            os.truncate(new, new.stat().st_size - 100)
        assert other.end_offsets("t") == {0: 12}
        # `other` has not appended since: nothing recovered the partition yet.
        report = other.maintain()  # raised CorruptSegment when torn
        assert report.segments_compacted > 0
        rows = _read(other)
        # The latest acknowledged record of every key survives compaction.
        assert {
            key: max((o for o, (k, _) in rows.items() if k == key), default=None)
            for key in (b"k0", b"k1", b"k2")
        } == {b"k0": 9, b"k1": 10, b"k2": 11}
        # No acknowledged record is at or after T0 + 50: the answer is "none", not offset 12.
        assert other.offsets_for_time("t", T0 + 50) == {0: None}
        assert other.offsets_for_time("t", T0 + 5) == {0: 9}  # 5 to 8 compacted away
    with EmbeddedHub(path) as reopened:  # recovery keeps the whole unacknowledged batch
        end = reopened.end_offsets("t")[0]
        assert end == (12 if torn else 13)
        rows = _read(reopened)
        assert max(o for o, (k, _) in rows.items() if k == b"k0") == (9 if torn else 12)


def test_time_lookup_after_compaction_killed_between_its_renames(tmp_path: Path) -> None:
    path = tmp_path / "hub"
    config = TopicConfig(
        segment_bytes=16 * 1024, cleanup_policy=CleanupPolicy.COMPACT, retention_ms=None
    )
    with EmbeddedHub(path) as hub:
        hub.create_topic("t", config)
        # Compaction removes one record from the first batch: every later batch moves by a
        # few bytes, so the old index entries point into the middle of batches.
        hub.produce(
            "t",
            [
                Record(b"a" * 200, key=b"dup", timestamp=T0),
                Record(b"b" * 200, key=b"x", timestamp=T0),
            ],
        )
        hub.produce("t", [Record(b"c" * 200, key=b"dup", timestamp=T0)])
        for i in range(2, 40):
            hub.produce("t", [Record(b"v" * 300, key=f"k{i}".encode(), timestamp=T0 + i)])
        part = path / "topics" / "t" / "0"
        index = part / f"{0:020d}.index"
        old_index = index.read_bytes()
        assert hub.maintain().records_compacted == 1
        assert index.read_bytes() != old_index
        # What a compaction killed after `tmp_log.replace(path)` leaves: new log, old index.
        index.write_bytes(old_index)
    with EmbeddedHub(path) as hub:
        # Offset i + 1 has timestamp T0 + i. Raised CorruptSegment ("header checksum
        # mismatch") before the fix: the old index points into the middle of a batch.
        assert hub.offsets_for_time("t", T0 + 20) == {0: 21}
        assert hub.offsets_for_time("t", T0 + 30) == {0: 31}
        assert hub.fetch("t", 0, 25, max_records=2).records.column("offset").to_pylist() == [
            25,
            26,
        ]


def test_reader_does_not_skip_a_segment_its_listing_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers cache the segment list; a listing made while a writer rolls can miss one.

    ``readdir`` makes no promise about entries created while it runs (ext4 returns them in
    hash order): a listing taken during two rolls can hold the newer segment and not the
    older one (seen in the stress test as ``[..., 22021, 22030]`` without 22024-22027). A
    reader that cached such a list skipped the missing segment's records once ``hw`` reached
    the newer segment, for good: its next offset jumped over them.
    """
    path = tmp_path / "hub"
    with EmbeddedHub(path) as writer, EmbeddedHub(path) as reader:
        writer.create_topic("t", TopicConfig(segment_bytes=1024, retention_ms=None))
        writer.produce("t", [Record(b"a" * 700)])
        writer.produce("t", [Record(b"b" * 700)])  # segments 0 and 1
        assert [m.offset for m in reader.fetch("t", 0, 0).messages()] == [0, 1]
        writer.produce("t", [Record(b"c" * 700)])  # rolls to 2: the reader lists again

        def listing_during_two_rolls(directory: Path) -> list[int]:
            writer.produce("t", [Record(b"d" * 700)])  # rolls to 3
            writer.produce("t", [Record(b"e" * 700)])  # rolls to 4
            return [b for b in list_segments(directory) if b != 3]  # readdir did not return 3

        monkeypatch.setattr("trunkline.hub._log.list_segments", listing_during_two_rolls)
        first = reader.fetch("t", 0, 1)
        monkeypatch.undo()
        assert [m.offset for m in first.messages()] == [1, 2]
        # hw now ends in segment 4, the last one of the cached listing.
        rest = reader.fetch("t", 0, first.next_offset)
        assert [(m.offset, (m.value or b"")[:1]) for m in rest.messages()] == [(3, b"d"), (4, b"e")]


def test_retention_keeps_the_watermark_segment_during_a_roll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The active segment is the one ``hw`` names; a newer file is a roll not yet acknowledged.

    Retention took "all but the newest file" as closed, so while a roll was pending (or left
    by a killed writer) it deleted the segment holding the acknowledged tail of the log.
    """
    path = tmp_path / "hub"
    with EmbeddedHub(path) as other:
        other.create_topic(
            "t", TopicConfig(segment_bytes=4400, retention_ms=None, retention_bytes=0)
        )
        other.produce("t", [Record(b"b" * 3000)])
        with EmbeddedHub(path) as killed:
            monkeypatch.setattr(killed.partition_log("t", 0), "_write_hw", lambda tail: None)
            killed.produce("t", [Record(b"a0" * 200), Record(b"a1" * 200)])  # rolls to 1
        assert list_segments(path / "topics" / "t" / "0") == [0, 1]
        assert other.maintain().segments_deleted == 0
        assert [m.value for m in other.fetch("t", 0, 0).messages()] == [b"b" * 3000]


def test_reader_cache_keeps_no_closed_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached segment that was compacted, then deleted by retention before it is reopened.

    ``_reader`` closed the stale descriptor, then failed to open the deleted file and left
    the closed number in its cache; evicting or closing the cache later closed that number
    again, by then another file's descriptor (a segment, ``hw``, ``.lock``...).
    """
    path = tmp_path / "hub"
    with EmbeddedHub(path) as hub:
        hub.create_topic("t", TopicConfig(segment_bytes=1024, retention_ms=None))
        for _ in range(3):
            hub.produce("t", [Record(b"a" * 700)])
        plog = hub.partition_log("t", 0)
        assert [m.offset for m in hub.fetch("t", 0, 0).messages()] == [0, 1, 2]
        stale_fd, _ = plog._readers[0]
        segment = plog.dir / f"{0:020d}.log"
        copy = segment.with_name("copy")
        copy.write_bytes(segment.read_bytes())
        copy.replace(segment)  # what compaction does: a new inode
        real_open = os.open

        def deleted_meanwhile(file: object, *args: object, **kwargs: object) -> int:
            if str(file) == str(segment):
                segment.unlink()  # retention, between the stat and the open
            return real_open(file, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", deleted_meanwhile)
        with pytest.raises(FileNotFoundError):
            plog._reader(0)
        monkeypatch.undo()
        assert all(fd != stale_fd for fd, _ in plog._readers.values())


def test_read_of_a_segment_closed_and_compacted_since_the_watermark_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader sizes ``hw``'s active segment by ``hw.position``; by the time it opens the file
    a writer may have rolled and another process compacted that segment to fewer bytes.

    Reading ``hw.position`` bytes of the compacted file came up short and raised
    ``CorruptSegment`` (seen in the stress test from ``offsets_for_time``; ``fetch`` shares
    the code). A segment closed since the watermark was read is complete: read all of it.
    """
    path = tmp_path / "hub"
    config = TopicConfig(
        segment_bytes=1024, cleanup_policy=CleanupPolicy.COMPACT, retention_ms=None
    )
    with EmbeddedHub(path) as writer, EmbeddedHub(path) as reader:
        writer.create_topic("t", config)
        writer.produce("t", [Record(b"1" * 700, key=b"a", timestamp=T0)])
        writer.produce("t", [Record(b"2" * 700, key=b"a", timestamp=T0 + 1)])  # segment 1
        plog = reader.partition_log("t", 0)
        real_reader = plog._reader
        state = {"raced": False}

        def roll_and_compact_first(base: int) -> int:
            if base == 1 and not state["raced"]:
                state["raced"] = True
                writer.produce("t", [Record(b"3" * 700, key=b"a", timestamp=T0 + 2)])
                assert writer.maintain().segments_compacted == 2  # segment 1 is now empty
            return real_reader(base)

        monkeypatch.setattr(plog, "_reader", roll_and_compact_first)
        first = reader.fetch("t", 0, 0)  # raised CorruptSegment
        assert state["raced"]
        assert [m.offset for m in first.messages()] == [0]  # its file was open before
        assert [m.offset for m in reader.fetch("t", 0, first.next_offset).messages()] == [2]
        state["raced"] = False
        # The same race in a time lookup: hw names segment 2, which is compacted meanwhile.
        monkeypatch.undo()

        def roll_and_compact_second(base: int) -> int:
            if base == 2 and not state["raced"]:
                state["raced"] = True
                writer.produce("t", [Record(b"4" * 700, key=b"a", timestamp=T0 + 3)])
                writer.maintain()
            return real_reader(base)

        monkeypatch.setattr(plog, "_reader", roll_and_compact_second)
        # Offset 2 was compacted away and 3 came after the lookup read hw: none (not a crash).
        assert reader.offsets_for_time("t", T0 + 2) == {0: None}
        assert state["raced"]
