"""The runtime's parts, in one process: tasks, supervision, dead letters, figures, status."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest

from trunkline.connectors import SINKS
from trunkline.connectors.base import (
    Capabilities,
    ConnectorContext,
    DeadLetter,
    Delivery,
    Sink,
    SinkSettings,
    SourceBatch,
)
from trunkline.connectors.sources.files import FilesConfig, FilesSource
from trunkline.errors import (
    Backpressure,
    ConfigError,
    ConnectorError,
    IncompatibleChange,
    InvalidRecord,
)
from trunkline.hub import (
    CleanupPolicy,
    Compression,
    FetchedBatch,
    Record,
    TopicConfig,
    TopicPartition,
)
from trunkline.hub.embedded import EmbeddedHub
from trunkline.project import Project
from trunkline.runtime import Runner, RunOptions, read_dead_letters, read_status, replay
from trunkline.runtime._backoff import Backoff
from trunkline.runtime._budget import MemoryBudget
from trunkline.runtime._checkpoints import FileCheckpointStore
from trunkline.runtime._deadletters import ID_HEADER, HubDeadLetters
from trunkline.runtime._lag import Pipeline, lag_origin, lag_origins_here, status_row
from trunkline.runtime._lease import FileLease
from trunkline.runtime._metrics import TaskMetrics, prometheus_text
from trunkline.runtime._reader import LeasedReader
from trunkline.runtime._sink_task import SinkTask, _runs_by_topic
from trunkline.runtime._source_task import SourceTask, produced_ids, with_header
from trunkline.runtime._status import StatusBoard
from trunkline.runtime._task import Supervisor, Task, TaskEnv
from trunkline.testing.connectors import fetched


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with EmbeddedHub(tmp_path / "hub", ack="written") as hub:
        yield hub


@pytest.fixture
def env(tmp_path: Path, hub: EmbeddedHub) -> TaskEnv:
    return TaskEnv(
        root=tmp_path,
        hub=hub,
        meta=None,
        checkpoints=FileCheckpointStore(tmp_path / "checkpoints"),
        budget=MemoryBudget(64 << 20),
        run_id="test-run",
        client="test",
    )


def run_until(task: Task, done: Any, timeout: float = 30) -> None:
    """Run one life of ``task`` in a thread until ``done()`` holds, then stop it."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def life() -> None:
        try:
            task.run_once(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=life)
    thread.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done() and not errors:
        time.sleep(0.02)
    stop.set()
    thread.join(30)
    if errors:
        raise errors[0]
    assert done(), "the task did not get there in time"


# Small parts ---------------------------------------------------------------------------


def test_lease_is_exclusive_and_released(tmp_path: Path) -> None:
    first, second = FileLease(tmp_path / "l.lock"), FileLease(tmp_path / "l.lock")
    assert first.acquire() and not second.acquire()
    assert first.owner() == {"pid": os.getpid(), "host": os.uname().nodename}
    first.release()
    assert second.acquire()
    second.release()


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(0.1, 1.0)
    waits = [backoff.next() for _ in range(6)]
    assert 0.05 <= waits[0] <= 0.1
    assert all(0.5 <= w <= 1.0 for w in waits[4:])
    backoff.reset()
    assert backoff.next() <= 0.1


def test_budget_waits_for_room() -> None:
    budget = MemoryBudget(10)
    budget.take(15)
    assert not budget.has_room() and not budget.wait_for_room(0.01)
    threading.Timer(0.05, budget.give, (10,)).start()
    assert budget.wait_for_room(5)


