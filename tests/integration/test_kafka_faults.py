"""The Kafka hub under real faults: the broker killed with SIGKILL by its pid mid-produce, and a
group of consumer processes whose members join and die.

Invariants (Jepsen's queue vocabulary): no acknowledged record lost, no duplicate, no
partition owned by two members at once, no committed offset moving backwards, no record
skipped below the final committed offsets.

Run as a script, this file is the consumer-group member the group test starts
(``python test_kafka_faults.py member <bootstrap> <topic> <group> <name> <log>``).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafka_fixtures import deleting_new_topics
from trunkline.hub import Record, TopicConfig
from trunkline.hub.kafka import KafkaHub

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HERE = Path(__file__).resolve()


# A private broker: killing the session's broker would disturb other tests ------------------


@pytest.fixture
def private_kafka(tmp_path: Path, kafka_bootstrap: str) -> Iterator[dict[str, Any]]:
    """A broker of its own in a temp services dir (jars shared with the session's)."""
    from kafka_fixtures import kafka_script, kafka_unavailable, last_line

    del kafka_bootstrap  # asked for its skip-or-fail rule when Kafka cannot run here
    fetched = kafka_script("fetch")
    if fetched.returncode != 0:
        kafka_unavailable(f"scripts/services/kafka fetch failed:\n{fetched.stderr}")
    services = tmp_path / "services"
    (services / "kafka").mkdir(parents=True)
    (services / "kafka" / "lib").symlink_to(last_line(fetched.stdout))
    env = {**os.environ, "TRUNKLINE_SERVICES_DIR": str(services)}
    started = kafka_script("start", env=env)
    if started.returncode != 0:
        kafka_unavailable(f"could not start a private broker:\n{started.stderr}")
    state_path = services / "kafka" / "state.json"
    try:
        yield {"bootstrap": last_line(started.stdout), "env": env, "state": state_path}
    finally:
        kafka_script("stop", env=env)


def _alive(pid: int) -> bool:
    # The broker is not our child (the script started it), so nobody here reaps it: a
    # zombie counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def _kill_broker(state_path: Path) -> None:
    """SIGKILL the private broker by the pid its script recorded; wait until it is gone."""
    pid = int(json.loads(state_path.read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"broker pid {pid} survived SIGKILL"


def test_broker_killed_during_produce_loses_and_duplicates_nothing(
    private_kafka: dict[str, Any],
) -> None:
    from kafka_fixtures import kafka_script, last_line

    topic = f"faults-{uuid.uuid4().hex[:8]}"
    acked: dict[bytes, tuple[int, int]] = {}
    errors: list[BaseException] = []
    stop = threading.Event()
    with KafkaHub(private_kafka["bootstrap"], delivery_timeout=180) as hub:
        hub.create_topic(topic, TopicConfig(partitions=3))

        def produce() -> None:
            seq = 0
            try:
                while not stop.is_set():
                    batch = [
                        Record(f"r{seq + i}".encode(), key=f"k{(seq + i) % 97}".encode())
                        for i in range(50)
                    ]
                    result = hub.produce(topic, batch)
                    for record, pair in zip(batch, result.as_pairs(), strict=True):
                        assert record.value is not None
                        acked[record.value] = pair
                    seq += len(batch)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        for _ in range(3):
            before = len(acked)
            deadline = time.monotonic() + 60
            while len(acked) < before + 500 and time.monotonic() < deadline and not errors:
                time.sleep(0.05)
            assert len(acked) >= before + 500, f"produce stalled: {errors or len(acked)}"
            _kill_broker(private_kafka["state"])
            time.sleep(1.0)  # produce calls are now waiting for acknowledgements
            restarted = kafka_script("start", env=private_kafka["env"])
            assert restarted.returncode == 0, restarted.stderr
            # Same port: the producer's bootstrap address still points at the broker.
            assert last_line(restarted.stdout) == private_kafka["bootstrap"]
        resumed = len(acked)
        deadline = time.monotonic() + 60
        while len(acked) < resumed + 500 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        stop.set()
        producer.join(200)
        assert not errors, f"produce failed: {errors[0]!r}"
        assert len(acked) > resumed, "no record was acknowledged after the last restart"

        found: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        for partition, end in hub.end_offsets(topic).items():
            offset = 0
            while offset < end:
                batch = hub.fetch(topic, partition, offset, max_records=10_000)
                for message in batch.messages():
                    assert message.value is not None
                    found[message.value].append((partition, message.offset))
                offset = batch.next_offset
    duplicates = {v: where for v, where in found.items() if len(where) > 1}
    assert not duplicates, f"{len(duplicates)} records were written twice: {list(duplicates)[:5]}"
    lost = {v: where for v, where in acked.items() if found.get(v) != [where]}
    assert not lost, f"{len(lost)} acknowledged records are missing or moved: {list(lost)[:5]}"


# A group of consumer processes -----------------------------------------------------------


def member(bootstrap: str, topic: str, group: str, name: str, log_path: str) -> None:
    """One group member: logs ownership (from the assignment callbacks), reads and commits.

    Ownership is logged as widely as it can be: from the moment the client announces an
    assignment (on_assign entered) until the revocation has been handled (on_revoke left).
    """
    from trunkline.hub._kafka_consumer import KafkaConsumer

    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - line-buffered, outlives the loop

    def event(kind: str, **data: Any) -> None:
        log.write(json.dumps({"t": time.time(), "event": kind, **data}) + "\n")

    original_assign, original_revoke = KafkaConsumer._on_assign, KafkaConsumer._on_revoke

    def on_assign(self: KafkaConsumer, client: Any, partitions: list[Any]) -> None:
        event("assigned", partitions=[p.partition for p in partitions])
        original_assign(self, client, partitions)

    def on_revoke(self: KafkaConsumer, client: Any, partitions: list[Any]) -> None:
        original_revoke(self, client, partitions)
        event("revoked", partitions=[p.partition for p in partitions])

    KafkaConsumer._on_assign = on_assign  # type: ignore[method-assign]
    KafkaConsumer._on_revoke = on_revoke  # type: ignore[method-assign]
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    from trunkline.errors import NotAssigned

    with KafkaHub(bootstrap) as hub, hub.consumer(group, [topic], client=name) as consumer:
        print("READY", flush=True)
        while not stopping.is_set():
            for batch in consumer.poll(0.2, max_records=200):
                offsets = batch.records.column("offset").to_pylist()
                event("consumed", partition=batch.partition, first=offsets[0], last=offsets[-1])
            positions = {tp: consumer.position(tp) for tp in consumer.assignment()}
            if not positions:
                continue
            try:
                consumer.commit(positions)
            except NotAssigned as exc:
                event("commit-refused", error=str(exc))
                continue
            event("committed", offsets={str(tp.partition): o for tp, o in positions.items()})
    event("closed")


def _start_member(bootstrap: str, topic: str, group: str, name: str, logs: Path) -> Any:
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "member", bootstrap, topic, group, name, str(logs / name)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", f"member {name} did not start: {line!r}"
    return proc


def _settled(hub: KafkaHub, group: str, members: int, partitions: int) -> bool:
    described = hub.describe_group(group)
    owned = [tp.partition for m in described.members for tp in m.assignment]
    return (
        len(described.members) == members
        and sorted(owned) == list(range(partitions))
        and described.state == "Stable"
    )


def test_group_members_joining_and_dying_never_share_a_partition(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group, partitions = f"group-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}", 6
    logs = tmp_path / "logs"
    logs.mkdir()
    ended: dict[str, float] = {}  # member -> time it was killed
    committed_seen: dict[int, list[int]] = defaultdict(list)
    procs: dict[str, Any] = {}
    stop = threading.Event()
    with KafkaHub(kafka_bootstrap) as hub, deleting_new_topics(hub):
        hub.create_topic(topic, TopicConfig(partitions=partitions))

        def produce() -> None:
            i = 0
            while not stop.is_set():
                hub.produce(
                    topic, [Record(f"{i}-{j}".encode(), key=f"{i}-{j}".encode()) for j in range(12)]
                )
                i += 1
                time.sleep(0.02)

        def settle(members: int) -> None:
            deadline = time.monotonic() + 90
            while not _settled(hub, group, members, partitions):
                assert time.monotonic() < deadline, hub.describe_group(group)
                for tp, offset in hub.committed(group, topic).items():
                    committed_seen[tp].append(offset)
                time.sleep(0.2)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            for name in ("a", "b", "c"):
                procs[name] = _start_member(kafka_bootstrap, topic, group, name, logs)
            settle(3)
            for victim, newcomer, live in (("b", "d", 3), ("c", "e", 3)):
                time.sleep(1.0)
                os.kill(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait(10)
                ended[victim] = time.time()
                procs[newcomer] = _start_member(kafka_bootstrap, topic, group, newcomer, logs)
                settle(live)
            time.sleep(1.0)
            procs["a"].send_signal(signal.SIGTERM)  # a graceful leave
            procs["a"].wait(30)
            settle(2)
            time.sleep(1.0)
        finally:
            stop.set()
            producer.join(30)
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        final = hub.committed(group, topic)

    events = {name: _events(logs / name) for name in procs}
    for name, log in events.items():  # every member took part: owned, read and committed
        kinds = {e["event"] for e in log if e["event"] != "assigned" or e["partitions"]}
        assert {"assigned", "consumed", "committed"} <= kinds, (name, kinds)
    _check_exclusive_ownership(events, ended, partitions)
    _check_commits_monotonic(events, committed_seen)
    _check_no_skips(events, final)


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _check_exclusive_ownership(
    events: dict[str, list[dict[str, Any]]], ended: dict[str, float], partitions: int
) -> None:
    intervals: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    for name, log in events.items():
        since: dict[int, float] = {}
        for e in log:
            if e["event"] == "assigned":
                for p in e["partitions"]:
                    since.setdefault(p, e["t"])
            elif e["event"] == "revoked":
                for p in e["partitions"]:
                    if p in since:
                        intervals[p].append((since.pop(p), e["t"], name))
        end = ended.get(name, float("inf"))  # killed: ownership ended with the process
        for p, start in since.items():
            intervals[p].append((start, end, name))
    assert set(intervals) == set(range(partitions))
    for p, spans in intervals.items():
        spans.sort()
        for (_, e1, n1), (s2, _, n2) in itertools.pairwise(spans):
            assert e1 <= s2, f"partition {p} owned by {n1} until {e1} and by {n2} from {s2}"


def _check_commits_monotonic(
    events: dict[str, list[dict[str, Any]]], committed_seen: dict[int, list[int]]
) -> None:
    commits: list[tuple[float, int, int]] = []
    for log in events.values():
        for e in log:
            if e["event"] == "committed":
                commits += [(e["t"], int(p), o) for p, o in e["offsets"].items()]
    latest: dict[int, int] = {}
    for _t, p, offset in sorted(commits):
        assert offset >= latest.get(p, 0), f"partition {p}: commit went back to {offset}"
        latest[p] = offset
    for p, seen in committed_seen.items():
        assert seen == sorted(seen), f"partition {p}: committed offsets went back: {seen}"


def _check_no_skips(events: dict[str, list[dict[str, Any]]], final: dict[int, int]) -> None:
    read: dict[int, set[int]] = defaultdict(set)
    for log in events.values():
        for e in log:
            if e["event"] == "consumed":
                read[e["partition"]].update(range(e["first"], e["last"] + 1))
    for p, offset in final.items():
        missing = set(range(offset)) - read[p]
        assert not missing, (
            f"partition {p}: offsets below the commit never read: {sorted(missing)[:10]}"
        )


if __name__ == "__main__" and sys.argv[1] == "member":
    member(*sys.argv[2:7])
