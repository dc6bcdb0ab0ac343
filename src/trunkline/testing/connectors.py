"""The connector conformance suites: what every source and every sink must do, written once.

A connector's test module subclasses :class:`SourceConformance` or :class:`SinkConformance`
and provides a few fixtures (listed on each class) that say how to configure the
connector, how to feed it input and how to read what it wrote. Every built-in connector
runs through these suites in ``tests/conformance/test_connectors.py``; a third-party
connector should too.

Example (a sink)::

    class TestMySink(SinkConformance):
        sink_type = "my_sink"

        @pytest.fixture
        def settings(self, tmp_path):
            return {"topics": ["t"], "url": str(tmp_path / "target")}

        @pytest.fixture
        def read_target(self, settings):
            return lambda: my_client(settings["url"]).rows()
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from trunkline.config import ConfigModel
from trunkline.connectors import SINKS, SOURCES
from trunkline.connectors.base import (
    ConnectorContext,
    DeadLetter,
    Delivery,
    JSONValue,
    LineageDataset,
    Sink,
    SinkSettings,
    Source,
    SourceBatch,
    SourceSettings,
)
from trunkline.hub import FETCH_SCHEMA, FetchedBatch, Hub, TopicPartition

__all__ = [
    "RecordingDeadLetters",
    "RecordingMetrics",
    "SinkConformance",
    "SourceConformance",
    "fetched",
    "make_context",
]


class RecordingDeadLetters:
    """A dead-letter writer that keeps what it is given, for tests."""

    def __init__(self, topic: str = "test.dlq") -> None:
        self.topic = topic
        self.letters: list[DeadLetter] = []
        self.records: list[tuple[str, int, int, str]] = []  # topic, partition, offset, error

    def write(self, letters: Sequence[DeadLetter], ids: Sequence[str] = ()) -> None:
        self.letters += letters

    def write_records(
        self,
        batch: FetchedBatch,
        rows: Sequence[int],
        errors: Sequence[str],
        *,
        topic: str,
        stage: str = "sink",
    ) -> None:
        offsets = batch.records.column("offset").to_pylist()
        self.records += [
            (topic, batch.partition, offsets[r], e) for r, e in zip(rows, errors, strict=True)
        ]


@dataclass
class RecordingMetrics:
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)

    def count(self, name: str, value: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + value

    def gauge(self, name: str, value: float) -> None:
        self.gauges[name] = value


class _MemoryCheckpoints:
    def __init__(self) -> None:
        self.saved: dict[str, JSONValue] = {}

    def load(self, name: str) -> JSONValue | None:
        return self.saved.get(name)

    def save(self, name: str, state: JSONValue) -> int:
        text = json.dumps(state)
        self.saved[name] = json.loads(text)
        return len(text)


def make_context(
    root: Path, name: str = "test", kind: str = "sink", hub: Hub | None = None
) -> ConnectorContext:
    """A context for running a connector in a test, without a runtime or a catalog."""
    return ConnectorContext(
        name=name,
        kind="sink" if kind == "sink" else "source",
        root=root,
        hub=hub,  # type: ignore[arg-type]  # connectors under test must not need the hub
        meta=None,
        checkpoints=_MemoryCheckpoints(),
        dead_letters=RecordingDeadLetters(f"{name}.dlq"),
        log=logging.getLogger(f"trunkline.test.{name}"),
        metrics=RecordingMetrics(),
        run_id="test",
    )


def fetched(
    topic: str,
    partition: int,
    first_offset: int,
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None] | None = None,
) -> FetchedBatch:
    """A :class:`FetchedBatch` as a consumer would return it, built without a hub."""
    n = len(values)
    table = pa.table(
        {
            "offset": pa.array(range(first_offset, first_offset + n), pa.int64()),
            "timestamp": pa.array([1_700_000_000_000] * n, pa.int64()).cast(
                FETCH_SCHEMA.field("timestamp").type
            ),
            "key": pa.array(list(keys) if keys is not None else [None] * n, pa.binary()),
            "value": pa.array(list(values), pa.binary()),
            "headers": pa.array([[] for _ in range(n)], FETCH_SCHEMA.field("headers").type),
        },
        schema=FETCH_SCHEMA,
    )
    return FetchedBatch(topic, partition, table, first_offset + n)


def _check_settings_model(model: type[ConfigModel], base: type[ConfigModel]) -> None:
    assert issubclass(model, base), f"Config must extend {base.__name__}"
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("frozen") is True
    undocumented = [n for n, f in model.model_fields.items() if not f.description]
    assert not undocumented, f"fields without a description: {undocumented}"


# Sources -------------------------------------------------------------------------------


def _check_lineage(connector: Source | Sink) -> None:
    """What ``lineage`` names after ``open``: datasets, each for one of the connector's topics."""
    datasets = connector.lineage()
    assert all(isinstance(d, LineageDataset) for d in datasets), datasets
    assert {d.topic for d in datasets} <= set(connector.topics()), datasets