def test_checkpoints_round_trip_and_refuse_garbage(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    assert store.load("source-a") is None
    store.save("source-a", {"x": [1, 2]})
    assert store.load("source-a") == {"x": [1, 2]}
    (tmp_path / "source-b.json").write_text("{not json")
    with pytest.raises(ConnectorError, match="not valid JSON"):
        store.load("source-b")


def test_with_header_appends_to_existing_headers() -> None:
    records = pa.table({"value": [b"a", b"b"]})
    once = with_header(records, "k1", pa.array([b"1", b"2"]))
    twice = with_header(once, "k2", pa.array([b"x", b"y"]))
    assert twice.column("headers").to_pylist() == [
        [{"key": "k1", "value": b"1"}, {"key": "k2", "value": b"x"}],
        [{"key": "k1", "value": b"2"}, {"key": "k2", "value": b"y"}],
    ]


def test_metrics_shares_and_prometheus_text() -> None:
    metrics = TaskMetrics("w", "sink", "duckdb")
    metrics.activity("busy")
    time.sleep(0.05)
    metrics.activity("idle")
    metrics.count("records", 10)
    metrics.gauge("lag_records", 3)
    sample = metrics.sample()
    assert sample["share"]["busy"] > 0.5
    text = prometheus_text([sample])
    assert 'trunkline_records_total{connector="w",kind="sink",type="duckdb"} 10' in text
    assert "# TYPE trunkline_lag_records gauge" in text
    assert 'activity="busy"' in text


def _sample(name: str, kind: str, **figures: Any) -> dict[str, Any]:
    """A task's sample (``TaskMetrics.sample``) with the given figures."""
    sample: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "type": "duckdb" if kind == "sink" else "files",
        "state": "running",
        "rows_per_s": 0.0,
        "share": {"busy": 0.0, "idle": 1.0, "backpressured": 0.0},
        "counters": {},
        "gauges": {},
        "last_error": "",
        "last_error_at": None,
        "position": None,
    }
    return {**sample, **figures}


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


ORDERS = Pipeline(("incoming",), ("orders",), "warehouse")


def test_prometheus_text_says_where_each_pipelines_lag_comes_from() -> None:
    samples = [
        # Busy 95% of the time with 5,000 records waiting: the sink is too slow.
        _sample(
            "warehouse",
            "sink",
            rows_per_s=850.0,
            share={"busy": 0.95, "idle": 0.05, "backpressured": 0.0},
            counters={"records": 12_345_678, "dead_letters": 2},
            gauges={"lag_records": 5000, "lag_seconds": 12.5},
        ),
        _sample(
            "incoming",
            "source",
            gauges={"backlog_bytes": 4096},
            last_error="ConnectorError: gone",
            last_error_at=1_700_000_000.25,
        ),
        _sample("lake", "sink", state="standby"),  # runs in another process
    ]
    found = [ORDERS, Pipeline(("incoming",), ("orders",), "lake"), Pipeline((), ("x",), "gone")]
    lags = lag_origins_here(found, samples)
    text = prometheus_text(samples, lags)
    assert _series(text, "trunkline_pipeline_lag_origin") == [
        'trunkline_pipeline_lag_origin{pipeline="incoming -> orders -> warehouse",'
        f'sink="warehouse",origin="{origin}"}} {int(origin == "sink")}'
        for origin in ("source", "hub", "sink", "none", "unknown")
    ]
    assert "# TYPE trunkline_pipeline_lag_origin gauge" in text
    # The pipeline is named, and judged, as `trunkline status` does.
    rows = {(s["kind"], s["name"]): status_row(s) for s in samples}
    assert lags == [lag_origin(ORDERS, rows)]
    # The figures status shows beside it: exact, not rounded to 6 digits by %g.
    assert _series(text, "trunkline_records_total") == [
        'trunkline_records_total{connector="warehouse",kind="sink",type="duckdb"} 12345678',
        'trunkline_records_total{connector="incoming",kind="source",type="files"} 0',
        'trunkline_records_total{connector="lake",kind="sink",type="duckdb"} 0',
    ]
    assert 'trunkline_lag_records{connector="warehouse",kind="sink",type="duckdb"} 5000' in text
    assert 'trunkline_lag_seconds{connector="warehouse",kind="sink",type="duckdb"} 12.5' in text
    assert 'trunkline_dead_letters_total{connector="warehouse",kind="sink",type="duckdb"} 2' in text
    assert 'trunkline_restarts_total{connector="lake",kind="sink",type="duckdb"} 0' in text
    assert _series(text, "trunkline_last_error_timestamp_seconds") == [
        'trunkline_last_error_timestamp_seconds{connector="incoming",kind="source",type="files"}'
        " 1700000000.25"
    ]


