"""A sink task writes batches bounded by ``batch_records`` and ``batch_bytes``, and writes
what it holds once ``linger`` has passed."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from trunkline.connectors.base import ConnectorContext, Sink, SinkSettings
from trunkline.hub import FetchedBatch, Record, TopicConfig, TopicPartition
from trunkline.hub.embedded import EmbeddedHub
from trunkline.runtime._budget import MemoryBudget
from trunkline.runtime._checkpoints import FileCheckpointStore
from trunkline.runtime._metrics import TaskMetrics
from trunkline.runtime._sink_task import SinkTask
from trunkline.runtime._task import TaskEnv


class Recording(Sink):
    """Keeps the size of every write (records, Arrow bytes)."""

    writes: ClassVar[list[tuple[int, int]]] = []

    def open(self, context: ConnectorContext) -> None:
        self._done: dict[TopicPartition, int] = {}

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        Recording.writes.append((len(batch), batch.records.nbytes))
        self._done[TopicPartition(batch.topic, batch.partition)] = batch.next_offset

    def snapshot(self) -> dict[TopicPartition, int]:
        done, self._done = self._done, {}
        return done

    def revoke(self, partitions: Collection[TopicPartition]) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with EmbeddedHub(tmp_path / "hub", ack="written") as hub:
        hub.create_topic("t", TopicConfig(partitions=1))
        yield hub


def _run(tmp_path: Path, hub: EmbeddedHub, settings: dict[str, Any]) -> None:
    """Run the sink until it has written every record of the topic, then stop it."""
    env = TaskEnv(
        root=tmp_path,
        hub=hub,
        meta=None,
        checkpoints=FileCheckpointStore(tmp_path / "checkpoints"),
        budget=MemoryBudget(64 << 20),
        run_id="test-run",
        client="test",
    )
    Recording.writes = []
    config = SinkSettings.model_validate({"topics": ["t"], **settings})
    task = SinkTask("rec", "recording", Recording, config, env, TaskMetrics("rec", "sink", "x"))
    stop = threading.Event()
    thread = threading.Thread(target=task.run_once, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 30
    end = hub.end_offsets("t")[0]
    while _written() < end and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    # Before it is stopped: a stopping task drains what it holds, whatever the settings.
    running = list(Recording.writes)
    stop.set()
    thread.join(30)
    assert sum(n for n, _ in running) == end, f"the sink wrote {running}, not {end} records"
    assert hub.committed("sink-rec", "t") == {0: end}


def _written() -> int:
    return sum(n for n, _ in Recording.writes)


def test_batches_hold_at_most_batch_records(tmp_path: Path, hub: EmbeddedHub) -> None:
    hub.produce("t", [Record(b"x" * 50) for _ in range(1000)], partition=0)
    _run(tmp_path, hub, {"batch_records": 250, "linger": "1h"})
    assert [n for n, _ in Recording.writes] == [250, 250, 250, 250]


def test_batches_hold_about_batch_bytes(tmp_path: Path, hub: EmbeddedHub) -> None:
    hub.produce("t", [Record(b"x" * 200) for _ in range(4000)], partition=0)
    # 4,000 records of ~230 bytes are ~14 batches of 64 KiB (the last one written once
    # linger has passed). Batches are cut by the estimated record size, so they may pass
    # the limit a little, never by a whole fetch.
    _run(tmp_path, hub, {"batch_bytes": "64KiB", "linger": "500ms"})
    assert len(Recording.writes) >= 13
    assert all(size <= 1.1 * 64 * 1024 for _, size in Recording.writes)


def test_a_small_batch_is_written_once_linger_has_passed(tmp_path: Path, hub: EmbeddedHub) -> None:
    hub.produce("t", [Record(b"x") for _ in range(10)], partition=0)
    # Neither size is reached: only linger can make the task write before it is stopped.
    _run(tmp_path, hub, {"linger": "50ms"})
    assert Recording.writes == [(10, Recording.writes[0][1])]
