"""Running a sink: fetch through its consumer group, batch, write, snapshot, commit.

The loop, per life:

1. Follow the group's assignment: before partitions move, snapshot and commit; tell the
   sink what it lost (:meth:`~trunkline.connectors.base.Sink.revoke`) and gained
   (:meth:`~trunkline.connectors.base.Sink.assign`), and seek to the offsets an
   exactly-once sink keeps in its target.
2. Fetch while the process's memory budget has room, and buffer per partition until the
   sink's ``batch_records``, ``batch_bytes`` or ``linger`` says to write.
3. Write each partition's buffered records with one ``write_batch``, then
   ``snapshot`` and commit the offsets it returns (write, then commit: at-least-once).
   A sink that applies batches in the background (the DuckDB and PostgreSQL sinks) is
   not waited for:
   the offsets its :meth:`~trunkline.connectors.base.Sink.durable` reports are committed
   as they come, while the next batch is fetched and decoded.
4. On :class:`~trunkline.errors.Backpressure`, seek back to the first record not written,
   drop the buffers (memory goes back to the budget), keep the group membership alive
   without fetching, and try again after ``retry_after``.

The sink's ``transforms`` run on each merged batch just before ``write_batch`` (records a
``filter`` drops are left out, the batch's ``next_offset`` still covers them; records a
``cast`` cannot convert go to the dead-letter topic with stage ``transform``).

Records replayed from dead letters arrive through the sink's retry topic with a
``trunkline.topic`` header; they are written in runs of the same original topic, each
with the offsets it covers, so exactly-once sinks stay exactly-once for them too.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import pyarrow as pa

from trunkline.connectors.base import (
    ConnectorContext,
    Sink,
    SinkSettings,
    retry_topic,
)
from trunkline.connectors.transforms import Transforms
from trunkline.errors import Backpressure, NotAssigned, TopicNotFound
from trunkline.hub import FetchedBatch, TopicPartition
from trunkline.runtime._deadletters import HubDeadLetters, ensure_topic
from trunkline.runtime._lineage import record_lineage
from trunkline.runtime._metrics import TaskMetrics
from trunkline.runtime._reader import LeasedReader
from trunkline.runtime._task import Task, TaskEnv

__all__ = ["SinkTask", "group_of"]

#: Seconds between lag measurements.
LAG_INTERVAL = 2.0
#: Records fetched to probe a sink that pushed back.
_PROBE = 100
#: Longest wait for records in one poll (a stopping task notices within this).
_POLL = 0.1
#: Seconds between snapshots while written records are not yet durable in the sink.
_SNAPSHOT_EVERY = 0.5
#: Longest wait for records while a sink applies a batch in the background.
_DURABLE_POLL = 0.005


class Reader(Protocol):
    """What the sink task needs of a consumer (a group member or a :class:`LeasedReader`)."""

    def poll(self, timeout: float = 1.0, max_records: int = 10_000) -> list[FetchedBatch]: ...

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def close(self) -> None: ...


def group_of(sink: str) -> str:
    """The consumer group of a sink."""
    return f"sink-{sink}"


class _Buffer:
    """Fetched batches of one partition waiting to be written."""

    def __init__(self) -> None:
        self.batches: list[FetchedBatch] = []
        self.records = 0
        self.bytes = 0

    def add(self, batch: FetchedBatch, size: int) -> None:
        self.batches.append(batch)
        self.records += len(batch)
        self.bytes += size

    @property
    def first_offset(self) -> int:
        first = self.batches[0].first_offset
        return first if first is not None else self.batches[0].next_offset

    def merged(self) -> FetchedBatch:
        first, last = self.batches[0], self.batches[-1]
        if len(self.batches) == 1:
            return first
        # Batches as the hub read them: values held as templates stay so.
        parts = [part for b in self.batches for part in b.batches]
        return FetchedBatch(
            first.topic, first.partition, next_offset=last.next_offset, batches=parts
        )


def _runs_by_topic(batch: FetchedBatch) -> Iterable[tuple[str, FetchedBatch]]:
    """Retry-topic records in runs of one original topic (the ``trunkline.topic`` header)."""
    headers = batch.records.column("headers").to_pylist()
    topics = []
    for entry in headers:
        found = next((h["value"] for h in entry or () if h["key"] == "trunkline.topic"), None)
        topics.append((found or b"").decode())
    offsets = batch.records.column("offset")
    start = 0
    for i in range(1, len(topics) + 1):
        if i == len(topics) or topics[i] != topics[start]:
            part = batch.records.slice(start, i - start)
            nxt = batch.next_offset if i == len(topics) else int(offsets[i].as_py())
            if topics[start]:
                yield topics[start], FetchedBatch(batch.topic, batch.partition, part, nxt)
            start = i


class SinkTask(Task):
    """One life of a sink in this process."""

    kind = "sink"

    def __init__(
        self,
        name: str,
        type_name: str,
        sink_class: type[Sink],
        config: SinkSettings,
        env: TaskEnv,
        metrics: TaskMetrics,
    ) -> None:
        super().__init__(name, type_name, env, metrics)
        self.sink_class = sink_class
        self.config = config
        self.retry_topic = retry_topic(name)
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self._buffered_records = 0
        self._buffered_bytes = 0
        self._oldest = 0.0
        self._owned: set[TopicPartition] = set()
        self._paused_until = 0.0
        self._next_lag = 0.0
        self._probing = False
        self._record_size = 1024.0
        self._unreported: dict[TopicPartition, int] = {}
        self._next_snapshot = 0.0
        self._fetching = False
        self._background = False
        self._transforms = Transforms(())
        self._dead_letters: HubDeadLetters | None = None

    # -- one life ---------------------------------------------------------------------

    def run_once(self, stop: threading.Event) -> None:
        env = self.env
        sink = self.sink_class(self.name, self.config)
        self._dead_letters = HubDeadLetters(env.hub, self.name, self.metrics)
        self._transforms = Transforms(self.config.transforms, connector=self.name, pii=env.pii)
        context = ConnectorContext(
            name=self.name,
            kind="sink",
            root=env.root,
            hub=env.hub,
            meta=env.meta,
            checkpoints=self.checkpoints,
            dead_letters=self._dead_letters,
            log=self.log,
            metrics=self.metrics,
            run_id=env.run_id,
        )
        self._owned = set()
        self._unreported = {}
        consumer: Reader | None = None
        try:
            sink.open(context)
            record_lineage(context, sink.lineage())
            topics = [*sink.topics(), self.retry_topic]
            ensure_topic(env.hub, self.retry_topic)
            consumer = self._reader(topics)
            self._loop(sink, consumer, stop)
            # Draining: what was fetched is written and committed before leaving, unless the
            # lease was lost: the new holder reads it again from the last commit.
            if self.lease_valid():
                self._flush(sink, consumer, draining=True)
            self._measure_lag()
        finally:
            self._drop_buffers()
            if consumer is not None:
                consumer.close()
            sink.close()
            self._transforms.close()

    def _reader(self, topics: list[str]) -> Reader:
        """Exclusive sinks read every partition under their lease; others join the group."""
        hub, group = self.env.hub, group_of(self.name)
        if self.sink_class.capabilities.exclusive:
            return LeasedReader(hub, group, topics)
        join: Any = hub.consumer
        if "session_timeout_ms" in inspect.signature(join).parameters:
            return join(  # type: ignore[no-any-return]
                group,
                topics,
                client=self.env.client,
                session_timeout_ms=self.config.session_timeout,
            )
        return hub.consumer(group, topics, client=self.env.client)

    def _loop(self, sink: Sink, consumer: Reader, stop: threading.Event) -> None:
        config = self.config
        linger = config.linger / 1000
        while not stop.is_set():
            self._follow_assignment(sink, consumer)
            now = time.monotonic()
            if now < self._paused_until:
                self.metrics.activity("backpressured")
                stop.wait(min(0.2, self._paused_until - now))
                continue
            if not self.env.budget.has_room():
                if self._buffered_records:
                    self._flush(sink, consumer)
                else:
                    self.metrics.activity("backpressured")
                    self.env.budget.wait_for_room(0.2)
                continue
            wait = linger - (now - self._oldest) if self._buffered_records else 0.5
            if self._unreported and self._background:
                wait = min(wait, _DURABLE_POLL)  # commit soon after the sink's worker is done
            # Fetching while records keep coming is work; waiting for them is idling.
            self.metrics.activity("busy" if self._fetching else "idle")
            batches = consumer.poll(max(0.0, min(wait, _POLL)), max_records=self._room())
            self._fetching = bool(batches)
            self.metrics.activity("busy")
            for batch in batches:
                self._buffer(consumer, batch)
            if self._buffered_records and (
                self._probing
                or self._buffered_records >= config.batch_records
                or self._buffered_bytes >= config.batch_bytes
                or time.monotonic() - self._oldest >= linger
            ):
                self._flush(sink, consumer)
            elif self._unreported and (self._background or time.monotonic() >= self._next_snapshot):
                # Written, but not durable yet in the sink's view (a file still open, a
                # batch still being applied): ask again, even when no new records come.
                self._snapshot_and_commit(sink, consumer, self._owned, wait=not self._background)
            if time.monotonic() >= self._next_lag:
                self._measure_lag()
        self.metrics.activity("idle")

    def _room(self) -> int:
        """Records to fetch now: what the batch (records and bytes) and the memory budget
        have room for, by the running estimate of record size.

        After backpressure only a few records are fetched, to probe whether the sink takes
        data again, instead of a whole batch that might be dropped once more.
        """
        if self._probing:
            return _PROBE
        budget = self.env.budget
        size = max(1.0, self._record_size)
        by_memory = int(max(0, budget.limit - budget.used) / size)
        by_bytes = int(max(0, self.config.batch_bytes - self._buffered_bytes) / size)
        by_batch = self.config.batch_records - self._buffered_records
        return max(1, min(by_memory, by_bytes, by_batch))

    # -- partitions -------------------------------------------------------------------

    def _follow_assignment(self, sink: Sink, consumer: Reader) -> None:
        assignment = consumer.assignment()
        if assignment == self._owned:
            return
        lost = self._owned - assignment
        gained = assignment - self._owned
        if lost:
            for tp in lost:
                self._drop_buffer(tp)
            self._snapshot_and_commit(sink, consumer, assignment)
            sink.revoke(lost)
            for tp in lost:
                self._unreported.pop(tp, None)
        if gained:
            resume = sink.assign(gained)
            for tp, offset in resume.items():
                if tp in gained:
                    consumer.seek(tp, offset)
        self._owned = set(assignment)
        self.metrics.gauge("partitions", len(self._owned))

    # -- buffering --------------------------------------------------------------------

    def _buffer(self, consumer: Reader, batch: FetchedBatch) -> None:
        if not len(batch):
            return
        tp = TopicPartition(batch.topic, batch.partition)
        if tp not in self._owned:
            # The group handed this partition over inside poll(): the sink has not been told
            # yet (and may keep its own offset for it). Read it again once it has.
            first = batch.first_offset
            consumer.seek(tp, batch.next_offset if first is None else first)
            return
        size = batch.nbytes
        if not self._buffered_records:
            self._oldest = time.monotonic()
        self._buffers.setdefault(tp, _Buffer()).add(batch, size)
        self._buffered_records += len(batch)
        self._buffered_bytes += size
        # A running estimate of record size, to fetch no more than the budget has room for.
        self._record_size = 0.8 * self._record_size + 0.2 * (size / len(batch))
        self.env.budget.take(size)
        self.metrics.gauge("buffered_bytes", self._buffered_bytes)

    def _drop_buffer(self, tp: TopicPartition) -> None:
        buffer = self._buffers.pop(tp, None)
        if buffer is not None:
            self._buffered_records -= buffer.records
            self._buffered_bytes -= buffer.bytes
            self.env.budget.give(buffer.bytes)

    def _drop_buffers(self) -> None:
        for tp in list(self._buffers):
            self._drop_buffer(tp)

    # -- writing ----------------------------------------------------------------------

    def _flush(self, sink: Sink, consumer: Reader, *, draining: bool = False) -> None:
        """Write every buffered partition, then snapshot and commit."""
        pending = list(self._buffers.items())
        for i, (tp, buffer) in enumerate(pending):
            batch = buffer.merged()
            try:
                if tp.topic == self.retry_topic:
                    for topic, run in _runs_by_topic(batch):
                        sink.write_batch(topic, self._transformed(topic, run))
                else:
                    sink.write_batch(tp.topic, self._transformed(tp.topic, batch))
            except Backpressure as exc:
                self._back_off(sink, consumer, pending[i:], exc)
                return
            self._unreported[tp] = batch.next_offset
            self.metrics.count("records", len(batch))
            self.metrics.count("bytes", buffer.bytes)
            self._drop_buffer(tp)
            self.progressed = True
            self._probing = False
        if draining:
            sink.drain()
        # A sink that applies batches in the background is not waited for: the next batch
        # is fetched and decoded while it applies this one.
        self._snapshot_and_commit(sink, consumer, self._owned, wait=draining)

    def _transformed(self, topic: str, batch: FetchedBatch) -> FetchedBatch:
        """``batch`` after the sink's transforms (the same batch without any)."""
        if not self._transforms or not len(batch):
            return batch
        out = self._transforms.apply(batch.records.column("value"), topic)
        if out.dead and self._dead_letters is not None:
            self._dead_letters.write_records(
                batch,
                [row for row, _ in out.dead],
                [error for _, error in out.dead],
                topic=topic,
                stage="transform",
            )
        if out.filtered:
            self.metrics.count("filtered", out.filtered)
        records = batch.records.take(pa.array(out.rows, pa.int64()))
        column = records.column_names.index("value")
        records = records.set_column(column, records.schema.field(column), out.values)
        return FetchedBatch(batch.topic, batch.partition, records, batch.next_offset)

    def _back_off(
        self,
        sink: Sink,
        consumer: Reader,
        unwritten: list[tuple[TopicPartition, _Buffer]],
        exc: Backpressure,
    ) -> None:
        """Give back what was not written; fetch it again once the sink can take it."""
        for tp, buffer in unwritten:
            if tp in self._owned:
                consumer.seek(tp, buffer.first_offset)
            self._drop_buffer(tp)
        self._snapshot_and_commit(sink, consumer, self._owned)
        self._paused_until = time.monotonic() + exc.retry_after
        self._probing = True
        self.metrics.count("backpressure")
        self.metrics.activity("backpressured")
        self.log.info("%s: backpressure, pausing %.1fs", self.name, exc.retry_after)

    def _snapshot_and_commit(
        self, sink: Sink, consumer: Reader, owned: set[TopicPartition], *, wait: bool = True
    ) -> None:
        """Commit what the sink says is durable: all that was written (``wait``), or what
        already is (:meth:`~trunkline.connectors.base.Sink.durable`, when the sink can tell)."""
        started = time.perf_counter()
        durable = None if wait else sink.durable()
        if not wait:
            self._background = durable is not None
        offsets = sink.snapshot() if durable is None else durable
        self._next_snapshot = time.monotonic() + _SNAPSHOT_EVERY
        for tp, offset in offsets.items():
            if self._unreported.get(tp, -1) <= offset:
                self._unreported.pop(tp, None)
        mine = {tp: o for tp, o in offsets.items() if tp in owned}
        if mine:
            try:
                consumer.commit(mine)
            except NotAssigned as exc:
                # Moved to another member meanwhile: the new owner resumes from the target's
                # offsets (exactly-once sinks) or from the last commit (a replay).
                self.log.info("%s: commit skipped: %s", self.name, exc)
        if offsets:
            text = json.dumps({f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()})
            if durable is None:  # a sink applying in the background times its own
                self.metrics.gauge("checkpoint_seconds", round(time.perf_counter() - started, 4))
            self.metrics.gauge("checkpoint_bytes", len(text))
            self.metrics.count("checkpoints")
            self.metrics.position = {f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()}

    # -- lag --------------------------------------------------------------------------

    def _measure_lag(self) -> None:
        """Records not yet committed, and the age of the oldest of them, over owned partitions."""
        self._next_lag = time.monotonic() + LAG_INTERVAL
        hub = self.env.hub
        group = group_of(self.name)
        records = 0
        oldest = 0.0
        now_ms = time.time() * 1000
        for topic in {tp.topic for tp in self._owned}:
            try:
                ends = hub.end_offsets(topic)
                committed = hub.committed(group, topic)
                starts = hub.start_offsets(topic)
            except TopicNotFound:
                continue
            for tp in (tp for tp in self._owned if tp.topic == topic):
                done = committed.get(tp.partition, starts.get(tp.partition, 0))
                behind = max(0, ends.get(tp.partition, 0) - done)
                records += behind
                if behind:
                    fetched = hub.fetch(
                        topic, tp.partition, max(done, starts[tp.partition]), max_records=1
                    )
                    if len(fetched):
                        stamp = fetched.records.column("timestamp").cast(pa.int64())[0].as_py()
                        oldest = max(oldest, (now_ms - stamp) / 1000)
        self.metrics.gauge("lag_records", records)
        self.metrics.gauge("lag_seconds", round(max(0.0, oldest), 3))