@pytest.mark.parametrize(
    ("sink", "source", "origin"),
    [
        # Records wait and the sink is not taking them: they wait in the hub.
        ({"state": "restarting", "gauges": {"lag_records": 10, "lag_seconds": 1.0}}, {}, "hub"),
        # Backpressured 30% of the time with records waiting: the sink.
        (
            {
                "share": {"busy": 0.4, "idle": 0.3, "backpressured": 0.3},
                "gauges": {"lag_records": 10},
            },
            {},
            "sink",
        ),
        # Nothing waits in the hub, but the source has input to read.
        ({"gauges": {"lag_records": 0}}, {"gauges": {"backlog_bytes": 99}}, "source"),
        ({"gauges": {"lag_records": 0}}, {"gauges": {"backlog_bytes": 0}}, "none"),
    ],
)
def test_exactly_one_lag_origin_series_is_1(
    sink: dict[str, Any], source: dict[str, Any], origin: str
) -> None:
    samples = [_sample("warehouse", "sink", **sink), _sample("incoming", "source", **source)]
    text = prometheus_text(samples, lag_origins_here([ORDERS], samples))
    ones = [line for line in _series(text, "trunkline_pipeline_lag_origin") if line.endswith(" 1")]
    assert ones == [
        'trunkline_pipeline_lag_origin{pipeline="incoming -> orders -> warehouse",'
        f'sink="warehouse",origin="{origin}"}} 1'
    ]
    assert len(_series(text, "trunkline_pipeline_lag_origin")) == 5


def test_prometheus_label_values_are_escaped() -> None:
    odd = 'a\\b"c\nd'  # a backslash, a double quote and a newline
    lag = {"pipeline": f"{odd} -> t -> w", "sink": odd, "origin": "hub"}
    text = prometheus_text([_sample(odd, "sink", type=odd)], [lag])
    escaped = 'a\\\\b\\"c\\nd'
    assert (
        f'trunkline_pipeline_lag_origin{{pipeline="{escaped} -> t -> w",sink="{escaped}",'
        'origin="hub"} 1'
    ) in text.splitlines()
    assert (
        f'trunkline_rows_per_second{{connector="{escaped}",kind="sink",type="{escaped}"}} 0'
    ) in text.splitlines()
    # Every line is one sample: no raw newline escaped into a label.
    assert all(line.startswith(("#", "trunkline_")) for line in text.splitlines())


def test_status_files_tell_live_from_gone(tmp_path: Path) -> None:
    board = StatusBoard(tmp_path, run_id="r")
    board.publish([{"name": "a"}])
    (live,) = read_status(tmp_path)
    assert live.alive and live.tasks == [{"name": "a"}]
    board.publish([{"name": "a"}], state="stopped")
    assert not read_status(tmp_path)[0].alive
    gone = dict(live.document, pid=2**22 + 7, state="running")
    (tmp_path / "other.json").write_text(json.dumps(gone))
    assert [p.alive for p in read_status(tmp_path)] == [False, False]


# Dead letters -------------------------------------------------------------------------


def test_dead_letters_keep_bytes_headers_and_origin(hub: EmbeddedHub) -> None:
    writer = HubDeadLetters(hub, "src", source_id="src")
    writer.write(
        [DeadLetter(b"1,2,3", "expected 2 fields", "source", "a.csv:3", details={"line": "3"})],
        ids=["abc:0:L3"],
    )
    batch = fetched("orders", 2, 40, [b'{"ok": 1}', b"bad"], keys=[b"k1", b"k2"])
    HubDeadLetters(hub, "snk").write_records(batch, [1], ["not JSON"], topic="orders")
    (source_letter,) = read_dead_letters(hub, "src.dlq")
    assert source_letter.value == b"1,2,3"
    assert source_letter.headers["trunkline.line"] == "3"
    assert source_letter.headers[ID_HEADER] == "src/abc:0:L3"
    (sink_letter,) = read_dead_letters(hub, "snk.dlq")
    assert (sink_letter.key, sink_letter.value) == (b"k2", b"bad")
    assert sink_letter.origin == "orders/2@41"
    assert sink_letter.headers["trunkline.topic"] == "orders"
    assert sink_letter.headers["trunkline.stage"] == "sink"
    # Replay: into the sink's retry topic, once.
    assert replay(hub, "snk", timeout=0.5) == {"snk.retry": 1}
    assert replay(hub, "snk", timeout=0.5) == {}
    retried = hub.fetch("snk.retry", 0, 0)
    assert dict(next(retried.messages()).headers)["trunkline.topic"] == b"orders"
    with pytest.raises(ConfigError, match="could not read"):
        replay(hub, "src", timeout=0.5)