def _written(batch: SourceBatch | None) -> SourceBatch | None:
    """Play the runtime after a produce: tell the batch it is durable."""
    if batch is not None and batch.on_delivery is not None:
        batch.on_delivery(Delivery(written=batch.records.num_rows))
    return batch


def _drain(source: Source, limit: int = 1000, timeout: float = 0.05) -> list[SourceBatch]:
    """Poll until the source returns nothing (acknowledging each batch as the runtime does)."""
    batches = []
    for _ in range(limit):
        batch = _written(source.poll(timeout))
        if batch is None:
            break
        batches.append(batch)
    return batches


def _values(batches: Sequence[SourceBatch]) -> list[bytes]:
    return [v for b in batches for v in b.values().to_pylist()]


class SourceConformance:
    """Mix into a test class that sets ``source_type`` and provides these fixtures:

    * ``settings``: valid settings (as written in trunkline.yaml, without ``type``), making
      the source read several small batches;
    * ``add_input``: a function that adds new input for ``n`` records and returns their
      values as the source will write them (bytes);
    * ``add_bad_input``: a function that adds input with bad parts; it returns
      ``(good_values, bad_count)``.

    Input may also arrive after ``open`` (a server that clients push to): set
    ``poll_timeout`` to how long the source may be quiet before it counts as drained.
    A source whose values carry what the input cannot predict (a log position, a time)
    overrides :meth:`comparable`.
    """

    source_type: str = ""
    poll_timeout: float = 0.05

    def comparable(self, value: bytes) -> bytes:
        """The part of a written value the checks compare with ``add_input``'s: all of it."""
        return value

    def _values(self, batches: Sequence[SourceBatch]) -> list[bytes]:
        return [self.comparable(v) for v in _values(batches)]

    def make(self, settings: dict[str, Any], name: str = "src") -> Source:
        source_class = SOURCES.get(self.source_type)
        return source_class(name, source_class.Config.model_validate(settings))  # type: ignore[no-any-return]

    @pytest.fixture
    def context(self, tmp_path: Path) -> ConnectorContext:
        return make_context(tmp_path, "src", kind="source")

    def test_registered_with_a_strict_config(self, settings: dict[str, Any]) -> None:
        source_class = SOURCES.get(self.source_type)
        assert issubclass(source_class, Source)
        _check_settings_model(source_class.Config, SourceSettings)
        with pytest.raises(ValidationError, match="no_such_setting"):
            source_class.Config.model_validate({**settings, "no_such_setting": 1})

    def test_lifecycle(
        self,
        settings: dict[str, Any],
        context: ConnectorContext,
        add_input: Callable[[int], list[bytes]],
    ) -> None:
        source = self.make(settings)
        assert source.topics()
        expected = add_input(50)
        source.open(context, None)
        _check_lineage(source)
        batches = _drain(source, timeout=self.poll_timeout)
        assert sorted(self._values(batches)) == sorted(expected)
        assert all(b.topic in source.topics() for b in batches)
        json.dumps(source.snapshot())  # checkpoints are JSON
        source.close()
        source.close()  # idempotent

    def test_close_without_open(self, settings: dict[str, Any]) -> None:
        self.make(settings).close()

    def test_restart_from_snapshot_without_loss_or_duplication(
        self,
        settings: dict[str, Any],
        context: ConnectorContext,
        add_input: Callable[[int], list[bytes]],
    ) -> None:
        expected = add_input(200)
        first = self.make(settings)
        first.open(context, None)
        before = [_written(first.poll(self.poll_timeout)) for _ in range(2)]
        delivered = self._values([b for b in before if b is not None])
        state = json.loads(json.dumps(first.snapshot()))
        first.close()
        expected += add_input(100)
        second = self.make(settings)
        second.open(context, state)
        delivered += self._values(_drain(second, timeout=self.poll_timeout))
        second.close()
        assert Counter(delivered) == Counter(expected)

    def test_replayed_records_keep_their_ids(
        self,
        settings: dict[str, Any],
        context: ConnectorContext,
        add_input: Callable[[int], list[bytes]],
    ) -> None:
        source_class = SOURCES.get(self.source_type)
        if not source_class.capabilities.exactly_once:
            pytest.skip("this source does not promise stable record ids")
        add_input(120)
        first = self.make(settings)
        first.open(context, None)
        start = json.loads(json.dumps(first.snapshot()))
        batches = _drain(first)
        first.close()
        again = self.make(settings)
        again.open(context, start)
        replayed = _drain(again)
        again.close()
        ids = [i for b in batches if b.ids is not None for i in b.ids.to_pylist()]
        assert ids, "an exactly-once source gives every record an id"
        assert len(set(ids)) == len(ids), "ids must be unique"
        assert ids == [i for b in replayed if b.ids is not None for i in b.ids.to_pylist()]

    def test_bad_input_goes_to_dead_letters(
        self,
        settings: dict[str, Any],
        context: ConnectorContext,
        add_bad_input: Callable[[], tuple[list[bytes], int]],
    ) -> None:
        good, bad = add_bad_input()
        source = self.make(settings)
        source.open(context, None)
        batches = _drain(source, timeout=self.poll_timeout)
        source.close()
        letters = [letter for b in batches for letter in b.dead_letters]
        assert sorted(self._values(batches)) == sorted(good)
        assert len(letters) == bad, [letter.origin for letter in letters]
        for letter in letters:
            assert letter.error and letter.origin and letter.stage == "source"


