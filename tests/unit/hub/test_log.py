"""The embedded log's storage rules: segments, indexes, recovery, retention, compaction."""

from __future__ import annotations

import errno
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from trunkline.errors import CorruptSegment, InvalidRecord, OffsetOutOfRange, StorageFull
from trunkline.hub import CleanupPolicy, Compression, Record, TopicConfig
from trunkline.hub._segment import HEADER_SIZE, list_segments
from trunkline.hub.embedded import EmbeddedHub

DAY = 24 * 3600 * 1000


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with EmbeddedHub(tmp_path / "hub") as hub:
        yield hub


def values(hub: EmbeddedHub, topic: str, partition: int = 0, start: int | None = None) -> list:
    """All (offset, key, value) of a partition, read in small fetches."""
    out = []
    offset = hub.start_offsets(topic)[partition] if start is None else start
    end = hub.end_offsets(topic)[partition]
    while offset < end:
        batch = hub.fetch(topic, partition, offset, max_records=7)
        out += [(m.offset, m.key, m.value) for m in batch.messages()]
        offset = batch.next_offset
    return out


def seg_dir(hub: EmbeddedHub, topic: str, partition: int = 0) -> Path:
    return hub.path / "topics" / topic / str(partition)


def test_segments_roll_and_reads_cross_them(hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(segment_bytes=4096))
    for i in range(50):
        hub.produce("t", [Record(f"value-{i}-".encode() * 20, key=str(i).encode())])
    bases = list_segments(seg_dir(hub, "t"))
    assert len(bases) > 5
    assert bases[0] == 0
    got = values(hub, "t")
    assert [o for o, _, _ in got] == list(range(50))
    assert got[33][2] == b"value-33-" * 20
    # A fetch that starts in the middle of a later segment.
    assert hub.fetch("t", 0, 41, max_records=1).records.column("offset").to_pylist() == [41]


def test_segment_rolls_by_age(hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(segment_ms=0))
    for _ in range(3):
        hub.produce("t", [Record(b"x")])
    assert len(list_segments(seg_dir(hub, "t"))) == 3


def test_index_is_rebuilt_when_missing_or_garbage(hub: EmbeddedHub, tmp_path: Path) -> None:
    hub.create_topic("t")
    for i in range(200):
        hub.produce("t", [Record(b"v" * 200, key=str(i).encode())])
    index = seg_dir(hub, "t") / f"{0:020d}.index"
    assert index.stat().st_size > 0
    hub.close()
    index.write_bytes(os.urandom(50))
    with EmbeddedHub(tmp_path / "hub") as reopened:
        assert [o for o, _, _ in values(reopened, "t", start=150)] == list(range(150, 200))
    index.unlink()
    with EmbeddedHub(tmp_path / "hub") as reopened:
        assert reopened.fetch("t", 0, 123, max_records=1).records.column("offset")[0].as_py() == 123


@pytest.mark.parametrize("compression", list(Compression))
def test_compression_round_trip(tmp_path: Path, compression: Compression) -> None:
    with EmbeddedHub(tmp_path / "hub") as hub:
        hub.create_topic("t", TopicConfig(compression=compression))
        payload = [f"repetitive payload {i % 3}".encode() * 50 for i in range(500)]
        hub.produce("t", [Record(v) for v in payload])
        assert [v for _, _, v in values(hub, "t")] == payload
        size = hub.describe_topic("t").partitions[0].size_bytes
        assert size is not None
        if compression is not Compression.NONE:
            assert size < sum(map(len, payload)) / 4


def test_retention_by_time_deletes_closed_segments_only(hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(segment_bytes=2048, retention_ms=DAY))
    for _ in range(20):
        hub.produce("t", [Record(b"x" * 300)])
    before = list_segments(seg_dir(hub, "t"))
    hub.maintain(now=None)  # nothing is a day old yet
    assert list_segments(seg_dir(hub, "t")) == before
    report = hub.maintain(now=_now() + 2 * DAY)
    after = list_segments(seg_dir(hub, "t"))
    assert after == [before[-1]]  # the active segment survives
    assert report.segments_deleted == len(before) - 1
    assert hub.start_offsets("t") == {0: before[-1]}
    with pytest.raises(OffsetOutOfRange) as caught:
        hub.fetch("t", 0, 0)
    assert caught.value.start == before[-1]