def test_retry_topic_records_are_written_in_runs_of_their_topic() -> None:
    batch = fetched("w.retry", 0, 10, [b"1", b"2", b"3"])
    headers = [
        [{"key": "trunkline.topic", "value": b"a"}],
        [{"key": "trunkline.topic", "value": b"a"}],
        [{"key": "trunkline.topic", "value": b"b"}],
    ]
    records = batch.records.set_column(
        4, "headers", pa.array(headers, batch.records.schema.field("headers").type)
    )
    runs = list(_runs_by_topic(FetchedBatch("w.retry", 0, records, 13)))
    assert [(t, len(b), b.next_offset) for t, b in runs] == [("a", 2, 12), ("b", 1, 13)]


def test_leased_reader_reads_every_partition_and_commits(hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(partitions=3))
    hub.produce("t", [Record(f"v{i}".encode(), key=f"k{i}".encode()) for i in range(30)])
    reader = LeasedReader(hub, "sink-x", ["t"])
    assert len(reader.assignment()) == 3
    got = sum(len(b) for b in reader.poll(0.5, 1000))
    assert got == 30
    reader.commit()
    assert hub.committed("sink-x", "t") == hub.end_offsets("t")
    reader.seek(TopicPartition("t", 0), 0)
    assert reader.poll(0.5, 1000)


# Sources: exactly once into the hub ---------------------------------------------------


