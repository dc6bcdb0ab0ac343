"""Leases and checkpoints in the metadata store, on SQLite and on PostgreSQL: one holder,
expiry and takeover, fencing tokens, a stale holder's refused checkpoint, the supervisor
stopping a life whose lease was lost, and which kind of lease a project gets."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from trunkline.connectors.sources.files import FilesConfig, FilesSource
from trunkline.errors import ConfigError, ConnectorError, LeaseLost
from trunkline.hub import TopicConfig
from trunkline.hub.embedded import EmbeddedHub
from trunkline.meta import MetaStore
from trunkline.meta._schema import runtime_leases
from trunkline.project import Project
from trunkline.runtime import Runner
from trunkline.runtime._backoff import Backoff
from trunkline.runtime._budget import MemoryBudget
from trunkline.runtime._checkpoints import FileCheckpointStore, StoreCheckpointStore
from trunkline.runtime._lease import SAFE_SHARE, FileLease, StoreLease
from trunkline.runtime._metrics import TaskMetrics
from trunkline.runtime._source_task import SourceTask
from trunkline.runtime._task import Supervisor, Task, TaskEnv


def _row(meta: MetaStore, name: str) -> sa.Row[tuple[str, int, int]]:
    table = runtime_leases
    with meta.transaction() as conn:
        query = sa.select(table.c.owner, table.c.token, table.c.expires_ms)
        return conn.execute(query.where(table.c.name == name)).one()


def _expire(ttl: float) -> None:
    """Let a holding of ``ttl`` seconds run out (by the database's clock too)."""
    time.sleep(ttl + 0.1)


def test_one_holder_at_a_time(meta: MetaStore) -> None:
    first = StoreLease(meta, "source-orders", "host-a-1", ttl=30)
    second = StoreLease(meta, "source-orders", "host-b-2", ttl=30)
    assert first.acquire()
    assert not second.acquire()
    assert first.held and first.valid() and first.token == 1
    assert not second.held and second.token is None
    assert second.owner() == {"owner": "host-a-1", "token": 1, "expires_in": pytest.approx(30, 1)}
    # Acquiring again while holding is a renewal: same token.
    assert first.acquire() and first.token == 1
    # Another task's lease is independent.
    assert StoreLease(meta, "source-customers", "host-b-2", ttl=30).acquire()


def test_release_hands_over_at_once_with_a_new_token(meta: MetaStore) -> None:
    first = StoreLease(meta, "sink-warehouse", "host-a-1", ttl=30)
    second = StoreLease(meta, "sink-warehouse", "host-b-2", ttl=30)
    assert first.acquire()
    first.release()
    assert not first.held and not first.valid()
    assert second.acquire()
    assert second.token == 2
    first.release()  # not held: nothing happens, the new holding stays
    assert _row(meta, "sink-warehouse").owner == "host-b-2"


def test_expired_holding_is_taken_over_and_the_old_holder_fenced(meta: MetaStore) -> None:
    stale = StoreLease(meta, "source-orders", "host-a-1", ttl=0.3)
    standby = StoreLease(meta, "source-orders", "host-b-2", ttl=30)
    assert stale.acquire()
    assert not standby.acquire()
    _expire(0.3)
    assert not stale.valid()  # by its own clock the old holder knows it must stop
    assert standby.acquire()
    assert standby.token == 2
    # The old holder's renewal finds the new token: it lost the lease.
    assert not stale.renew()
    assert not stale.held and stale.token is None
    # Taking it back later is a new holding with a bigger token.
    standby.release()
    assert stale.acquire() and stale.token == 3


def test_renewal_moves_the_expiry_and_outlives_the_ttl(meta: MetaStore) -> None:
    lease = StoreLease(meta, "source-orders", "host-a-1", ttl=30)
    assert lease.acquire()
    before = _row(meta, "source-orders").expires_ms
    time.sleep(0.05)
    assert lease.renew()
    assert _row(meta, "source-orders").expires_ms > before
    # Expired but not taken over: the renewal keeps the holding and its token.
    short = StoreLease(meta, "source-files", "host-a-1", ttl=0.2)
    assert short.acquire()
    _expire(0.2)
    assert short.renew() and short.token == 1 and short.valid()


def test_only_one_of_concurrent_acquirers_wins(meta: MetaStore) -> None:
    leases = [StoreLease(meta, "source-cdc", f"host-{i}", ttl=30) for i in range(6)]
    barrier = threading.Barrier(len(leases))
    results: dict[int, bool] = {}

    def take(i: int) -> None:
        barrier.wait()
        results[i] = leases[i].acquire()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results.values()) == [False] * (len(leases) - 1) + [True]
    winner = next(i for i, won in results.items() if won)
    assert _row(meta, "source-cdc").owner == f"host-{winner}"


