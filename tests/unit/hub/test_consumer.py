"""The embedded hub's consumer: waiting, positions, resets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trunkline.errors import ConfigError, NotAssigned, TopicNotFound
from trunkline.hub import Record, TopicConfig, TopicPartition
from trunkline.hub.embedded import EmbeddedHub
from trunkline.testing import drain

DAY = 24 * 3600 * 1000


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with EmbeddedHub(tmp_path / "hub") as hub:
        yield hub


def _assigned(consumer, count: int = 1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while len(consumer.assignment()) < count and time.monotonic() < deadline:
        consumer.poll(0.05)
    assert len(consumer.assignment()) >= count


def test_idle_poll_does_not_spin(hub: EmbeddedHub) -> None:
    # Waiting at the end of a partition sleeps (inotify), it does not loop on the CPU.
    hub.create_topic("t", TopicConfig(partitions=2))
    with hub.consumer("g", ["t"]) as consumer:
        _assigned(consumer, 2)
        cpu = time.thread_time()
        assert consumer.poll(1.5) == []
        used = time.thread_time() - cpu
    # A heartbeat every 0.5 s costs a little; a busy loop would burn about 1.5 s.
    assert used < 0.3, f"idle poll used {used:.3f}s of CPU in 1.5s"


def test_wakes_for_a_batch_from_another_process(hub: EmbeddedHub, tmp_path: Path) -> None:
    hub.create_topic("t")
    script = textwrap.dedent(
        f"""
        import time
        from trunkline.hub import Record
        from trunkline.hub.embedded import EmbeddedHub
        time.sleep(0.5)
        with EmbeddedHub({str(tmp_path / "hub")!r}) as hub:
            hub.produce("t", [Record(b"from afar")])
        """
    )
    with hub.consumer("g", ["t"]) as consumer:
        _assigned(consumer)
        child = subprocess.Popen([sys.executable, "-c", script])
        try:
            got = drain(consumer, 1, timeout=30)
        finally:
            child.wait(30)
    assert [v for _, _, v in got] == [b"from afar"]


def test_positions_and_seek(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    hub.produce("t", [Record(str(i).encode()) for i in range(10)])
    tp = TopicPartition("t", 0)
    with hub.consumer("g", ["t"]) as consumer:
        _assigned(consumer)
        consumer.seek(tp, 7)
        assert [v for _, _, v in drain(consumer, 3)] == [b"7", b"8", b"9"]
        assert consumer.position(tp) == 10
        with pytest.raises(NotAssigned):
            consumer.position(TopicPartition("t", 3))
        with pytest.raises(ConfigError):
            consumer.seek(tp, -1)


def test_auto_offset_reset_error(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    with (
        hub.consumer("g", ["t"], auto_offset_reset="error") as consumer,
        pytest.raises(NotAssigned, match="no committed offset"),
    ):
        _assigned(consumer)


def test_bad_consumer_arguments(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    with pytest.raises(TopicNotFound):
        hub.consumer("g", ["missing"])
    with pytest.raises(ConfigError, match="auto_offset_reset"):
        hub.consumer("g", ["t"], auto_offset_reset="sometimes")  # type: ignore[arg-type]


def test_committed_offset_removed_by_retention_resets(hub: EmbeddedHub) -> None:
    hub.create_topic("t", TopicConfig(segment_bytes=1024, retention_ms=DAY))
    for i in range(30):
        hub.produce("t", [Record(f"{i}".encode() * 50)])
    hub.commit_offsets("g", {TopicPartition("t", 0): 1})
    hub.maintain(now=time.time_ns() // 1_000_000 + 2 * DAY)
    start = hub.start_offsets("t")[0]
    assert start > 1
    with hub.consumer("g", ["t"]) as consumer:
        got = drain(consumer, 30 - start)
    assert got[0][1] == start


def test_closed_consumer_refuses_work(hub: EmbeddedHub) -> None:
    hub.create_topic("t")
    consumer = hub.consumer("g", ["t"])
    consumer.close()
    consumer.close()  # twice is harmless
    with pytest.raises(ConfigError, match="closed"):
        consumer.poll(0)