def test_retention_counts_from_append_time_not_record_time(hub: EmbeddedHub) -> None:
    # Backfilled records stamped years ago are not deleted on arrival, and records stamped
    # far in the future do not pin their segment.
    hub.create_topic("t", TopicConfig(segment_bytes=1024, retention_ms=DAY))
    for i in range(10):
        stamp = 0 if i % 2 else 10**14
        hub.produce("t", [Record(b"y" * 300, timestamp=stamp)])
    before = list_segments(seg_dir(hub, "t"))
    assert hub.maintain().segments_deleted == 0
    assert hub.maintain(now=_now() + 2 * DAY).segments_deleted == len(before) - 1


def test_retention_by_bytes(hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(segment_bytes=2048, retention_ms=None, retention_bytes=5000))
    for _ in range(30):
        hub.produce("t", [Record(b"z" * 400)])
    hub.maintain()
    size = hub.describe_topic("t").partitions[0].size_bytes
    assert size is not None
    assert size <= 5000 + 2048  # whole segments only: up to one segment over
    assert len(values(hub, "t")) > 0


def test_compaction_keeps_latest_per_key_and_offsets(hub: EmbeddedHub) -> None:
    config = TopicConfig(
        cleanup_policy=CleanupPolicy.COMPACT, segment_bytes=2048, delete_retention_ms=DAY
    )
    hub.create_topic("t", config)
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    rng = random.Random(7)
    for i in range(300):
        key = f"k{rng.randrange(20)}".encode()
        value = None if rng.random() < 0.1 else f"v{i}".encode()
        offset = hub.produce("t", [Record(value, key=key)]).offsets[0].as_py()
        latest[key] = (offset, value)
    before = values(hub, "t")
    report = hub.maintain()
    assert report.records_compacted > 0
    after = values(hub, "t")
    assert len(after) < len(before)
    # Offsets never change and stay in order.
    offsets = [o for o, _, _ in after]
    assert offsets == sorted(offsets)
    assert set(after) <= set(before)
    # The latest record of every key survives (tombstones too, within delete_retention).
    final = {k: (o, v) for o, k, v in after}
    assert final == latest
    # Records in the active segment are never touched.
    active = list_segments(seg_dir(hub, "t"))[-1]
    assert [r for r in before if r[0] >= active] == [r for r in after if r[0] >= active]
    # Once delete_retention has passed, tombstones go as well (outside the active segment).
    hub.maintain(now=_now() + 2 * DAY)
    gone = values(hub, "t")
    assert all(v is not None for o, _, v in gone if o < active)


def test_compaction_respects_min_lag(hub: EmbeddedHub) -> None:
    config = TopicConfig(
        cleanup_policy=CleanupPolicy.COMPACT, segment_bytes=1024, min_compaction_lag_ms=DAY
    )
    hub.create_topic("t", config)
    for i in range(40):
        hub.produce("t", [Record(f"v{i}".encode() * 30, key=b"same")])
    assert hub.maintain().records_compacted == 0
    assert hub.maintain(now=_now() + 2 * DAY).records_compacted > 0


def test_compact_delete_does_both(hub: EmbeddedHub) -> None:
    config = TopicConfig(
        cleanup_policy=CleanupPolicy.COMPACT_DELETE, segment_bytes=1024, retention_ms=DAY
    )
    hub.create_topic("t", config)
    for i in range(40):
        hub.produce("t", [Record(f"v{i}".encode() * 30, key=f"k{i % 3}".encode())])
    assert hub.maintain().records_compacted > 0
    assert hub.maintain(now=_now() + 3 * DAY).segments_deleted > 0


def test_max_message_bytes(hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(max_message_bytes=1000))
    with pytest.raises(InvalidRecord, match="max_message_bytes"):
        hub.produce("t", [Record(b"a"), Record(b"b" * 2000)])
    assert hub.end_offsets("t") == {0: 0}
    hub.produce("t", [Record(b"c" * 600) for _ in range(10)])  # split into several batches
    assert len(values(hub, "t")) == 10


