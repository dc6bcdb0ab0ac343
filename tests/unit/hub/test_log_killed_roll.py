"""A writer killed in the middle of a segment roll, while another process keeps appending.

The roll creates ``<next offset>.log`` (and writes into it) before the high watermark moves.
A writer killed in that window leaves the previous segment and ``hw`` untouched, so another
process's cached tail still looks valid; it must notice the new segment and recover instead
of appending to the old one (which gave two batches the same offsets: records lost or hidden).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trunkline.hub import Record, TopicConfig
from trunkline.hub._segment import list_segments
from trunkline.hub.embedded import EmbeddedHub


def _read(hub: EmbeddedHub) -> list[tuple[int, bytes | None]]:
    rows: list[tuple[int, bytes | None]] = []
    offset, end = 0, hub.end_offsets("t")[0]
    while offset < end:
        batch = hub.fetch("t", 0, offset, max_records=3)
        rows += [(m.offset, m.value) for m in batch.messages()]
        offset = batch.next_offset
    return rows


def _fill(hub: EmbeddedHub, count: int) -> int:
    """Produce ``count`` records one by one; returns the next offset."""
    for _ in range(count):
        hub.produce("t", [Record(b"b" * 400)])
    return count


def test_empty_segment_left_by_a_killed_roll(tmp_path: Path) -> None:
    path = tmp_path / "hub"
    with EmbeddedHub(path) as other:
        other.create_topic("t", TopicConfig(segment_bytes=64 * 1024))
        end = _fill(other, 29)  # `other` now holds a cached tail of segment 0
        part = path / "topics" / "t" / "0"
        # What a writer killed right after _roll's os.open leaves: an empty next segment.
        (part / f"{end:020d}.log").touch()
        (part / f"{end:020d}.index").touch()
        acked = other.produce("t", [Record(b"acked")]).as_pairs()
    with EmbeddedHub(path) as reopened:
        assert reopened.end_offsets("t") == {0: end + 1}
        rows = _read(reopened)
    assert [o for o, _ in rows] == list(range(end + 1))
    assert acked == [(0, end)]
    assert rows[end] == (end, b"acked")
    assert list_segments(part) == [0, end]


def test_complete_batch_left_by_a_killed_roll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hub"
    with EmbeddedHub(path) as other:
        # 4400 bytes: a small batch still fits after the first one, a 2 x 400-byte one does not.
        other.create_topic("t", TopicConfig(segment_bytes=4400))
        other.produce("t", [Record(b"b" * 3000)])  # `other` caches the tail of segment 0
        with EmbeddedHub(path) as killed:
            # Killed after the batch reached the new segment, before the watermark moved.
            monkeypatch.setattr(killed.partition_log("t", 0), "_write_hw", lambda tail: None)
            killed.produce("t", [Record(b"a0" * 200), Record(b"a1" * 200)])  # rolls to 1
        assert list_segments(path / "topics" / "t" / "0") == [0, 1]
        acked = other.produce("t", [Record(b"b1")]).as_pairs()
    with EmbeddedHub(path) as reopened:
        rows = _read(reopened)
    # The killed writer's complete batch is kept (recovery keeps whole batches), the other
    # writer continues after it, and every offset is stored once.
    assert rows == [(0, b"b" * 3000), (1, b"a0" * 200), (2, b"a1" * 200), (3, b"b1")]
    assert acked == [(0, 3)]
