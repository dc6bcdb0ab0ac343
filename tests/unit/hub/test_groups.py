"""GroupStore: leases, cooperative handover, fencing of commits, admin rules, states."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trunkline.errors import (
    ConfigError,
    HubError,
    NotAssigned,
    PartitionNotFound,
    TopicNotFound,
)
from trunkline.hub._assign import assign
from trunkline.hub._groups import GroupStore
from trunkline.hub._types import TopicPartition

G = "etl"
T = "orders"
COUNTS = {T: 6}
TIMEOUT = 1_000


def tp(p: int, topic: str = T) -> TopicPartition:
    return TopicPartition(topic, p)


def parts(tps: frozenset[TopicPartition] | tuple[TopicPartition, ...]) -> list[int]:
    return sorted(x.partition for x in tps)


class FakeClock:
    """Seconds like time.time, moved by hand in whole milliseconds."""

    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int) -> None:
        self.ms += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_store(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[[], GroupStore]]:
    """Opens stores on one hub directory, like separate processes sharing one clock."""
    stores: list[GroupStore] = []

    def _open() -> GroupStore:
        stores.append(GroupStore(tmp_path, clock=clock))
        return stores[-1]

    yield _open
    for s in stores:
        s.close()


@pytest.fixture
def store(open_store: Callable[[], GroupStore]) -> GroupStore:
    return open_store()


def join(store: GroupStore, member: str, topics: list[str] | None = None) -> None:
    store.join(G, member, topics or [T], client=f"client-{member}", session_timeout_ms=TIMEOUT)


def settle(store: GroupStore, *members: str, counts: dict[str, int] = COUNTS) -> None:
    """Run sync/release rounds until no member has anything to release or wait for."""
    for _ in range(5):
        results = {m: store.sync(G, m, counts) for m in members}
        for m, r in results.items():
            store.release(G, m, r.to_release)
        if all(not r.to_release and not r.pending for r in results.values()):
            return
    raise AssertionError(f"group did not settle: {results}")


# Membership and handover ------------------------------------------------------------


def test_first_member_takes_every_partition(store: GroupStore, clock: FakeClock) -> None:
    join(store, "a")
    r = store.sync(G, "a", COUNTS)
    assert parts(r.owned) == parts(r.acquired) == [0, 1, 2, 3, 4, 5]
    assert not r.to_release and not r.pending and not r.fenced
    assert r.lease_expires_ms == clock.ms + TIMEOUT
    assert r.valid_at(clock.ms + TIMEOUT - 1) and not r.valid_at(clock.ms + TIMEOUT)
    again = store.sync(G, "a", COUNTS)
    assert again.owned == r.owned and not again.acquired
    assert again.generation == r.generation


def test_second_member_gets_half_only_after_first_releases(
    open_store: Callable[[], GroupStore],
) -> None:
    first, second = open_store(), open_store()
    join(first, "a")
    first.sync(G, "a", COUNTS)
    join(second, "b")
    b_target = assign({"a": [T], "b": [T]}, COUNTS)["b"]
    assert len(b_target) == 3

    rb = second.sync(G, "b", COUNTS)
    assert not rb.owned and rb.pending == b_target
    ra = first.sync(G, "a", COUNTS)
    assert ra.to_release == b_target and len(ra.owned) == 6  # still a's until released
    assert not second.sync(G, "b", COUNTS).owned  # never taken from a live member

    first.commit(G, {x: 10 + x.partition for x in ra.to_release}, member_id="a")
    assert first.release(G, "a", ra.to_release) == b_target
    rb = second.sync(G, "b", COUNTS)
    assert rb.acquired == rb.owned == b_target and not rb.pending
    assert rb.committed == {x: 10 + x.partition for x in b_target}
    ra = first.sync(G, "a", COUNTS)
    assert len(ra.owned) == 3 and not ra.to_release and not ra.pending
    assert ra.owned.isdisjoint(rb.owned)


def test_dead_member_is_taken_over_after_session_timeout_not_before(
    store: GroupStore, clock: FakeClock
) -> None:
    join(store, "a")
    join(store, "b")
    settle(store, "a", "b")
    last_a = store.sync(G, "a", COUNTS)  # a's final heartbeat
    a_parts, b_parts = last_a.owned, frozenset(tp(p) for p in range(6)) - last_a.owned
    # b keeps heartbeating; a is silent from here on.
    for _ in range(3):
        clock.advance(TIMEOUT // 3)
        r = store.sync(G, "b", COUNTS)
        assert r.owned == b_parts and not r.acquired and not r.pending
    clock.ms = last_a.lease_expires_ms  # a's lease ends: a no longer believes it owns them
    assert not last_a.valid_at(store.now_ms())
    assert store.sync(G, "b", COUNTS).owned == b_parts  # ... but nobody may take them yet
    clock.advance(1)
    r = store.sync(G, "b", COUNTS)
    assert r.acquired == a_parts and len(r.owned) == 6
    assert r.generation > last_a.generation

    fenced = store.sync(G, "a", COUNTS)
    assert fenced.fenced and not fenced.owned and not fenced.valid_at(store.now_ms())
    with pytest.raises(NotAssigned, match="'a' is not in group"):
        store.commit(G, {next(iter(a_parts)): 1}, member_id="a")
    join(store, "a")  # a fenced member joins again as a fresh member
    assert store.sync(G, "a", COUNTS).pending


def test_expired_member_cannot_renew_its_own_lease(store: GroupStore, clock: FakeClock) -> None:
    join(store, "a")
    r = store.sync(G, "a", COUNTS)
    clock.ms = r.lease_expires_ms + 1
    assert store.sync(G, "a", COUNTS).fenced


def test_leave_frees_partitions_immediately(store: GroupStore) -> None:
    join(store, "a")
    join(store, "b")
    settle(store, "a", "b")
    store.leave(G, "a")
    store.leave(G, "a")  # harmless
    r = store.sync(G, "b", COUNTS)  # same instant: no timeout needed
    assert len(r.owned) == 6 and len(r.acquired) == 3


def test_release_ignores_partitions_not_owned(store: GroupStore) -> None:
    join(store, "a")
    join(store, "b")
    settle(store, "a", "b")
    b_owned = store.sync(G, "b", COUNTS).owned
    assert store.release(G, "a", b_owned) == frozenset()
    assert store.sync(G, "b", COUNTS).owned == b_owned


def test_resubscription_releases_dropped_topics(store: GroupStore) -> None:
    counts = {"x": 2, "y": 2}
    join(store, "a", ["x", "y"])
    assert len(store.sync(G, "a", counts).owned) == 4
    gen = store.join(G, "a", ["x"], session_timeout_ms=TIMEOUT)
    r = store.sync(G, "a", counts)
    assert r.generation == gen
    assert r.to_release == {tp(0, "y"), tp(1, "y")}


def test_members_get_only_topics_they_subscribe_to(store: GroupStore) -> None:
    counts = {"x": 4, "y": 2}
    join(store, "a", ["x"])
    join(store, "b", ["x", "y"])
    settle(store, "a", "b", counts=counts)
    a, b = store.sync(G, "a", counts), store.sync(G, "b", counts)
    assert {x.topic for x in a.owned} == {"x"}
    assert {x for x in b.owned if x.topic == "y"} == {tp(0, "y"), tp(1, "y")}
    assert len(a.owned | b.owned) == 6


# Assignment --------------------------------------------------------------------------


def test_assignment_is_deterministic_balanced_and_complete() -> None:
    subs = {m: [T] for m in ("c", "a", "b")}
    target = assign(subs, COUNTS)
    assert target == assign(dict(reversed(list(subs.items()))), COUNTS)
    assert [len(target[m]) for m in "abc"] == [2, 2, 2]
    assert frozenset().union(*target.values()) == {tp(p) for p in range(6)}
    for member in target.values():  # ranges: contiguous partitions
        ps = parts(member)
        assert ps == list(range(ps[0], ps[0] + len(ps)))
    assert assign({"a": [T], "b": [T]}, {T: 0}) == {"a": frozenset(), "b": frozenset()}


def test_single_partition_topics_spread_over_members() -> None:
    topics = [f"cdc.table{i}" for i in range(12)]
    target = assign(dict.fromkeys("abc", topics), dict.fromkeys(topics, 1))
    assert all(target[m] for m in "abc")  # plain range would give all twelve to "a"


def test_steady_group_never_moves_partitions(store: GroupStore, clock: FakeClock) -> None:
    for m in "abc":
        join(store, m)
    settle(store, "a", "b", "c")
    before = {m: store.sync(G, m, COUNTS).owned for m in "abc"}
    for _ in range(10):
        clock.advance(100)
        for m in "cab":
            r = store.sync(G, m, COUNTS)
            assert r.owned == before[m] and not r.acquired and not r.to_release


def test_partition_growth_adds_partitions(store: GroupStore) -> None:
    join(store, "a")
    assert parts(store.sync(G, "a", {T: 3}).owned) == [0, 1, 2]
    r = store.sync(G, "a", {T: 5})
    assert parts(r.acquired) == [3, 4] and len(r.owned) == 5
    # A member still holding the old count does not shrink the topic (counts only grow).
    assert len(store.sync(G, "a", {T: 3}).owned) == 5

    join(store, "b")
    settle(store, "a", "b", counts={T: 8})
    owned = store.sync(G, "a", {T: 8}).owned | store.sync(G, "b", {T: 8}).owned
    assert parts(owned) == list(range(8))
    assert store.describe(G).state == "Stable"


# Offsets -------------------------------------------------------------------------------


def test_commit_by_non_owner_is_refused_and_commits_nothing(store: GroupStore) -> None:
    join(store, "a")
    join(store, "b")
    settle(store, "a", "b")
    a_owned = store.sync(G, "a", COUNTS).owned
    mine = min(a_owned, key=lambda x: x.partition)
    theirs = min(store.sync(G, "b", COUNTS).owned, key=lambda x: x.partition)
    with pytest.raises(NotAssigned) as err:
        store.commit(G, {mine: 5, theirs: 7}, member_id="a")
    assert f"{T}[{theirs.partition}] (owner: b)" in str(err.value)
    assert store.committed(G) == {}
    store.leave(G, "b")
    with pytest.raises(NotAssigned, match="owner: none"):
        store.commit(G, {theirs: 7}, member_id="a")
    store.commit(G, {mine: 5}, member_id="a", metadata="batch-1")
    assert store.committed(G) == {mine: 5}
    details = store.committed_details(G)[mine]
    assert details.metadata == "batch-1" and details.committed_ms == store.now_ms()


def test_admin_commit_refused_while_members_live(store: GroupStore, clock: FakeClock) -> None:
    join(store, "a")
    with pytest.raises(HubError, match=r"live members \['a'\]"):
        store.commit(G, {tp(0): 3})
    with pytest.raises(HubError, match="live members"):
        store.reset(G, {tp(0): 3})
    clock.advance(TIMEOUT + 1)  # an expired member does not count
    store.reset(G, {tp(0): 3, tp(1): 4}, partition_counts=COUNTS)
    assert store.committed(G) == {tp(0): 3, tp(1): 4}
    assert store.committed(G, "other") == {}


def test_offsets_survive_reopening(open_store: Callable[[], GroupStore]) -> None:
    open_store().commit(G, {tp(2): 9})
    assert open_store().committed(G, T) == {tp(2): 9}


@pytest.mark.parametrize(
    ("offsets", "counts", "error", "message"),
    [
        ({tp(0): -1}, None, ConfigError, r"orders\[0\] must be an integer >= 0, found -1"),
        ({tp(0): True}, None, ConfigError, "found True"),
        ({tp(-1): 0}, None, PartitionNotFound, "start at 0, found -1"),
        ({tp(7): 0}, COUNTS, PartitionNotFound, "'orders' has 6 partitions; partition 7 does"),
        ({tp(0, "nope"): 0}, COUNTS, TopicNotFound, r"'nope' does not exist; known: \['orders'\]"),
    ],
)
def test_bad_offsets_are_refused(
    store: GroupStore,
    offsets: dict[TopicPartition, int],
    counts: dict[str, int] | None,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        store.commit(G, offsets, partition_counts=counts)
    assert store.list_groups() == []


# Admin and states ----------------------------------------------------------------------


def test_states(store: GroupStore, clock: FakeClock) -> None:
    with pytest.raises(HubError, match="'etl' does not exist"):
        store.describe(G)
    join(store, "a")
    store.sync(G, "a", COUNTS)
    d = store.describe(G)
    assert d.state == "Stable" and d.group == G
    (a,) = d.members
    assert (a.member_id, a.client, a.last_heartbeat_ms) == ("a", "client-a", clock.ms)
    assert parts(a.assignment) == list(range(6))

    join(store, "b")
    assert store.describe(G).state == "PreparingRebalance"
    settle(store, "a", "b")
    d = store.describe(G)
    assert d.state == "Stable" and [len(m.assignment) for m in d.members] == [3, 3]

    store.commit(G, {d.members[0].assignment[0]: 1}, member_id="a")
    clock.advance(TIMEOUT // 2)
    store.sync(G, "b", COUNTS)
    clock.advance(TIMEOUT // 2 + 1)  # a expired, nobody has reaped it yet
    d = store.describe(G)
    assert [m.member_id for m in d.members] == ["b"] and d.state == "PreparingRebalance"
    store.leave(G, "b")
    assert store.describe(G).state == "Empty"  # offsets keep the group alive
    assert store.list_groups() == [G]


def test_list_groups(store: GroupStore, clock: FakeClock) -> None:
    assert store.list_groups() == []
    store.join("z", "m", [T], session_timeout_ms=TIMEOUT)
    store.commit("y", {tp(0): 1})
    assert store.list_groups() == ["y", "z"]
    clock.advance(TIMEOUT + 1)
    assert store.list_groups() == ["y"]


def test_delete_group(store: GroupStore) -> None:
    join(store, "a")
    with pytest.raises(HubError, match="does not exist"):
        store.delete_group("other")
    store.sync(G, "a", COUNTS)
    store.commit(G, {tp(0): 5}, member_id="a")
    with pytest.raises(HubError, match=r"live members \['a'\]"):
        store.delete_group(G)
    store.leave(G, "a")
    store.delete_group(G)
    assert store.committed(G) == {} and store.list_groups() == []


def test_delete_topic_drops_offsets_and_ownership(store: GroupStore) -> None:
    counts = {T: 2, "keep": 1}
    join(store, "a", [T, "keep"])
    store.sync(G, "a", counts)
    store.commit(G, {tp(0): 1, tp(0, "keep"): 2}, member_id="a")
    store.commit("other", {tp(1): 3})
    store.delete_topic(T)
    assert store.committed(G) == {tp(0, "keep"): 2}
    assert store.committed("other") == {}
    assert parts(store.describe(G).members[0].assignment) == [0]  # only keep[0] is left
    # Re-created with fewer partitions: the old, larger count is forgotten.
    assert parts(store.sync(G, "a", {T: 1, "keep": 1}).acquired) == [0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.join("", "m", [T]), "consumer group must be a non-empty string"),
        (lambda s: s.join(G, "", [T]), "member id must be a non-empty string"),
        (lambda s: s.join(G, "m", []), "subscribes to no topic"),
        (lambda s: s.join(G, "m", T), "list of names, found the string"),
        (lambda s: s.join(G, "m", ["bad name"]), "invalid topic name"),
        (lambda s: s.join(G, "m", [T], session_timeout_ms=5), "from 100 to 1800000, found 5"),
        (lambda s: s.sync(G, "m", {T: -1}), r"integers >= 0, found \{'orders': -1\}"),
        (lambda s: s.committed(""), "non-empty"),
        (lambda s: s.describe(""), "non-empty"),
    ],
)
def test_bad_arguments(
    store: GroupStore, call: Callable[[GroupStore], object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        call(store)


def test_topics_left_out_of_counts_use_what_others_reported(store: GroupStore) -> None:
    join(store, "a", [T, "other"])
    assert parts(store.sync(G, "a", COUNTS).owned) == list(range(6))  # "other": unknown
    join(store, "b", ["other"])
    target = assign({"a": [T, "other"], "b": ["other"]}, {T: 6, "other": 2})
    assert store.sync(G, "b", {"other": 2}).owned == target["b"]
    assert store.sync(G, "a", {}).owned == target["a"]  # b's count of "other" is shared


# The file -------------------------------------------------------------------------------


def test_database_is_wal_versioned_and_refuses_newer_schemas(tmp_path: Path) -> None:
    GroupStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "groups.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.execute("PRAGMA user_version = 2")
    db.close()
    with pytest.raises(HubError, match="schema version 2; this trunkline reads up to version 1"):
        GroupStore(tmp_path)


def test_bad_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="does not exist"):
        GroupStore(tmp_path / "missing")
    (tmp_path / "groups.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(HubError, match="not a consumer-group database"):
        GroupStore(tmp_path)


# Real processes ---------------------------------------------------------------------------

MEMBER_SCRIPT = Path(__file__).with_name("_group_member.py")
SESSION_MS = 600
MP_GROUP, MP_TOPIC, MP_PARTITIONS = "workers", "events", 6


def test_processes_never_own_a_partition_at_the_same_time(tmp_path: Path) -> None:
    """Three member processes: one joins late, one is SIGKILLed, one is frozen past its lease.

    Each logs when it believed it owned what; no two beliefs in one partition may overlap,
    committed offsets never move back, and the group ends with every partition owned.
    """
    hub, stop = tmp_path / "hub", tmp_path / "stop"
    hub.mkdir()
    store = GroupStore(hub)  # creates the file before the members race for it
    procs: dict[str, subprocess.Popen[bytes]] = {}
    highest: dict[int, int] = {}  # committed offsets seen so far, per partition

    def start(member: str) -> None:
        log = tmp_path / f"{member}.log"
        args = [str(hub), member, str(log), str(stop), str(SESSION_MS)]
        procs[member] = subprocess.Popen([sys.executable, str(MEMBER_SCRIPT), *args])

    def wait_stable(members: set[str], within: float = 10.0) -> list[int]:
        deadline, last = time.monotonic() + within, "group not created yet"
        while time.monotonic() < deadline:
            for x, offset in store.committed(MP_GROUP).items():
                assert offset >= highest.get(x.partition, 0), "a committed offset moved back"
                highest[x.partition] = offset
            try:
                d = store.describe(MP_GROUP)
            except HubError:
                time.sleep(0.05)
                continue
            owned = sorted(x.partition for m in d.members for x in m.assignment)
            last = f"{d.state}: {[(m.member_id, parts(m.assignment)) for m in d.members]}"
            if d.state == "Stable" and {m.member_id for m in d.members} == members:
                return owned
            time.sleep(0.05)
        raise AssertionError(f"group did not become stable with {sorted(members)}: {last}")

    try:
        start("m1")
        start("m2")
        wait_stable({"m1", "m2"})
        start("m3")
        wait_stable({"m1", "m2", "m3"})
        time.sleep(0.3)
        os.kill(procs["m1"].pid, signal.SIGKILL)
        procs["m1"].wait()
        wait_stable({"m2", "m3"})
        # Freeze m2 past its lease: it must come back fenced and join again.
        os.kill(procs["m2"].pid, signal.SIGSTOP)
        time.sleep(2 * SESSION_MS / 1000)
        os.kill(procs["m2"].pid, signal.SIGCONT)
        time.sleep(0.2)
        owned_at_end = wait_stable({"m2", "m3"})
        assert owned_at_end == list(range(MP_PARTITIONS))
    finally:
        stop.touch()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert procs["m1"].returncode == -signal.SIGKILL
    assert procs["m2"].returncode == procs["m3"].returncode == 0

    events = {m: _read_log(tmp_path / f"{m}.log") for m in procs}
    _check_no_overlap(events)
    _check_offsets_monotonic(events, store.committed(MP_GROUP))
    m1_owned = {p for e in events["m1"] if e["e"] == "sync" for p in e["owned"]}
    assert m1_owned, "m1 never owned anything: the kill tested nothing"
    assert any(e["e"] == "fenced" for e in events["m2"]), "m2 was frozen but never fenced"
    store.close()


Event = dict[str, Any]


def _read_log(path: Path) -> list[Event]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _belief_intervals(events: list[Event]) -> dict[int, list[tuple[float, float]]]:
    """Per partition, the times this member believed it owned it, merged.

    A sync at t believes its owned partitions until its lease ends, or until the member
    announces releasing them, whichever is first. Walking backwards finds that release.
    """
    next_release: dict[int, float] = {}
    spans: dict[int, list[tuple[float, float]]] = {}
    for e in reversed(events):
        if e["e"] == "release":
            next_release.update(dict.fromkeys(e["parts"], e["t"]))
        elif e["e"] == "sync":
            for p in e["owned"]:
                end = min(e["lease"], next_release.get(p, float("inf")))
                if e["t"] < end:  # empty when the process was frozen before it could look
                    spans.setdefault(p, []).append((e["t"], end))
    merged: dict[int, list[tuple[float, float]]] = {}
    for p, found in spans.items():
        for start, end in sorted(found):
            if merged.get(p) and start <= merged[p][-1][1]:
                merged[p][-1] = (merged[p][-1][0], max(end, merged[p][-1][1]))
            else:
                merged.setdefault(p, []).append((start, end))
    return merged


def _check_no_overlap(events: dict[str, list[Event]]) -> None:
    beliefs = {m: _belief_intervals(e) for m, e in events.items()}
    for p in range(MP_PARTITIONS):
        spans = sorted((s, e, m) for m in beliefs for s, e in beliefs[m].get(p, []))
        assert spans, f"partition {p} was never owned"
        # Each member's spans are merged and disjoint, so a span that starts before the
        # latest end seen so far overlaps another member's.
        latest = (float("-inf"), "")
        for start, end, member in spans:
            assert start > latest[0], (
                f"partition {p}: {member} believed it owned it from {start:.1f} while "
                f"{latest[1]} did until {latest[0]:.1f}"
            )
            latest = max(latest, (end, member))


def _check_offsets_monotonic(
    events: dict[str, list[Event]], final: dict[TopicPartition, int]
) -> None:
    """Every owner starts from the committed offset, which is at least any earlier commit."""
    stints: list[Event] = []  # one per acquisition: when, who, the offset it started from
    attempted: dict[int, set[int]] = {p: set() for p in range(MP_PARTITIONS)}
    for member, evs in events.items():
        current: dict[int, Event] = {}
        t = 0.0
        for e in evs:
            if e["e"] == "sync":
                t = e["t"]
            elif e["e"] == "acquire":
                current[e["p"]] = {"t": t, "m": member, "p": e["p"], "c0": e["c0"], "ok": []}
                stints.append(current[e["p"]])
            elif e["e"] in ("attempt", "ok"):
                for p, offset in e["offsets"].items():
                    attempted[int(p)].add(offset)
                    if e["e"] == "ok":
                        current[int(p)]["ok"].append(offset)
    for p in range(MP_PARTITIONS):
        highest = 0
        for stint in sorted((s for s in stints if s["p"] == p), key=lambda s: s["t"]):
            assert stint["c0"] >= highest, (
                f"partition {p}: {stint['m']} took over from offset {stint['c0']} although "
                f"{highest} had been committed"
            )
            assert stint["ok"] == sorted(stint["ok"])
            highest = max([stint["c0"], *stint["ok"]])
        committed = final.get(TopicPartition(MP_TOPIC, p), 0)
        assert committed >= highest, f"partition {p}: {committed} is committed after {highest}"
        assert committed == 0 or committed in attempted[p], f"partition {p}: {committed}?"