def test_torn_tail_is_truncated_and_reported(tmp_path: Path) -> None:
    with EmbeddedHub(tmp_path / "hub") as hub:
        hub.create_topic("t")
        for i in range(10):
            hub.produce("t", [Record(f"v{i}".encode())])
    log = tmp_path / "hub" / "topics" / "t" / "0" / f"{0:020d}.log"
    size = log.stat().st_size
    with log.open("ab") as f:
        f.write(os.urandom(333))
    with EmbeddedHub(tmp_path / "hub") as hub:
        assert len(hub.recovery_reports) == 1
        report = hub.recovery_reports[0]
        assert report.position == size
        assert report.removed_bytes == 333
        assert "torn tail" in str(report)
        assert [v for _, _, v in values(hub, "t")] == [f"v{i}".encode() for i in range(10)]
        hub.produce("t", [Record(b"after")])
        assert values(hub, "t")[-1] == (10, None, b"after")
    assert log.stat().st_size > size


def test_truncated_active_segment_recovers_to_last_whole_batch(tmp_path: Path) -> None:
    with EmbeddedHub(tmp_path / "hub") as hub:
        hub.create_topic("t")
        for i in range(10):
            hub.produce("t", [Record(f"value-{i}".encode() * 10)])
    log = tmp_path / "hub" / "topics" / "t" / "0" / f"{0:020d}.log"
    batch = log.stat().st_size // 10
    os.truncate(log, batch * 6 + HEADER_SIZE + 3)
    with EmbeddedHub(tmp_path / "hub") as hub:
        (report,) = hub.recovery_reports
        assert report.missing_bytes == batch * 4
        assert report.missing_from_offset == 6
        assert "lost" in str(report)
        assert hub.end_offsets("t") == {0: 6}
        assert [o for o, _, _ in values(hub, "t")] == list(range(6))


def test_truncation_at_a_batch_boundary_is_reported(tmp_path: Path) -> None:
    with EmbeddedHub(tmp_path / "hub") as hub:
        hub.create_topic("t")
        for i in range(10):
            hub.produce("t", [Record(f"value-{i}".encode() * 10)])
    log = tmp_path / "hub" / "topics" / "t" / "0" / f"{0:020d}.log"
    batch = log.stat().st_size // 10
    os.truncate(log, batch * 8)
    with EmbeddedHub(tmp_path / "hub") as hub:
        (report,) = hub.recovery_reports
        assert report.removed_bytes == 0
        assert report.missing_bytes == batch * 2
        assert hub.end_offsets("t") == {0: 8}