def test_source_recovers_records_written_after_its_checkpoint(
    tmp_path: Path, env: TaskEnv, hub: EmbeddedHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(4):
        (folder / f"{n}.csv").write_text("id\n" + "".join(f"{n * 1000 + i}\n" for i in range(300)))
        past = time.time() - 60
        os.utime(folder / f"{n}.csv", (past, past))
    hub.create_topic("t", TopicConfig(partitions=3))
    config = FilesConfig.model_validate(
        {"path": "in", "topic": "t", "key": "id", "settle": "0s", "chunk_size": "512B"}
    )
    metrics = TaskMetrics("src", "source", "files")
    task = SourceTask("src", "files", FilesSource, config, env, metrics)
    # First life: only its first checkpoint (before anything was written) is saved, as if
    # the process died before every later one.
    saved: list[int] = []
    original = SourceTask._checkpoint

    def first_only(self: SourceTask, *args: Any) -> None:
        if not saved:
            saved.append(1)
            original(self, *args)

    monkeypatch.setattr(SourceTask, "_checkpoint", first_only)
    run_until(task, lambda: metrics.counters.get("records", 0) >= 500)
    written = sum(hub.end_offsets("t").values())
    assert 500 <= written < 1200
    monkeypatch.setattr(SourceTask, "_checkpoint", original)
    task = SourceTask(
        "src", "files", FilesSource, config, env, TaskMetrics("src", "source", "files")
    )
    run_until(task, lambda: sum(hub.end_offsets("t").values()) >= 1200 and _settled(env))
    values = []
    for partition, end in hub.end_offsets("t").items():
        values += hub.fetch("t", partition, 0, max_records=end).records.column("value").to_pylist()
    ids = sorted(json.loads(v)["id"] for v in values)
    assert ids == sorted(n * 1000 + i for n in range(4) for i in range(300))
    assert len(produced_ids(hub, "t", "src", {})) == 1200


def _settled(env: TaskEnv) -> bool:
    saved = env.checkpoints.load("source-src") or {}
    state = saved.get("state") or {}
    return len(state.get("done", {})) == 4


# Sinks: backpressure and supervision ---------------------------------------------------


class PickyConfig(SinkSettings):
    pass


class PickySink(Sink):
    """Pushes back on its first writes, then keeps what it gets."""

    Config: ClassVar[type[PickyConfig]] = PickyConfig
    capabilities: ClassVar[Capabilities] = Capabilities()
    received: ClassVar[list[tuple[int, int]]] = []
    routed: ClassVar[list[tuple[str, str]]] = []
    refusals: ClassVar[int] = 0

    def open(self, context: ConnectorContext) -> None:
        self._done: dict[TopicPartition, int] = {}

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        if PickySink.refusals > 0:
            PickySink.refusals -= 1
            raise Backpressure("busy", retry_after=0.05)
        offsets = batch.records.column("offset").to_pylist()
        PickySink.received += [(batch.partition, o) for o in offsets]
        PickySink.routed += [(topic, batch.topic)] * len(offsets)
        self._done[TopicPartition(batch.topic, batch.partition)] = batch.next_offset

    def snapshot(self) -> dict[TopicPartition, int]:
        done, self._done = self._done, {}
        return done

    def revoke(self, partitions: Collection[TopicPartition]) -> None:
        pass

    def close(self) -> None:
        pass


def test_backpressure_pauses_and_nothing_is_lost(env: TaskEnv, hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(partitions=2))
    for _ in range(5):
        hub.produce("t", [Record(b"x" * 100, key=str(i).encode()) for i in range(400)])
    PickySink.received = []
    PickySink.refusals = 3
    config = PickyConfig.model_validate({"topics": ["t"], "linger": "20ms", "batch_records": 300})
    metrics = TaskMetrics("picky", "sink", "picky")
    task = SinkTask("picky", "picky", PickySink, config, env, metrics)
    run_until(task, lambda: len(set(PickySink.received)) == 2000)
    assert metrics.counters["backpressure"] == 3
    assert hub.committed("sink-picky", "t") == hub.end_offsets("t")
    assert env.budget.used == 0  # everything buffered was given back


class BackgroundSink(Sink):
    """Applies each batch "in the background", as the DuckDB sink does: a batch becomes
    durable only when the test releases it, and ``write_batch`` first waits for the one
    before (one batch in flight)."""

    Config: ClassVar[type[PickyConfig]] = PickyConfig
    capabilities: ClassVar[Capabilities] = Capabilities()
    released = threading.Semaphore(0)
    entered: ClassVar[list[int]] = []  # next_offset of each batch handed to write_batch
    durable_upto: ClassVar[list[int]] = []  # next_offset of each batch made durable

    def open(self, context: ConnectorContext) -> None:
        self._pending: tuple[TopicPartition, int] | None = None
        self._done: dict[TopicPartition, int] = {}
        self._lock = threading.Lock()

    def _finish(self, *, block: bool) -> None:
        if self._pending is None:
            return
        if not BackgroundSink.released.acquire(timeout=10 if block else 0):
            assert not block, "the test never released the batch in flight"
            return
        tp, offset = self._pending
        self._pending = None
        with self._lock:
            self._done[tp] = offset
        BackgroundSink.durable_upto.append(offset)

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        BackgroundSink.entered.append(batch.next_offset)
        self._finish(block=True)
        self._pending = (TopicPartition(batch.topic, batch.partition), batch.next_offset)

    def durable(self) -> dict[TopicPartition, int]:
        self._finish(block=False)
        with self._lock:
            done, self._done = self._done, {}
        return done

    def snapshot(self) -> dict[TopicPartition, int]:
        self._finish(block=True)
        return self.durable()

    def close(self) -> None:
        pass


def test_a_sink_applying_in_the_background_is_not_waited_for_per_batch(
    env: TaskEnv, hub: EmbeddedHub
) -> None:
    hub.create_topic("t", TopicConfig(partitions=1))
    for _ in range(3):
        hub.produce("t", [Record(b"x" * 10) for _ in range(300)])
    BackgroundSink.released = threading.Semaphore(0)
    BackgroundSink.entered, BackgroundSink.durable_upto = [], []
    config = PickyConfig.model_validate({"topics": ["t"], "linger": "10ms", "batch_records": 300})
    task = SinkTask("bg", "bg", BackgroundSink, config, env, TaskMetrics("bg", "sink", "bg"))
    committed: list[int] = []
    released = [0]

    def check() -> bool:
        now = hub.committed("sink-bg", "t").get(0, 0)
        durable = BackgroundSink.durable_upto
        # Never a committed offset past what the sink has made durable.
        assert now <= max(durable, default=0)
        if now not in committed:
            committed.append(now)
        # One batch at a time, each once the one before is committed. The first is let
        # through only once the second was handed over while the first was still being
        # applied: a runner that waited for each batch would never get there.
        stage = len(durable)
        ready = len(BackgroundSink.entered) >= 2 if stage == 0 else now == durable[-1]
        if ready and released[0] == stage < 3:
            released[0] += 1
            BackgroundSink.released.release()
        return now == 900

    run_until(task, check, timeout=10)
    assert BackgroundSink.entered == [300, 600, 900]
    assert BackgroundSink.durable_upto == [300, 600, 900]
    assert committed == [0, 300, 600, 900]  # each committed as it became durable


class Failing(Task):
    kind = "sink"

    def __init__(self, env: TaskEnv, errors: list[Exception]) -> None:
        super().__init__("f", "test", env, TaskMetrics("f", "sink", "test"))
        self.errors = errors
        self.lives = 0

    def run_once(self, stop: threading.Event) -> None:
        self.lives += 1
        if self.errors:
            raise self.errors.pop(0)
        stop.wait()


def test_supervisor_restarts_retryable_failures_and_stops_on_permanent(env: TaskEnv) -> None:
    stop = threading.Event()
    task = Failing(env, [ConnectorError("flaky", retryable=True), RuntimeError("bug")])
    supervisor = Supervisor(task, stop, lease=None, backoff=Backoff(0.01, 0.02))
    supervisor.start()
    deadline = time.monotonic() + 10
    while task.lives < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert task.metrics.counters["restarts"] == 2
    assert "RuntimeError: bug" in task.metrics.last_error
    stop.set()
    supervisor.join(5)
    assert task.metrics.state == "stopped"

    stop = threading.Event()
    task = Failing(env, [IncompatibleChange("column 'n' changed type")])
    supervisor = Supervisor(task, stop, lease=None, backoff=Backoff(0.01, 0.02))
    supervisor.start()
    supervisor.join(5)
    assert task.metrics.state == "failed"
    assert "column 'n' changed type" in task.metrics.last_error
    assert task.lives == 1


def test_exclusive_task_waits_as_standby(env: TaskEnv, tmp_path: Path) -> None:
    holder = FileLease(tmp_path / "lease")
    assert holder.acquire()
    stop = threading.Event()
    task = Failing(env, [])
    supervisor = Supervisor(
        task, stop, lease=FileLease(tmp_path / "lease"), backoff=Backoff(0.01, 0.02)
    )
    supervisor.start()
    time.sleep(0.2)
    assert task.metrics.state == "standby" and task.lives == 0
    holder.release()
    deadline = time.monotonic() + 10
    while task.lives == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert task.metrics.state == "running"
    stop.set()
    supervisor.join(5)


# The runner ------------------------------------------------------------------------------


@pytest.fixture
def picky_registered() -> Iterator[None]:
    SINKS.register("picky", PickySink)
    yield
    SINKS._entries.pop("picky", None)
    SINKS._loaded.pop("picky", None)


@pytest.mark.usefixtures("picky_registered")
def test_runner_prepares_topics_serves_metrics_and_checks_names(tmp_path: Path) -> None:
    (tmp_path / "trunkline.yaml").write_text(
        "topics:\n  t: {partitions: 2}\nsinks:\n  picky: {type: picky, topics: [t], linger: 20ms}\n"
    )
    with Project.open(tmp_path) as project:
        with pytest.raises(ConfigError, match="did you mean 'picky'"):
            Runner(project, RunOptions(only=("picy",)))
        PickySink.refusals = 0
        PickySink.received = []
        runner = Runner(project, RunOptions(metrics_address=("127.0.0.1", 0), status_interval=0.1))
        runner.start()
        try:
            assert {"t", "picky.dlq", "picky.retry"} <= set(project.hub.list_topics())
            project.hub.produce("t", [Record(b"v")])
            deadline = time.monotonic() + 10
            while not PickySink.received and time.monotonic() < deadline:
                time.sleep(0.02)
            with urllib.request.urlopen(runner.metrics_url, timeout=5) as response:
                text = response.read().decode()
            assert 'trunkline_connector_up{connector="picky"' in text
            # The sink pushes back on a new record, which waits: its lag is the sink's.
            PickySink.refusals = 10**6
            project.hub.produce("t", [Record(b"w")])
            slow = (
                'trunkline_pipeline_lag_origin{pipeline="t -> picky",sink="picky",origin="sink"} 1'
            )
            deadline = time.monotonic() + 15
            while slow not in text.splitlines() and time.monotonic() < deadline:
                time.sleep(0.1)
                with urllib.request.urlopen(runner.metrics_url, timeout=5) as response:
                    text = response.read().decode()
            assert _series(text, "trunkline_pipeline_lag_origin") == [
                'trunkline_pipeline_lag_origin{pipeline="t -> picky",sink="picky",'
                f'origin="{origin}"}} {int(origin == "sink")}'
                for origin in ("source", "hub", "sink", "none", "unknown")
            ]
            assert 'trunkline_lag_records{connector="picky",kind="sink",type="picky"} 1' in text
        finally:
            PickySink.refusals = 0  # let it drain
            runner.shutdown()
        (status,) = read_status(tmp_path / ".trunkline" / "status")
        assert status.document["state"] == "stopped"
        assert status.tasks[0]["name"] == "picky"


@pytest.mark.usefixtures("picky_registered")
def test_topics_a_source_creates_are_compressed_as_it_says(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "trunkline.yaml").write_text(
        "topics:\n  declared: {compression: zstd}\n"
        # The sink names the source's topic first: the source still says how it is made.
        "sinks:\n  picky: {type: picky, topics: [plain, loud]}\n"
        "sources:\n"
        "  a: {type: files, path: in, glob: '*.csv', topic: plain}\n"
        "  b: {type: files, path: in, glob: '*.json', topic: loud, topic_compression: none}\n"
        "  c: {type: files, path: in, glob: '*.parquet', topic: declared}\n"
    )
    with Project.open(tmp_path) as project:
        runner = Runner(project, RunOptions())
        runner.start()
        runner.shutdown()
        hub = project.hub
        compression = {t: hub.describe_topic(t).config.compression for t in hub.list_topics()}
    assert compression["plain"] == Compression.LZ4  # a source's default
    assert compression["loud"] == Compression.NONE
    assert compression["declared"] == Compression.ZSTD  # trunkline.yaml decides
    assert compression["a.dlq"] == compression["picky.retry"] == Compression.NONE


def test_replayed_dead_letters_reach_the_sink_under_their_topic(
    env: TaskEnv, hub: EmbeddedHub
) -> None:
    hub.create_topic("t")
    batch = fetched("t", 0, 7, [b"a", b"b"])
    HubDeadLetters(hub, "picky").write_records(batch, [0, 1], ["no", "no"], topic="t")
    assert replay(hub, "picky", to="retry", timeout=0.5) == {"picky.retry": 2}
    PickySink.received, PickySink.routed, PickySink.refusals = [], [], 0
    config = PickyConfig.model_validate({"topics": ["t"], "linger": "20ms"})
    task = SinkTask("picky", "picky", PickySink, config, env, TaskMetrics("picky", "sink", "x"))
    run_until(task, lambda: len(PickySink.routed) == 2)
    assert PickySink.routed == [("t", "picky.retry")] * 2
    # Or back into the original topic, for every reader (the replay group moved on already,
    # so new dead letters only).
    HubDeadLetters(hub, "picky").write_records(batch, [1], ["no"], topic="t")
    assert replay(hub, "picky", to="topic", timeout=0.5) == {"t": 1}
    (message,) = hub.fetch("t", 0, 0).messages()
    assert message.value == b"b" and not [k for k, _ in message.headers if k.startswith("trunk")]


# Transforms and delivery reports ------------------------------------------------------

TOPICS = ("t", "t.one", "t.two")


def _all_values(hub: EmbeddedHub, topic: str) -> list[dict[str, Any]]:
    values = []
    for partition, end in hub.end_offsets(topic).items():
        batch = hub.fetch(topic, partition, 0, max_records=max(end, 1))
        values += [json.loads(v) for v in batch.records.column("value").to_pylist()]
    return values


def test_transformed_source_is_exactly_once_across_a_crash(
    tmp_path: Path, env: TaskEnv, hub: EmbeddedHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(4):
        rows = "".join(f"{n * 1000 + i},{'x' if i % 50 == 8 else i}\n" for i in range(300))
        (folder / f"{n}.csv").write_text("id,n\n" + rows)
        past = time.time() - 60
        os.utime(folder / f"{n}.csv", (past, past))
    for topic in TOPICS:
        hub.create_topic(topic, TopicConfig(partitions=2))
    config = FilesConfig.model_validate(
        {
            "path": "in",
            "topic": "t",
            "key": "id",
            "settle": "0s",
            "chunk_size": "512B",
            "schema": {"n": "string"},
            "transforms": [
                {"filter": "id % 2 = 0"},
                {"cast": {"n": "int"}},
                {"route": {"field": "id", "topics": {"0": "t.one", "1000": "t.one", "2": "t.two"}}},
            ],
        }
    )
    saved: list[int] = []
    original = SourceTask._checkpoint

    def first_only(self: SourceTask, *args: Any) -> None:
        if not saved:
            saved.append(1)
            original(self, *args)

    monkeypatch.setattr(SourceTask, "_checkpoint", first_only)
    metrics = TaskMetrics("src", "source", "files")
    task = SourceTask("src", "files", FilesSource, config, env, metrics)
    run_until(task, lambda: metrics.counters.get("records", 0) >= 200)
    monkeypatch.setattr(SourceTask, "_checkpoint", original)
    task = SourceTask("src", "files", FilesSource, config, env, TaskMetrics("src", "source", "f"))
    run_until(task, lambda: _settled(env))
    kept = [r for t in TOPICS for r in _all_values(hub, t)]
    ids = sorted(r["id"] for r in kept)
    even = [n * 1000 + i for n in range(4) for i in range(0, 300, 2)]
    bad = {n * 1000 + i for n in range(4) for i in range(300) if i % 50 == 8}
    assert ids == sorted(set(even) - bad), "every kept record once, none twice"
    assert all(isinstance(r["n"], int) for r in kept)
    assert sorted(r["id"] for r in _all_values(hub, "t.one")) == [0, 1000]
    assert [r["id"] for r in _all_values(hub, "t.two")] == [2]
    letters = list(read_dead_letters(hub, "src.dlq", limit=1000))
    assert sorted(json.loads(e.value or b"{}")["id"] for e in letters) == sorted(bad)
    assert all(e.stage == "transform" for e in letters)


def test_on_delivery_hears_written_and_refused(env: TaskEnv, hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(partitions=1, cleanup_policy=CleanupPolicy.COMPACT))
    heard: list[Delivery] = []
    config = FilesConfig.model_validate({"path": "in", "topic": "t"})
    task = SourceTask("src", "files", FilesSource, config, env, TaskMetrics("src", "source", "f"))
    dead = HubDeadLetters(hub, "src")
    good = pa.table({"value": [b'{"a": 1}'], "key": [b"k"]})
    task._deliver(SourceBatch("t", good, on_delivery=heard.append), dead, set())
    # A compacted topic refuses records without a key: the batch is refused, the task goes on.
    keyless = pa.table({"value": [b'{"a": 2}']})
    assert task._deliver(SourceBatch("t", keyless, on_delivery=heard.append), dead, set()) == 0
    assert heard[0] == Delivery(written=1)
    assert isinstance(heard[1].error, InvalidRecord) and heard[1].written == 0
    with pytest.raises(InvalidRecord):
        task._deliver(SourceBatch("t", keyless), dead, set())
    assert sum(hub.end_offsets("t").values()) == 1
