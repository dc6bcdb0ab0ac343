"""Template values in the embedded hub: stored as fragments, read back as the same bytes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from trunkline.errors import InvalidRecord
from trunkline.hub import CleanupPolicy, Compression, Record, TopicConfig
from trunkline.hub._records import to_table
from trunkline.hub._template import check, is_template, render, rendered_lengths, template
from trunkline.hub.embedded import EmbeddedHub

DAY = 24 * 3600 * 1000


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with EmbeddedHub(tmp_path / "hub") as hub:
        yield hub


def _rows(n: int, first: int = 0, tombstones: tuple[int, ...] = ()) -> pa.Table:
    ids = [str(first + i) for i in range(n)]
    names = [f"name \u00e9 {first + i}" for i in range(n)]
    valid = pa.array([i not in tombstones for i in range(n)])
    value = template(['{"id":', ',"name":"', '"}'], [pa.array(ids), pa.array(names)], valid)
    keys = pa.array([i.encode() for i in ids], pa.binary())
    return pa.table({"key": keys, "value": value})


def _expected(table: pa.Table) -> list[bytes | None]:
    return render(table.column("value")).to_pylist()


def _read_all(hub: EmbeddedHub, topic: str, partition: int = 0, step: int = 1000) -> list:
    out = []
    offset = hub.start_offsets(topic)[partition]
    end = hub.end_offsets(topic)[partition]
    while offset < end:
        batch = hub.fetch(topic, partition, offset, max_records=step)
        out += [(m.offset, m.key, m.value) for m in batch.messages()]
        offset = batch.next_offset
    return out


def test_render_joins_texts_and_fragments() -> None:
    value = template(["<", "|", ">"], [pa.array(["a", "b"]), pa.array(["1", "2"])])
    assert render(value).to_pylist() == [b"<a|1>", b"<b|2>"]
    assert rendered_lengths(value).tolist() == [5, 5]
    constant = template(['{"x":1}'], [], length=3)
    assert render(constant).to_pylist() == [b'{"x":1}'] * 3
    assert not is_template(pa.struct([("a", pa.string())]))


@pytest.mark.parametrize("compression", list(Compression))
def test_a_template_is_stored_as_it_is_and_read_as_its_bytes(
    tmp_path: Path, compression: Compression
) -> None:
    with EmbeddedHub(tmp_path / "hub") as hub:
        hub.create_topic("t", TopicConfig(compression=compression))
        rows = _rows(500, tombstones=(3, 77))
        hub.produce("t", rows)
        hub.produce("t", [Record(b"plain", key=b"p")])
        batch = hub.fetch("t", 0, 0, max_records=10_000)
        assert batch.templated
        assert is_template(batch.batches[0].schema.field("value").type)
        assert batch.records.column("value").to_pylist() == [*_expected(rows), b"plain"]
        assert batch.records.column("key").to_pylist()[:2] == [b"0", b"1"]
        assert len(batch) == 501 and batch.first_offset == 0
    # After a restart (the log is recovered from disk) the same bytes come back.
    with EmbeddedHub(tmp_path / "hub") as hub:
        got = _read_all(hub, "t", step=7)
        assert [v for _, _, v in got] == [*_expected(rows), b"plain"]
        assert [o for o, _, _ in got] == list(range(501))


def test_a_fetch_from_the_middle_of_a_template_batch(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    rows = _rows(100)
    hub.produce("t", rows)
    batch = hub.fetch("t", 0, 40, max_records=5)
    assert batch.records.column("offset").to_pylist() == [40, 41, 42, 43, 44]
    assert batch.records.column("value").to_pylist() == _expected(rows)[40:45]


def test_large_template_produces_are_cut_into_batches_by_rendered_size(
    hub: EmbeddedHub,
) -> None:
    hub.create_topic("t")
    n = 60_000
    big = template(['{"pad":"', '"}'], [pa.array([f"{i:0100d}" for i in range(n)])], length=None)
    rows = pa.table({"value": big})
    hub.produce("t", rows)
    batch = hub.fetch("t", 0, 0, max_records=n, max_bytes=1 << 30)
    assert len(batch.batches) > 1  # ~6.5 MB rendered: more than one 4 MiB stored batch
    assert batch.records.column("value").to_pylist() == _expected(rows)


def test_max_message_bytes_counts_the_rendered_value(hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(max_message_bytes=1000))
    value = template(["[", "]"], [pa.array(["x" * 5000] + ["y"] * 3000)])
    with pytest.raises(InvalidRecord, match=r"5002 bytes .* exceeds the topic's max_message_bytes"):
        hub.produce("t", pa.table({"value": value}))
    assert hub.end_offsets("t") == {0: 0}


def test_keyed_templates_spread_over_partitions_like_bytes(hub: EmbeddedHub) -> None:
    hub.create_topic("a", TopicConfig(partitions=3))
    hub.create_topic("b", TopicConfig(partitions=3))
    rows = _rows(300)
    hub.produce("a", rows)
    hub.produce("b", to_table(rows, 0))  # the same records as bytes
    for partition in range(3):
        assert _read_all(hub, "a", partition) == _read_all(hub, "b", partition)


def test_compaction_rewrites_template_batches_and_keeps_the_latest(hub: EmbeddedHub) -> None:
    config = TopicConfig(
        cleanup_policy=CleanupPolicy.COMPACT, segment_bytes=4096, delete_retention_ms=DAY
    )
    hub.create_topic("t", config)
    rng = random.Random(3)
    latest: dict[bytes, bytes | None] = {}
    for round_ in range(40):
        ids = [str(rng.randrange(15)) for _ in range(5)]
        valid = [rng.random() > 0.1 for _ in ids]
        value = template(
            ['{"id":', ',"round":', "}"],
            [pa.array(ids), pa.array([str(round_)] * 5)],
            pa.array(valid),
        )
        rows = pa.table({"key": pa.array([i.encode() for i in ids], pa.binary()), "value": value})
        for key, rendered in zip(ids, render(value).to_pylist(), strict=True):
            latest[key.encode()] = rendered
        hub.produce("t", rows)
    before = _read_all(hub, "t")
    assert hub.maintain().records_compacted > 0
    after = _read_all(hub, "t")
    assert len(after) < len(before) and set(after) <= set(before)
    assert {k: v for _, k, v in after} == latest


def test_a_consumer_group_reads_templates_as_bytes(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    rows = _rows(50)
    hub.produce("t", rows)
    with hub.consumer("g", ["t"]) as consumer:
        got: list[bytes | None] = []
        for _ in range(20):
            for batch in consumer.poll(0.2):
                got += batch.records.column("value").to_pylist()
            if len(got) == 50:
                break
    assert got == _expected(rows)


def test_hubs_that_store_bytes_get_the_rendered_values() -> None:
    rows = _rows(10, tombstones=(4,))
    table = to_table(rows, 0)
    assert table.column("value").type == pa.binary()
    assert table.column("value").to_pylist() == _expected(rows)
    assert is_template(to_table(rows, 0, templates=True).column("value").type)


def test_a_null_fragment_in_a_present_value_is_refused(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    value = template(["<", ">"], [pa.array(["a", None, "c"])])
    with pytest.raises(InvalidRecord) as caught:
        hub.produce("t", pa.table({"value": value}))
    assert "template fragment 0 is null in record 1" in str(caught.value)
    assert hub.end_offsets("t") == {0: 0}
    # In a column of several chunks the record is counted from the first chunk's start.
    chunked = pa.chunked_array([template(["<", ">"], [pa.array(["a", "b"])]), value])
    with pytest.raises(InvalidRecord, match="template fragment 0 is null in record 3"):
        hub.produce("t", pa.table({"value": chunked}))
    # A null fragment in a tombstone is fine: the row has no value at all.
    check(template(["<", ">"], [pa.array(["a", None])], pa.array([True, False])))


def test_a_struct_that_is_not_a_template_is_refused(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    value = pa.StructArray.from_arrays([pa.array([1, 2])], names=["n"])
    with pytest.raises(InvalidRecord) as caught:
        hub.produce("t", pa.table({"value": value}))
    message = str(caught.value)
    assert "column 'value': expected binary, string or a template" in message
    assert "found struct<n: int64>" in message