def test_corruption_inside_the_active_segment_is_an_error(tmp_path: Path) -> None:
    with EmbeddedHub(tmp_path / "hub") as hub:
        hub.create_topic("t")
        for i in range(10):
            hub.produce("t", [Record(f"value-{i}".encode() * 10)])
    log = tmp_path / "hub" / "topics" / "t" / "0" / f"{0:020d}.log"
    hw = log.parent / "hw"
    hw.write_bytes(b"")  # force a full check of the active segment
    data = bytearray(log.read_bytes())
    data[len(data) // 3] ^= 0x40
    log.write_bytes(bytes(data))
    with pytest.raises(CorruptSegment, match=r"followed by valid batches") as caught:
        EmbeddedHub(tmp_path / "hub")
    assert caught.value.path == str(log)
    assert log.stat().st_size == len(data)  # nothing was truncated


def test_bit_flip_in_closed_segment_fails_the_read(tmp_path: Path) -> None:
    with EmbeddedHub(tmp_path / "hub") as hub:
        hub.create_topic("t", TopicConfig(segment_bytes=2048))
        for i in range(30):
            hub.produce("t", [Record(f"v{i}".encode() * 40)])
        bases = list_segments(seg_dir(hub, "t"))
    closed = tmp_path / "hub" / "topics" / "t" / "0" / f"{bases[0]:020d}.log"
    data = bytearray(closed.read_bytes())
    position = HEADER_SIZE + 10
    data[position] ^= 0x01
    closed.write_bytes(bytes(data))
    with EmbeddedHub(tmp_path / "hub") as hub:
        with pytest.raises(CorruptSegment) as caught:
            values(hub, "t")
        assert caught.value.path == str(closed)
        assert caught.value.position == 0
        assert str(closed) in str(caught.value)
        # Later segments still read.
        assert len(values(hub, "t", start=bases[1])) > 0


def test_disk_full_rolls_back_and_recovers(
    hub: EmbeddedHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.create_topic("t", TopicConfig(segment_bytes=4096))
    hub.produce("t", [Record(b"before" * 100)])
    real = os.pwritev
    calls = {"n": 0}

    def failing(fd: int, buffers: list, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            # A short write, then no space: the partial bytes must not survive.
            return real(fd, [memoryview(buffers[0])[:10]], offset)
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", failing)
    with pytest.raises(StorageFull, match="nothing was acknowledged"):
        hub.produce("t", [Record(b"x" * 3000) for _ in range(4)])
    monkeypatch.setattr(os, "pwritev", real)
    assert calls["n"] == 2
    # The segment the failed append rolled to is gone again.
    assert list_segments(seg_dir(hub, "t")) == [0]
    assert hub.end_offsets("t") == {0: 1}
    assert values(hub, "t") == [(0, None, b"before" * 100)]
    hub.produce("t", [Record(b"after")])
    assert [v for _, _, v in values(hub, "t")] == [b"before" * 100, b"after"]


def test_fetch_never_returns_more_than_the_watermark(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    hub.produce("t", [Record(b"acked")])
    log = seg_dir(hub, "t") / f"{0:020d}.log"
    # Bytes beyond the watermark (a writer mid-append) are invisible to readers.
    with log.open("ab") as f:
        f.write(b"\x00" * 100)
    assert values(hub, "t") == [(0, None, b"acked")]


def test_reopen_after_delete_and_recreate(hub: EmbeddedHub, tmp_path: Path) -> None:
    hub.create_topic("t")
    hub.produce("t", [Record(b"old")])
    with EmbeddedHub(tmp_path / "hub") as other:
        other.delete_topic("t")
        other.create_topic("t", TopicConfig(partitions=2))
        other.produce("t", [Record(b"new")], partition=0)
    assert values(hub, "t") == [(0, None, b"new")]
    assert len(hub.describe_topic("t").partitions) == 2


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "file.txt").write_text("hi")
    with pytest.raises(Exception, match="not a trunkline hub"):
        EmbeddedHub(tmp_path / "stuff")


def test_arrow_headers_as_map(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    headers = pa.array([[("a", b"1")], []], pa.map_(pa.string(), pa.binary()))
    hub.produce("t", pa.table({"value": [b"x", b"y"], "headers": headers}))
    got = list(hub.fetch("t", 0, 0).messages())
    assert got[0].headers == (("a", b"1"),)
    assert got[1].headers == ()


def _now() -> int:
    import time

    return time.time_ns() // 1_000_000


def test_fetched_columns_are_aligned(hub: EmbeddedHub) -> None:
    # Arrow (and engines scanning Arrow, such as DuckDB through Acero) need naturally
    # aligned buffers; batches start at multiples of 8 and are read into aligned memory.
    hub.create_topic("t")
    for i in range(20):
        hub.produce("t", [Record(b"v" * (i * 7 + 1), key=b"k" * i, timestamp=i)])
    batch = hub.fetch("t", 0, 0, max_records=1000)
    for column in batch.records.columns:
        for chunk in column.chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    assert buffer.address % 8 == 0


def test_random_truncations_and_garbage_recover_to_a_prefix(tmp_path: Path) -> None:
    """Cut the active segment anywhere, or append any garbage: open keeps a whole prefix."""
    source = tmp_path / "source"
    with EmbeddedHub(source) as hub:
        hub.create_topic("t")
        for i in range(40):
            hub.produce("t", [Record(f"v{i}-{j}".encode() * (i % 5 + 1)) for j in range(i % 3 + 1)])
        expected = values(hub, "t")
    segment = Path("topics/t/0") / f"{0:020d}.log"
    size = (source / segment).stat().st_size
    rng = random.Random(2026)
    for round_no in range(40):
        copy = tmp_path / f"round-{round_no}"
        shutil.copytree(source, copy)
        log = copy / segment
        if round_no % 2:
            os.truncate(log, rng.randrange(size))
        else:
            with log.open("ab") as f:
                f.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        with EmbeddedHub(copy) as hub:
            got = values(hub, "t")
            assert got == expected[: len(got)], f"round {round_no}: not a prefix"
            if round_no % 2 == 0:
                assert got == expected, "appended garbage must not cost a record"
            assert hub.recovery_reports, "recovery must report what it truncated"
            hub.produce("t", [Record(b"next")])
            assert values(hub, "t")[-1][2] == b"next"