def test_bad_settings_are_refused(meta: MetaStore) -> None:
    with pytest.raises(ConfigError, match=r"expected 0 < ttl <= 3600 seconds, found 0"):
        StoreLease(meta, "source-orders", "host", ttl=0)
    with pytest.raises(ConfigError, match=r"lease name .*expected 1-200 characters, found 201"):
        StoreLease(meta, "x" * 201, "host")


# Checkpoints in the store ------------------------------------------------------------------


def test_checkpoints_are_versioned_json_documents(meta: MetaStore, tmp_path: Path) -> None:
    store = StoreCheckpointStore(meta, tmp_path / "checkpoints")
    assert store.load("source-orders") is None and store.version("source-orders") == 0
    state = {"done": {"a.csv": 3}, "lsn": 12345678901234, "note": "é"}
    size = store.save("source-orders", state)
    assert size == FileCheckpointStore(tmp_path / "files").save("source-orders", state)
    assert store.load("source-orders") == state
    store.save("source-orders", {"done": {}})
    assert store.load("source-orders") == {"done": {}}
    assert store.version("source-orders") == 2
    with pytest.raises(ConnectorError, match=r"invalid checkpoint name 'a/b'"):
        store.save("a/b", {})


def test_a_stale_holder_cannot_save_its_checkpoint(meta: MetaStore) -> None:
    store = StoreCheckpointStore(meta)
    stale = StoreLease(meta, "source-orders", "host-a-1", ttl=0.3)
    assert stale.acquire()
    old = store.fenced(stale)
    old.save("source-orders", {"offset": 10})
    _expire(0.3)
    successor = StoreLease(meta, "source-orders", "host-b-2", ttl=30)
    assert successor.acquire()
    assert successor.token == 2
    # The old holder has not noticed yet (it still carries token 1): refused all the same.
    assert stale.token == 1
    with pytest.raises(LeaseLost, match=r"held by 'host-b-2' with fencing token 2.*token 1"):
        old.save("source-orders", {"offset": 5})
    assert store.load("source-orders") == {"offset": 10}
    store.fenced(successor).save("source-orders", {"offset": 20})
    with pytest.raises(LeaseLost):
        old.save("source-orders", {"offset": 5})
    assert store.load("source-orders") == {"offset": 20}
    assert store.version("source-orders") == 2


def test_a_checkpoint_saved_under_a_newer_token_is_kept(meta: MetaStore) -> None:
    """Even without its lease row (deleted by hand), an older token cannot overwrite."""
    store = StoreCheckpointStore(meta)
    first = StoreLease(meta, "source-orders", "host-a-1", ttl=30)
    assert first.acquire()
    first.release()
    second = StoreLease(meta, "source-orders", "host-b-2", ttl=30)
    assert second.acquire()
    store.fenced(second).save("source-orders", {"offset": 20})
    # Pretend host-a-1 holds token 1 again, as if the lease table had been reset.
    with meta.transaction(write=True) as conn:
        conn.execute(
            sa.update(runtime_leases)
            .where(runtime_leases.c.name == "source-orders")
            .values(owner="host-a-1", token=1)
        )
    first._token = 1
    with pytest.raises(LeaseLost, match=r"saved under fencing token 2, newer than .* 1"):
        store.fenced(first).save("source-orders", {"offset": 5})
    assert store.load("source-orders") == {"offset": 20}