# Sinks ---------------------------------------------------------------------------------


def _records(start: int, count: int, *, key_space: int | None = None) -> list[bytes]:
    rows = []
    for i in range(start, start + count):
        key = i if key_space is None else i % key_space
        rows.append(json.dumps({"id": key, "seq": i, "name": f"n{i}"}).encode())
    return rows


class SinkConformance:
    """Mix into a test class that sets ``sink_type`` and provides these fixtures:

    * ``settings``: valid settings for a sink reading topic ``t`` (no ``type``);
    * ``read_target``: a function returning the rows in the target now, as dicts
      (call it after the sink is closed);
    * ``upsert_settings`` (optional, for sinks with the ``upsert`` capability): settings
      that upsert by the key ``[id]``.

    Records are JSON objects ``{"id", "seq", "name"}``; ``seq`` is unique per record.
    """

    sink_type: str = ""

    def make(self, settings: dict[str, Any], name: str = "snk") -> Sink:
        sink_class = SINKS.get(self.sink_type)
        return sink_class(name, sink_class.Config.model_validate(settings))  # type: ignore[no-any-return]

    @pytest.fixture
    def context(self, tmp_path: Path) -> ConnectorContext:
        return make_context(tmp_path, "snk", kind="sink")

    def _run(
        self, sink: Sink, context: ConnectorContext, batches: Sequence[FetchedBatch]
    ) -> dict[TopicPartition, int]:
        sink.open(context)
        _check_lineage(sink)
        tps = {TopicPartition(b.topic, b.partition) for b in batches}
        sink.assign(tps or {TopicPartition("t", 0)})
        for batch in batches:
            sink.write_batch(batch.topic, batch)
        sink.drain()
        offsets = sink.snapshot()
        sink.close()
        return offsets

    def test_registered_with_a_strict_config(self, settings: dict[str, Any]) -> None:
        sink_class = SINKS.get(self.sink_type)
        assert issubclass(sink_class, Sink)
        _check_settings_model(sink_class.Config, SinkSettings)
        with pytest.raises(ValidationError, match="no_such_setting"):
            sink_class.Config.model_validate({**settings, "no_such_setting": 1})
        with pytest.raises(ValidationError):
            sink_class.Config.model_validate({**settings, "topics": []})

    def test_lifecycle_and_snapshot_offsets(
        self,
        settings: dict[str, Any],
        context: ConnectorContext,
        read_target: Callable[[], list[dict[str, Any]]],
    ) -> None:
        sink = self.make(settings)
        assert sink.topics() == ("t",)
        offsets = self._run(sink, context, [fetched("t", 0, 0, _records(0, 10))])
        assert offsets == {TopicPartition("t", 0): 10}
        sink.close()  # idempotent
        rows = read_target()
        assert sorted(r["seq"] for r in rows) == list(range(10))

    def test_close_without_open(self, settings: dict[str, Any]) -> None:
        self.make(settings).close()

    def test_restart_from_snapshot(
        self,
        settings: dict[str, Any],
        context: ConnectorContext,
        read_target: Callable[[], list[dict[str, Any]]],
    ) -> None:
        """Written and snapshotted, then written without a snapshot, then a restart."""
        values = _records(0, 60)
        first = self.make(settings)
        first.open(context)
        first.assign([TopicPartition("t", 0)])
        first.write_batch("t", fetched("t", 0, 0, values[:20]))
        committed = first.snapshot().get(TopicPartition("t", 0), 0)
        assert committed == 20
        first.write_batch("t", fetched("t", 0, 20, values[20:40]))
        first.close()  # a crash: the second batch was never snapshotted
        second = self.make(settings)
        second.open(context)
        resume = second.assign([TopicPartition("t", 0)]).get(TopicPartition("t", 0), committed)
        assert committed <= resume <= 40
        second.write_batch("t", fetched("t", 0, resume, values[resume:]))
        second.drain()
        assert second.snapshot()[TopicPartition("t", 0)] == 60
        second.close()
        seqs = Counter(r["seq"] for r in read_target())
        assert set(seqs) == set(range(60)), "no record may be lost"
        if SINKS.get(self.sink_type).capabilities.exactly_once:
            assert max(seqs.values()) == 1, "an exactly-once sink writes each record once"

    def test_bad_records_go_to_dead_letters(
        self,
        settings: dict[str, Any],
        context: ConnectorContext,
        read_target: Callable[[], list[dict[str, Any]]],
    ) -> None:
        values: list[bytes | None] = list(_records(0, 5))
        values[2] = b"{not json"
        self._run(self.make(settings), context, [fetched("t", 0, 0, values)])
        dead = context.dead_letters
        assert isinstance(dead, RecordingDeadLetters)
        assert [(t, p, o) for t, p, o, _ in dead.records] == [("t", 0, 2)]
        assert sorted(r["seq"] for r in read_target()) == [0, 1, 3, 4]

    def test_new_fields_are_kept(
        self,
        settings: dict[str, Any],
        context: ConnectorContext,
        read_target: Callable[[], list[dict[str, Any]]],
    ) -> None:
        sink = self.make(settings)
        later = [json.dumps({"id": 9, "seq": 9, "name": "x", "extra": 1.5}).encode()]
        self._run(sink, context, [fetched("t", 0, 0, _records(0, 3)), fetched("t", 0, 3, later)])
        rows = {r["seq"]: r for r in read_target()}
        assert rows[9]["extra"] == 1.5
        assert rows[0].get("extra") is None

    def test_upsert_replaces_and_deletes(
        self,
        request: pytest.FixtureRequest,
        context: ConnectorContext,
        read_target: Callable[[], list[dict[str, Any]]],
    ) -> None:
        if not SINKS.get(self.sink_type).capabilities.upsert:
            pytest.skip("this sink does not upsert")
        settings = request.getfixturevalue("upsert_settings")
        values: list[bytes | None] = list(_records(0, 30, key_space=10))
        keys: list[bytes | None] = [str(i % 10).encode() for i in range(30)]
        values.append(None)  # a tombstone deletes id 3
        keys.append(b"3")
        self._run(self.make(settings), context, [fetched("t", 0, 0, values, keys)])
        rows = {r["id"]: r["seq"] for r in read_target()}
        assert rows == {i: 20 + i for i in range(10) if i != 3}
