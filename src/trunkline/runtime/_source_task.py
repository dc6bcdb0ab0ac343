"""Running a source: poll it, write its batches to the hub durably, checkpoint it.

Exactly once into the hub, for sources with stable record ids
(:attr:`~trunkline.connectors.base.SourceBatch.ids`): every record written carries the
header ``trunkline.source-id`` (``<source>/<id>``), and each checkpoint saves, beside the
source's state, the end offsets of the topics it writes. After a crash the source resumes
from its last checkpoint and so reads some records again; before writing anything, the
task reads its topics from those saved end offsets to the current ends, collects the ids
it finds there (only what was written after the checkpoint: a short read), and drops the
records with those ids when the source reads them again. A produce that was cut short
across partitions is covered too, because ids are per record.

The source's ``transforms`` run on each batch after that recovery and before the produce
(a ``route`` splits it by topic); what a transform dead-letters carries the record's id,
so it is recognised after a crash like what was written. A batch with ``on_delivery``
(the ``http`` source) learns there what became of it; a batch the hub refuses as invalid
(a contract with policy ``reject``) is then reported to it, and the source goes on.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.connectors.base import (
    ConnectorContext,
    DeadLetter,
    Delivery,
    Source,
    SourceBatch,
    SourceSettings,
    dead_letter_topic,
)
from trunkline.connectors.transforms import Transforms, route_topics
from trunkline.errors import InvalidRecord, LeaseLost, TopicNotFound
from trunkline.hub import Hub, _template
from trunkline.hub._types import HEADER_TYPE
from trunkline.runtime._deadletters import ID_HEADER, HubDeadLetters
from trunkline.runtime._lineage import record_lineage
from trunkline.runtime._metrics import TaskMetrics
from trunkline.runtime._task import Task, TaskEnv

__all__ = ["SourceTask", "produced_ids", "with_header"]

#: Once this many batches in a row matched no recovered id, the recovered ids are dropped.
_STALE_BATCHES = 8


def with_header(records: pa.Table, key: str, values: pa.Array) -> pa.Table:
    """``records`` with one more header ``(key, values[i])`` on each record, vectorised."""
    n = records.num_rows
    keys = pa.repeat(pa.scalar(key, pa.string()), n)
    entries = pa.StructArray.from_arrays(
        [keys, values.cast(pa.binary())], fields=list(HEADER_TYPE.value_type)
    )
    if "headers" not in records.column_names:
        offsets = pa.array(np.arange(n + 1, dtype=np.int32))
        headers = pa.ListArray.from_arrays(offsets, entries, type=HEADER_TYPE)
        return records.append_column("headers", headers)
    old = records.column("headers").combine_chunks().cast(HEADER_TYPE)
    lengths = pc.fill_null(pc.list_value_length(old), 0).to_numpy(zero_copy_only=False)
    flat = old.flatten()
    # Row i's old entries move to starts[i]..., its new entry to the end of its list.
    firsts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
    starts = np.concatenate([[0], np.cumsum(lengths + 1)]).astype(np.int64)
    rows = np.repeat(np.arange(n), lengths)
    old_at = starts[:-1][rows] + (np.arange(len(flat)) - firsts[rows])
    order = np.empty(len(flat) + n, dtype=np.int64)
    order[old_at] = np.arange(len(flat))
    order[starts[1:] - 1] = len(flat) + np.arange(n)
    child = pa.concat_arrays([flat, entries]).take(pa.array(order))
    headers = pa.ListArray.from_arrays(pa.array(starts.astype(np.int32)), child, type=HEADER_TYPE)
    return records.set_column(records.column_names.index("headers"), "headers", headers)


def produced_ids(hub: Hub, topic: str, source: str, since: dict[int, int]) -> set[bytes]:
    """The ``trunkline.source-id`` values of ``source`` in ``topic`` after ``since``."""
    prefix = f"{source}/".encode()
    found: set[bytes] = set()
    try:
        ends = hub.end_offsets(topic)
        starts = hub.start_offsets(topic)
    except TopicNotFound:
        return found
    for partition, end in ends.items():
        offset = max(since.get(partition, starts[partition]), starts[partition])
        while offset < end:
            batch = hub.fetch(topic, partition, offset, max_records=50_000)
            headers = batch.records.column("headers").combine_chunks()
            flat = headers.flatten()
            if len(flat):
                keys = flat.field("key")
                values = flat.field("value").filter(pc.equal(keys, ID_HEADER))
                found.update(v for v in values.to_pylist() if v and v.startswith(prefix))
            offset = batch.next_offset
    return found


class SourceTask(Task):
    """One life of a source: open from the checkpoint, poll, produce, checkpoint, close."""

    kind = "source"

    def __init__(
        self,
        name: str,
        type_name: str,
        source_class: type[Source],
        config: SourceSettings,
        env: TaskEnv,
        metrics: TaskMetrics,
    ) -> None:
        super().__init__(name, type_name, env, metrics)
        self.source_class = source_class
        self.config = config
        self.checkpoint_name = f"source-{name}"
        self._transforms = Transforms(())
        self._checkpoints = self.checkpoints

    def run_once(self, stop: threading.Event) -> None:
        env = self.env
        source = self.source_class(self.name, self.config)
        dead_letters = HubDeadLetters(env.hub, self.name, self.metrics, source_id=self.name)
        topics = [
            *source.topics(),
            *route_topics(self.config.transforms),
            dead_letter_topic(self.name),
        ]
        self._transforms = Transforms(self.config.transforms, connector=self.name, pii=env.pii)
        self._checkpoints = self.checkpoints
        saved = self._checkpoints.load(self.checkpoint_name)
        context = ConnectorContext(
            name=self.name,
            kind="source",
            root=env.root,
            hub=env.hub,
            meta=env.meta,
            checkpoints=self._checkpoints,
            dead_letters=dead_letters,
            log=self.log,
            metrics=self.metrics,
            run_id=env.run_id,
        )
        try:
            source.open(context, saved.get("state") if saved else None)
            record_lineage(context, source.lineage(), route_topics(self.config.transforms))
            recovered: set[bytes] = set()
            if saved is None:
                # Before the first record: from here on a crash has a bounded tail to read.
                self._checkpoint(source, topics)
            else:
                ends = saved.get("ends", {})
                for topic in topics:
                    since = {int(p): int(o) for p, o in ends.get(topic, {}).items()}
                    recovered |= produced_ids(env.hub, topic, self.name, since)
                if recovered:
                    self.log.info("%d records were written before the restart", len(recovered))
            self._loop(source, dead_letters, topics, recovered, stop)
            self._checkpoint(source, topics)
        finally:
            source.close()
            self._transforms.close()

    def _loop(
        self,
        source: Source,
        dead_letters: HubDeadLetters,
        topics: list[str],
        recovered: set[bytes],
        stop: threading.Event,
    ) -> None:
        interval = self.config.checkpoint_interval / 1000
        next_checkpoint = time.monotonic() + interval
        quiet = 0
        dirty = False
        reading = False
        while not stop.is_set():
            self.metrics.activity("busy" if reading else "idle")
            batch = source.poll(0.2)
            reading = batch is not None
            self.metrics.activity("busy")
            if batch is not None:
                hits = self._deliver(batch, dead_letters, recovered)
                dirty = True
                self.progressed = True
                quiet = 0 if hits else quiet + 1
                if recovered and quiet >= _STALE_BATCHES:
                    recovered.clear()
                self.metrics.position = batch.position
            backlog = source.backlog()
            if backlog is not None:
                self.metrics.gauge(f"backlog_{source.backlog_unit}", backlog)
            if time.monotonic() >= next_checkpoint:
                if dirty:
                    self._checkpoint(source, topics)
                    dirty = False
                next_checkpoint = time.monotonic() + interval
        self.metrics.activity("idle")

    def _deliver(
        self, batch: SourceBatch, dead_letters: HubDeadLetters, recovered: set[bytes]
    ) -> int:
        """Write ``batch`` and tell its ``on_delivery``; returns the ids recognised."""
        report = batch.on_delivery
        try:
            hits, delivery = self._produce(batch, dead_letters, recovered)
        except InvalidRecord as exc:
            if report is None:
                raise
            self.log.info("%s: a batch for %s was refused: %s", self.name, batch.topic, exc)
            report(Delivery(error=exc))
            return 0
        except BaseException as exc:
            if report is not None:
                report(Delivery(error=exc))
            raise
        if report is not None:
            report(delivery)
        return hits

    def _produce(
        self, batch: SourceBatch, dead_letters: HubDeadLetters, recovered: set[bytes]
    ) -> tuple[int, Delivery]:
        """Write ``batch`` (minus what was written before a crash); returns ids recognised."""
        if not self.lease_valid():
            # Another process may own the source by now: what it reads again is its to write.
            raise LeaseLost(f"source {self.name!r}: its lease ran out; not writing the batch")
        hits = 0
        records = batch.records
        ids = batch.ids if batch.ids is not None and len(batch.ids) == records.num_rows else None
        full = None
        if ids is not None:
            full = pc.binary_join_element_wise(
                pa.scalar(f"{self.name}/".encode()), ids.cast(pa.binary()), b""
            )
            if recovered and len(full):
                seen = pc.is_in(full, value_set=pa.array(list(recovered), pa.binary()))
                hits = int(pc.sum(seen).as_py() or 0)
                if hits:
                    recovered.difference_update(pc.filter(full, seen).to_pylist())
                    keep = pc.invert(seen)
                    records, full, ids = (
                        records.filter(keep),
                        pc.filter(full, keep),
                        ids.filter(keep),
                    )
        letters = list(batch.dead_letters)
        letter_ids = list(batch.dead_letter_ids)
        if letters and len(letter_ids) == len(letters) and recovered:
            wanted = [
                i
                for i, id_ in enumerate(letter_ids)
                if f"{self.name}/{id_}".encode() not in recovered
            ]
            hits += len(letters) - len(wanted)
            letters = [letters[i] for i in wanted]
            letter_ids = [letter_ids[i] for i in wanted]
        if len(letter_ids) != len(letters):
            letter_ids = []
        topics = None
        filtered = transform_dead = 0
        if self._transforms and records.num_rows:
            records = _template.rendered_table(records)
            out = self._transforms.apply(records.column("value"), batch.topic)
            if out.dead:
                lost = self._transform_letters(batch, records, out.dead, ids)
                if ids is not None and (letter_ids or not letters):
                    rows = pa.array([row for row, _ in out.dead], pa.int64())
                    letter_ids += ids.take(rows).cast(pa.string()).to_pylist()
                else:
                    letter_ids = []
                letters += lost
                transform_dead = len(lost)
            keep = pa.array(out.rows, pa.int64())
            records = records.take(keep)
            records = records.set_column(records.column_names.index("value"), "value", out.values)
            if full is not None:
                full = full.take(keep)
            topics, filtered = out.topics, out.filtered
            if filtered:
                self.metrics.count("filtered", filtered)
        written = contract_dead = 0
        if records.num_rows:
            if full is not None:
                records = with_header(records, ID_HEADER, full)
            for topic, part in _by_topic(batch.topic, records, topics):
                result = self.env.hub.produce(topic, part)
                dropped = int(getattr(result, "dead_lettered", 0) or 0)
                contract_dead += dropped
                written += part.num_rows - dropped
            self.metrics.count("records", records.num_rows)
            self.metrics.count("bytes", float(_value_bytes(records.column("value"))))
        if letters:
            dead_letters.write(letters, letter_ids)
        return hits, Delivery(written, contract_dead + transform_dead, filtered)

    def _transform_letters(
        self,
        batch: SourceBatch,
        records: pa.Table,
        dead: list[tuple[int, str]],
        ids: pa.Array | None,
    ) -> list[DeadLetter]:
        rows = pa.array([row for row, _ in dead], pa.int64())
        values = records.column("value").take(rows).to_pylist()
        keys = (
            records.column("key").take(rows).to_pylist()
            if "key" in records.column_names
            else [None] * len(dead)
        )
        named = (
            ids.take(rows).cast(pa.string()).to_pylist() if ids is not None else [None] * len(dead)
        )
        position = batch.position if batch.position is not None else ""
        return [
            DeadLetter(
                value=value,
                key=key,
                error=error,
                stage="transform",
                origin=f"{self.name}:{name}" if name is not None else f"{self.name}@{position}",
                details={"topic": batch.topic},
            )
            for value, key, (_, error), name in zip(values, keys, dead, named, strict=True)
        ]

    def _checkpoint(self, source: Source, topics: list[str]) -> None:
        started = time.perf_counter()
        state = source.snapshot()
        ends: dict[str, Any] = {}
        for topic in topics:
            try:
                ends[topic] = {str(p): o for p, o in self.env.hub.end_offsets(topic).items()}
            except TopicNotFound:
                continue
        size = self._checkpoints.save(self.checkpoint_name, {"state": state, "ends": ends})
        self.metrics.gauge("checkpoint_seconds", round(time.perf_counter() - started, 4))
        self.metrics.gauge("checkpoint_bytes", size)
        self.metrics.count("checkpoints")


def _by_topic(topic: str, records: pa.Table, topics: pa.Array | None) -> list[tuple[str, pa.Table]]:
    """The records per target topic (one group unless a ``route`` chose topics)."""
    if topics is None:
        return [(topic, records)]
    encoded = topics.dictionary_encode()
    names = encoded.dictionary.to_pylist()
    if len(names) == 1:
        return [(str(names[0]), records)]
    indices = encoded.indices
    return [
        (str(name), records.filter(pc.equal(indices, pa.scalar(i, indices.type))))
        for i, name in enumerate(names)
    ]


def _value_bytes(values: pa.ChunkedArray) -> int:
    if _template.is_template(values.type):
        return sum(int(_template.rendered_lengths(c).sum()) for c in values.chunks)
    return int(pc.sum(pc.binary_length(values)).as_py() or 0)