def test_a_file_checkpoint_left_behind_stops_the_source(meta: MetaStore, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    FileCheckpointStore(folder).save("source-orders", {"lsn": 1})
    store = StoreCheckpointStore(meta, folder)
    with pytest.raises(ConnectorError, match=r"found the file .*source-orders.json") as caught:
        store.load("source-orders")
    assert not caught.value.retryable
    assert "to start over, remove the file" in str(caught.value)
    assert store.load("source-other") is None


def _files_source(root: Path, env: TaskEnv) -> SourceTask:
    folder = root / "in"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.csv").write_text("id\n" + "".join(f"{n * 1000 + i}\n" for i in range(50)))
        past = time.time() - 60
        os.utime(folder / f"{n}.csv", (past, past))
    env.hub.create_topic("t", TopicConfig(partitions=1))
    config = FilesConfig.model_validate(
        {"path": "in", "topic": "t", "key": "id", "settle": "0s", "checkpoint_interval": "50ms"}
    )
    return SourceTask("src", "files", FilesSource, config, env, TaskMetrics("src", "source", "f"))


def test_a_source_that_lost_its_lease_neither_checkpoints_nor_produces(
    meta: MetaStore, tmp_path: Path
) -> None:
    with EmbeddedHub(tmp_path / "hub", ack="written") as hub:
        store = StoreCheckpointStore(meta)
        env = TaskEnv(tmp_path, hub, meta, store, MemoryBudget(1 << 24), "host-a-1", "a")
        task = _files_source(tmp_path, env)
        task.lease = StoreLease(meta, "source-src", "host-a-1", ttl=30)
        assert task.lease.acquire()
        # Another process takes the lease over (as after an expiry) and checkpoints.
        with meta.transaction(write=True) as conn:
            conn.execute(
                sa.update(runtime_leases).values(owner="host-b-2", token=2, expires_ms=2**62)
            )
        store.save("source-src", {"state": None, "ends": {}})
        stop = threading.Event()
        with pytest.raises(LeaseLost, match=r"held by 'host-b-2' with fencing token 2"):
            task.run_once(stop)  # its first checkpoint is refused
        assert store.load("source-src") == {"state": None, "ends": {}}
        # What it wrote meanwhile carries record ids: the new holder recognises it.
        written = sum(hub.end_offsets("t").values())
        # A holding that ran out by the holder's clock: nothing more goes to the hub.
        short = StoreLease(meta, "source-src", "host-a-1", ttl=0.3)
        with meta.transaction(write=True) as conn:
            conn.execute(sa.update(runtime_leases).values(expires_ms=0))
        assert short.acquire()
        task = _files_source_again(task, env, short)
        _expire(0.3)
        # Only a safety net for a task that would not raise: it would run until stopped.
        guard = threading.Timer(20, stop.set)
        guard.start()
        try:
            with pytest.raises(LeaseLost, match=r"lease ran out; not writing the batch"):
                task.run_once(stop)
        finally:
            guard.cancel()
        assert sum(hub.end_offsets("t").values()) == written


def _files_source_again(task: SourceTask, env: TaskEnv, lease: StoreLease) -> SourceTask:
    again = SourceTask(
        "src", "files", FilesSource, task.config, env, TaskMetrics("s", "source", "f")
    )
    again.lease = lease
    return again


# The supervisor ----------------------------------------------------------------------------


class Forever(Task):
    """Runs until its life's stop is set; counts lives."""

    kind = "source"

    def __init__(self, env: TaskEnv) -> None:
        super().__init__("orders", "forever", env, TaskMetrics("orders", "source", "forever"))
        self.lives = 0
        self.valid_at_end: list[bool] = []

    def run_once(self, stop: threading.Event) -> None:
        self.lives += 1
        stop.wait()
        self.valid_at_end.append(self.lease_valid())


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_supervisor_stops_the_life_whose_lease_is_lost(meta: MetaStore, tmp_path: Path) -> None:
    with EmbeddedHub(tmp_path / "hub") as hub:
        env = TaskEnv(
            root=tmp_path,
            hub=hub,
            meta=meta,
            checkpoints=StoreCheckpointStore(meta),
            budget=MemoryBudget(1 << 20),
            run_id="host-a-1",
            client="host-a-1",
        )
        task = Forever(env)
        stop = threading.Event()
        lease = StoreLease(meta, "source-orders", "host-a-1", ttl=0.6)
        supervisor = Supervisor(task, stop, lease=lease, backoff=Backoff(0.01, 0.02))
        supervisor.start()
        try:
            _wait(lambda: task.lives == 1, "the first life")
            # Another process takes over (as after an expiry): a bigger token, far expiry.
            with meta.transaction(write=True) as conn:
                conn.execute(
                    sa.update(runtime_leases)
                    .where(runtime_leases.c.name == "source-orders")
                    .values(owner="host-b-2", token=runtime_leases.c.token + 1, expires_ms=2**62)
                )
            _wait(lambda: task.metrics.state == "standby", "the life to stop")
            assert task.valid_at_end == [False]
            assert task.metrics.counters["leases_lost"] == 1
            assert "LeaseLost" in task.metrics.last_error
            _wait(lambda: task.metrics.position is not None, "the standby to show the holder")
            shown = task.metrics.position["lease_owner"]
            assert (shown["owner"], shown["token"]) == ("host-b-2", 2)
            # The other process lets go: this one takes the task back under a new token.
            with meta.transaction(write=True) as conn:
                conn.execute(sa.update(runtime_leases).values(expires_ms=0))
            _wait(lambda: task.lives == 2, "the second life")
            assert lease.token == 3 and task.metrics.state == "running"
        finally:
            stop.set()
            supervisor.join(10)
        assert task.metrics.state == "stopped"
        assert not lease.held
        assert _row(meta, "source-orders").expires_ms == 0  # released for a standby


def test_heartbeat_keeps_a_short_lease(meta: MetaStore, tmp_path: Path) -> None:
    """Lives far longer than the ttl are not interrupted while renewals get through."""
    with EmbeddedHub(tmp_path / "hub") as hub:
        env = TaskEnv(tmp_path, hub, meta, StoreCheckpointStore(meta), MemoryBudget(1), "a", "a")
        task = Forever(env)
        stop = threading.Event()
        lease = StoreLease(meta, "source-orders", "host-a-1", ttl=0.6)
        supervisor = Supervisor(task, stop, lease=lease, backoff=Backoff(0.01, 0.02))
        supervisor.start()
        other = StoreLease(meta, "source-orders", "host-b-2", ttl=30)
        try:
            _wait(lambda: task.lives == 1, "the first life")
            for _ in range(4):
                time.sleep(0.6 * SAFE_SHARE)
                assert not other.acquire()
            assert task.lives == 1 and "leases_lost" not in task.metrics.counters
        finally:
            stop.set()
            supervisor.join(10)
        assert other.acquire() and other.token == 2


# Which lease a project gets ----------------------------------------------------------------


def test_the_metadata_store_decides_the_lease_and_checkpoints(
    store_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "trunkline.yaml").write_text(
        f"meta: {store_url}\n"
        "sources:\n  incoming: {type: files, path: in, glob: '*.csv', topic: orders}\n"
    )
    with Project.open(root) as project:
        runner = Runner(project)
        planned = runner._planned[0]
        lease = runner._lease(planned)
        checkpoints = runner.tasks[0].env.checkpoints
        if store_url.startswith("sqlite"):
            assert isinstance(lease, FileLease) and isinstance(checkpoints, FileCheckpointStore)
            assert lease.path == root / ".trunkline" / "leases" / "source-incoming.lock"
        else:
            assert isinstance(lease, StoreLease) and isinstance(checkpoints, StoreCheckpointStore)
            assert lease.name == "source-incoming" and lease.holder == runner.run_id
            assert checkpoints.legacy == root / ".trunkline" / "checkpoints"
