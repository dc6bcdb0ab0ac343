"""The embedded hub under real faults: processes killed by pid, real disk-full, real files."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from trunkline.errors import StorageFull
from trunkline.hub import Record, TopicConfig
from trunkline.hub.embedded import EmbeddedHub

CHILD = Path(__file__).with_name("_hub_child.py")
sys.path.insert(0, str(CHILD.parent))
from _hub_child import plan  # noqa: E402

pytestmark = pytest.mark.slow


def _spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", f"child did not start: {line!r}"
    return proc


def _kill_and_collect(proc: subprocess.Popen[str]) -> list[list[tuple[int, int]]]:
    """The (partition, offset) of each record, per acknowledged batch, in produce order."""
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    acked = []
    # Only whole lines: the child may be killed in the middle of writing one (blocked on a
    # full pipe, since it is read only now), and a cut line names too few or wrong offsets.
    for line in out.split("\n")[:-1]:
        if line.startswith("ACK"):
            acked.append([tuple(map(int, pair.split("/"))) for pair in line.split()[1:]])
    return acked  # type: ignore[return-value]


def _read_all(hub: EmbeddedHub, topic: str) -> dict[int, list[tuple[int, bytes]]]:
    out: dict[int, list[tuple[int, bytes]]] = {}
    for partition, end in hub.end_offsets(topic).items():
        rows: list[tuple[int, bytes]] = []
        offset = 0
        while offset < end:
            batch = hub.fetch(topic, partition, offset, max_records=100_000)
            rows += list(
                zip(
                    batch.records.column("offset").to_pylist(),
                    batch.records.column("value").to_pylist(),
                    strict=True,
                )
            )
            offset = batch.next_offset
        out[partition] = rows
    return out


def test_kill_producers_mid_write(tmp_path: Path) -> None:
    """50 rounds of two producers on the same partitions, both killed at random moments."""
    hub_path = tmp_path / "hub"
    with EmbeddedHub(hub_path) as hub:
        hub.create_topic("t", TopicConfig(partitions=3, segment_bytes=64 * 1024))
    rng = random.Random(1234)
    ever: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> value, across rounds
    for round_no in range(50):
        procs = {name: _spawn("produce", str(hub_path), "t", name, str(round_no)) for name in "AB"}
        time.sleep(rng.uniform(0.0, 0.08))
        acked = {name: _kill_and_collect(proc) for name, proc in procs.items()}
        with EmbeddedHub(hub_path) as hub:
            data = _read_all(hub, "t")
            # Retention never applies here; every offset is still present.
            for partition, rows in data.items():
                assert [o for o, _ in rows] == list(range(len(rows))), "offsets not dense"
                for offset, value in rows:
                    previous = ever.setdefault((partition, offset), value)
                    assert previous == value, f"offset {partition}/{offset} changed its record"
            stored = {(p, o): v for p, rows in data.items() for o, v in rows}
            for name, batches in acked.items():
                # The i-th acknowledged batch is the i-th of the plan: each of its records
                # must be stored, with its own value, where the acknowledgement said.
                for pairs, records in zip(batches, plan(name, round_no), strict=False):
                    assert len(pairs) == len(records)
                    for pair, record in zip(pairs, records, strict=True):
                        assert pair in stored, (
                            f"round {round_no}: acknowledged record {pair} of {name} lost"
                        )
                        assert stored[pair] == record.value, (
                            f"round {round_no}: acknowledged record {pair} of {name} holds "
                            "another record's value"
                        )
            # Per producer and partition, what survived is a prefix of what it attempted.
            for name in "AB":
                attempted: dict[int, list[bytes]] = defaultdict(list)
                from trunkline.hub._murmur2 import partition_for_key

                for batch in plan(name, round_no):
                    for record in batch:
                        assert record.key is not None and record.value is not None
                        attempted[partition_for_key(record.key, 3)].append(record.value)
                prefix = f"{name}:{round_no}:".encode()
                for partition, rows in data.items():
                    mine = [v for _, v in rows if v.startswith(prefix)]
                    assert mine == attempted[partition][: len(mine)], (
                        f"round {round_no}: producer {name} partition {partition} is not a "
                        "prefix of what was attempted"
                    )


def test_consumer_killed_before_commit(tmp_path: Path) -> None:
    """No gap after restarts; duplicates only from the range polled but not committed."""
    hub_path = tmp_path / "hub"
    total = 6000
    with EmbeddedHub(hub_path) as hub:
        hub.create_topic("t", TopicConfig(partitions=3))
        for i in range(0, total, 500):
            hub.produce(
                "t", [Record(f"r{j}".encode(), key=str(j).encode()) for j in range(i, i + 500)]
            )
        ends = hub.end_offsets("t")
    log = tmp_path / "processed.log"
    rng = random.Random(99)
    kills = 0
    for _ in range(8):
        proc = _spawn("consume", str(hub_path), "t", "g", str(log))
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    proc = _spawn("consume", str(hub_path), "t", "g", str(log))
    deadline = time.monotonic() + 60
    with EmbeddedHub(hub_path) as hub:
        while time.monotonic() < deadline and hub.committed("g", "t") != ends:
            time.sleep(0.2)
        assert hub.committed("g", "t") == ends
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait()
    seen: dict[tuple[int, int], int] = defaultdict(int)
    for line in log.read_text().splitlines():
        p, o = map(int, line.split())
        seen[(p, o)] += 1
    expected = {(p, o) for p, end in ends.items() for o in range(end)}
    assert set(seen) == expected, "a record was never processed (gap)"
    duplicates = sum(count - 1 for count in seen.values())
    # Each kill can repeat at most what one poll returned and was not yet committed.
    assert duplicates <= kills * 50


@pytest.fixture
def tiny_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({result.stderr.strip()}); "
            "the injected-ENOSPC unit test still covers the error path"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_real_disk_full(tiny_disk: Path) -> None:
    with EmbeddedHub(tiny_disk / "hub") as hub:
        hub.create_topic("t", TopicConfig(segment_bytes=256 * 1024))
        acked = 0
        filler = tiny_disk / "filler"
        with pytest.raises(StorageFull, match="no space left"):
            for i in range(1000):
                hub.produce("t", [Record(f"{i}:".encode() + b"y" * 20_000)])
                acked += 1
        assert acked > 10
        assert hub.end_offsets("t") == {0: acked}
        # Reading keeps working while the disk is full.
        values = []
        offset = 0
        while offset < acked:
            batch = hub.fetch("t", 0, offset)
            values += batch.records.column("value").to_pylist()
            offset = batch.next_offset
        assert [v.split(b":")[0] for v in values] == [str(i).encode() for i in range(acked)]
        assert not filler.exists()
        # Free space (delete records by retention), and writing works again.
        hub.alter_topic("t", {"retention_bytes": 0})
        assert hub.maintain().segments_deleted > 0
        hub.produce("t", [Record(b"after the disk was full")])
        assert hub.end_offsets("t") == {0: acked + 1}
    with EmbeddedHub(tiny_disk / "hub") as reopened:
        assert reopened.recovery_reports == []
        last = reopened.fetch("t", 0, acked)
        assert last.records.column("value").to_pylist() == [b"after the disk was full"]
