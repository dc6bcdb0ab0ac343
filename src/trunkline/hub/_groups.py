"""Durable consumer-group state of the embedded hub: members, leases, ownership, offsets.

Everything lives in one SQLite file, ``<hub dir>/groups.db`` (the embedded hub's
``__consumer_offsets``), shared by every process that opens the hub. Each read-modify-write is
one ``BEGIN IMMEDIATE`` transaction, so concurrent processes take turns, and the time it uses
is read once the write lock is held, so the order of transactions and of their clocks agree.

Membership is cooperative and lease-based (like KIP-848, without a coordinator process):

* :meth:`GroupStore.sync` is the heartbeat. It renews the caller's lease, removes members
  whose lease ran out (their partitions become free), computes the target assignment
  (:func:`~trunkline.hub._assign.assign`), takes the caller's target partitions nobody owns,
  and tells it which owned partitions another member should have.
* A partition has at most one owner row and is never taken from a live member: it moves only
  when its owner releases it, leaves, or stops heartbeating for ``session_timeout_ms``.
* A member owns what the last sync reported only while ``now < lease_expires_ms``; another
  member can take it over only once ``now > last heartbeat + session_timeout_ms``. All
  processes read the same machine clock, so the two windows never overlap. Offset commits are
  checked against the owner rows inside their transaction, so even a member that overran its
  lease cannot commit for a partition it lost.

What the consumer does on each poll (at least every ``session_timeout_ms / 3``)::

    result = store.sync(group, member_id, {topic: partitions, ...})
    if result.fenced:            # our session expired and others took over
        forget all positions (commit nothing), store.join(...) again, sync again
    for tp in result.acquired:   # ours from now on; read from the committed offset
        position[tp] = result.committed.get(tp, <auto_offset_reset>)
    for tp in result.to_release: # another member should have it: hand it over
        stop fetching tp; store.commit(group, {tp: position[tp]}, member_id=...); release
    partitions owned before but missing from result.owned were lost: drop, do not commit
    fetch from owned - to_release, only while result.valid_at(store.now_ms())
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from trunkline.errors import (
    ConfigError,
    HubError,
    NotAssigned,
    PartitionNotFound,
    StorageFull,
    TopicNotFound,
)
from trunkline.hub._assign import assign
from trunkline.hub._types import (
    GroupDescription,
    MemberDescription,
    TopicPartition,
    check_topic_name,
)

FILENAME = "groups.db"
SCHEMA_VERSION = 1
#: Kafka's ``session.timeout.ms`` default and its broker-side bounds (the minimum is lowered
#: from Kafka's 6 s so that tests and small local pipelines can fail over quickly).
DEFAULT_SESSION_TIMEOUT_MS = 45_000
MIN_SESSION_TIMEOUT_MS = 100
MAX_SESSION_TIMEOUT_MS = 1_800_000

_SCHEMA = (
    "CREATE TABLE groups (group_id TEXT PRIMARY KEY, generation INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE members (
        group_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        client TEXT NOT NULL,
        topics TEXT NOT NULL,  -- JSON array of the subscribed topics, sorted
        session_timeout_ms INTEGER NOT NULL,
        joined_ms INTEGER NOT NULL,
        last_heartbeat_ms INTEGER NOT NULL,
        PRIMARY KEY (group_id, member_id)
    ) WITHOUT ROWID""",
    # The primary key is what guarantees at most one owner per partition.
    """CREATE TABLE owners (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition_id INTEGER NOT NULL,
        member_id TEXT NOT NULL,
        acquired_ms INTEGER NOT NULL,
        PRIMARY KEY (group_id, topic, partition_id),
        FOREIGN KEY (group_id, member_id) REFERENCES members (group_id, member_id)
            ON DELETE CASCADE
    ) WITHOUT ROWID""",
    "CREATE INDEX owners_by_topic ON owners (topic)",
    """CREATE TABLE offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition_id INTEGER NOT NULL,
        next_offset INTEGER NOT NULL CHECK (next_offset >= 0),
        metadata TEXT NOT NULL,
        committed_ms INTEGER NOT NULL,
        PRIMARY KEY (group_id, topic, partition_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX offsets_by_topic ON offsets (topic)",
    # The largest partition count any member reported, so that all members (and describe)
    # compute the same target even while some still hold an older count.
    "CREATE TABLE topic_partitions (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL)"
    " WITHOUT ROWID",
)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one heartbeat tells a member.

    Attributes:
        owned: Partitions the member owns now, including ``acquired`` and ``to_release``.
        acquired: Partitions it took in this sync; read them from ``committed``.
        to_release: Owned partitions the target gives to another member: commit, release.
        pending: Target partitions still owned by another member (they arrive in a later
            sync, once that member releases them or its lease runs out).
        generation: Bumped on every membership change of the group.
        lease_expires_ms: Ownership holds only while the clock reads less than this.
        fenced: The member is no longer in the group (its session expired): it owns
            nothing, must forget its positions without committing, and join again.
        committed: Committed offsets of the ``acquired`` partitions that have one.
    """

    owned: frozenset[TopicPartition]
    acquired: frozenset[TopicPartition]
    to_release: frozenset[TopicPartition]
    pending: frozenset[TopicPartition]
    generation: int
    lease_expires_ms: int
    fenced: bool = False
    committed: Mapping[TopicPartition, int] = field(default_factory=dict)

    def valid_at(self, now_ms: int) -> bool:
        """Whether the ownership this result reports may still be used at ``now_ms``."""
        return not self.fenced and now_ms < self.lease_expires_ms


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """A committed offset with the metadata string and time (ms) of its commit."""

    offset: int
    metadata: str
    committed_ms: int


def new_member_id(client: str = "") -> str:
    """A member id unique to one consumer instance (ids must never be shared or reused)."""
    return f"{client or 'member'}-{uuid.uuid4().hex}"


class GroupStore:
    """Consumer groups of one embedded hub, stored in ``<hub_dir>/groups.db``.

    Safe to share between threads (calls are serialised by a lock); each process opens its
    own. Times are milliseconds read from ``clock`` (seconds, like :func:`time.time`); every
    process must use the same clock.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as hub, GroupStore(hub) as store:
        ...     _ = store.join("etl", "m1", ["orders"], session_timeout_ms=10_000)
        ...     result = store.sync("etl", "m1", {"orders": 2})
        ...     store.commit("etl", {TopicPartition("orders", 0): 42}, member_id="m1")
        ...     sorted(tp.partition for tp in result.owned), store.committed("etl")
        ([0, 1], {TopicPartition(topic='orders', partition=0): 42})
    """

    def __init__(
        self,
        hub_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
    ) -> None:
        directory = Path(hub_dir)
        if not directory.is_dir():
            raise HubError(f"hub directory {str(directory)!r} does not exist or is not a directory")
        self.path = directory / FILENAME
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        with self._translated():
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        try:
            self._set_up()
        except BaseException:
            self._db.close()
            raise

    def _set_up(self) -> None:
        with self._lock, self._translated():
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise HubError(
                    f"{self.path}: expected SQLite's WAL journal mode, found {mode!r} "
                    "(is the hub on a network filesystem?)"
                )
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in _SCHEMA:
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version > SCHEMA_VERSION:
                    raise HubError(
                        f"{self.path} has schema version {version}; this trunkline reads up to "
                        f"version {SCHEMA_VERSION}: upgrade trunkline"
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def now_ms(self) -> int:
        """The store's clock in milliseconds: what to compare ``lease_expires_ms`` with."""
        # Rounded, not truncated, so that a clock of exact milliseconds in float seconds
        # reads back as the same milliseconds.
        return round(self._clock() * 1000)

    def __enter__(self) -> GroupStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Membership ---------------------------------------------------------------------

    def join(
        self,
        group: str,
        member_id: str,
        topics: Iterable[str],
        *,
        client: str = "",
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
    ) -> int:
        """Add a member (or change an existing member's subscription); returns the generation.

        Joining starts the member's session but gives it no partitions: call :meth:`sync`.
        Re-joining with the same id keeps what the member owns (a new subscription without
        some topic makes those partitions ``to_release``); a member whose session expired is
        replaced by a fresh one.
        """
        _check_id("consumer group", group)
        _check_id("member id", member_id)
        subscribed = sorted({check_topic_name(t) for t in _iterable(topics, "topics")})
        if not subscribed:
            raise ConfigError(f"member {member_id!r} of group {group!r} subscribes to no topic")
        if not (
            isinstance(session_timeout_ms, int)
            and MIN_SESSION_TIMEOUT_MS <= session_timeout_ms <= MAX_SESSION_TIMEOUT_MS
        ):
            raise ConfigError(
                f"session_timeout_ms must be an integer from {MIN_SESSION_TIMEOUT_MS} to "
                f"{MAX_SESSION_TIMEOUT_MS}, found {session_timeout_ms!r}"
            )
        with self._write(durable=False) as now:
            self._reap(group, now)
            self._db.execute(
                "INSERT INTO groups VALUES (?, 0) ON CONFLICT (group_id) DO NOTHING", (group,)
            )
            row = self._db.execute(
                "SELECT topics FROM members WHERE group_id = ? AND member_id = ?",
                (group, member_id),
            ).fetchone()
            self._db.execute(
                "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (group_id, member_id) DO UPDATE SET "
                "client = excluded.client, topics = excluded.topics, "
                "session_timeout_ms = excluded.session_timeout_ms, "
                "last_heartbeat_ms = excluded.last_heartbeat_ms",
                (group, member_id, client, json.dumps(subscribed), session_timeout_ms, now, now),
            )
            if row is None or json.loads(row[0]) != subscribed:
                self._bump(group)
            return self._generation(group)

    def sync(self, group: str, member_id: str, partition_counts: Mapping[str, int]) -> SyncResult:
        """Heartbeat, expire dead members, take free target partitions; see :class:`SyncResult`.

        ``partition_counts`` gives the partition counts the caller knows. Counts only grow: the
        largest any member reported is used, so all members compute the same target. A topic
        left out (deleted, or not created yet) keeps the count others reported, if any; after
        :meth:`delete_topic` it has none, so no partitions.
        """
        _check_id("consumer group", group)
        _check_id("member id", member_id)
        counts = _check_counts(partition_counts)
        # Heartbeats need not survive power loss (every member dies with the machine), so
        # they skip the fsync that would otherwise cost every poll a disk flush.
        with self._write(durable=False) as now:
            self._reap(group, now)
            row = self._db.execute(
                "SELECT topics, session_timeout_ms FROM members "
                "WHERE group_id = ? AND member_id = ?",
                (group, member_id),
            ).fetchone()
            if row is None:
                empty: frozenset[TopicPartition] = frozenset()
                gen = self._generation(group)
                return SyncResult(empty, empty, empty, empty, gen, now, fenced=True)
            topics, session_timeout_ms = json.loads(row[0]), row[1]
            self._db.execute(
                "UPDATE members SET last_heartbeat_ms = ? WHERE group_id = ? AND member_id = ?",
                (now, group, member_id),
            )
            self._db.executemany(
                "INSERT INTO topic_partitions VALUES (?, ?) ON CONFLICT (topic) "
                "DO UPDATE SET partitions = max(partitions, excluded.partitions)",
                [(t, counts[t]) for t in topics if t in counts],
            )
            target = self._target(group)[member_id]
            owners = self._owners(group)
            owned = {tp for tp, owner in owners.items() if owner == member_id}
            acquired = {tp for tp in target if tp not in owners}
            self._db.executemany(
                "INSERT INTO owners VALUES (?, ?, ?, ?, ?)",
                [(group, tp.topic, tp.partition, member_id, now) for tp in acquired],
            )
            committed = self._committed(group, None) if acquired else {}
            return SyncResult(
                owned=frozenset(owned | acquired),
                acquired=frozenset(acquired),
                to_release=frozenset(owned - target),
                pending=frozenset(tp for tp in target if owners.get(tp, member_id) != member_id),
                generation=self._generation(group),
                lease_expires_ms=now + session_timeout_ms,
                committed={tp: committed[tp].offset for tp in acquired if tp in committed},
            )

    def release(
        self, group: str, member_id: str, partitions: Iterable[TopicPartition]
    ) -> frozenset[TopicPartition]:
        """Give up partitions (commit their offsets first); returns those actually released.

        Partitions the member does not own (any more) are ignored.
        """
        _check_id("consumer group", group)
        _check_id("member id", member_id)
        parts = _check_partitions(partitions)
        with self._write(durable=False):
            released = []
            for tp in parts:
                cur = self._db.execute(
                    "DELETE FROM owners "
                    "WHERE group_id = ? AND topic = ? AND partition_id = ? AND member_id = ?",
                    (group, tp.topic, tp.partition, member_id),
                )
                if cur.rowcount:
                    released.append(tp)
            return frozenset(released)

    def leave(self, group: str, member_id: str) -> None:
        """Remove the member; its partitions are free at once. Leaving twice is harmless."""
        _check_id("consumer group", group)
        _check_id("member id", member_id)
        with self._write(durable=False):
            cur = self._db.execute(
                "DELETE FROM members WHERE group_id = ? AND member_id = ?", (group, member_id)
            )
            if cur.rowcount:
                self._bump(group)

    # Offsets --------------------------------------------------------------------------

    def commit(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int],
        *,
        member_id: str | None = None,
        metadata: str = "",
        partition_counts: Mapping[str, int] | None = None,
    ) -> None:
        """Commit the next offsets to read, all or nothing, durably (fsynced).

        With ``member_id``, every partition must be owned by that member, whose session must
        be live; otherwise :class:`NotAssigned` names the partitions and their owners. Without
        it this is an admin commit, refused while the group has live members (Kafka's rule).
        ``partition_counts``, when given, is checked: unknown topics and partitions are errors.
        """
        _check_id("consumer group", group)
        if member_id is not None:
            _check_id("member id", member_id)
        rows = _check_offsets(offsets, partition_counts)
        with self._write(durable=True) as now:
            self._reap(group, now)
            if member_id is None:
                live = self._members(group)
                if live:
                    raise HubError(
                        f"group {group!r} has live members {sorted(live)}; stop them (or wait "
                        "for their sessions to expire) before setting its offsets"
                    )
            else:
                self._check_owner(group, member_id, list(offsets))
            self._db.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET "
                "next_offset = excluded.next_offset, metadata = excluded.metadata, "
                "committed_ms = excluded.committed_ms",
                [(group, t, p, o, metadata, now) for t, p, o in rows],
            )

    def reset(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int],
        *,
        partition_counts: Mapping[str, int] | None = None,
    ) -> None:
        """Set a group's offsets as an admin (refused while it has live members)."""
        self.commit(group, offsets, partition_counts=partition_counts)

    def committed(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        """Committed offsets of the group (in ``topic`` only, if given); empty if none."""
        return {tp: c.offset for tp, c in self.committed_details(group, topic).items()}

    def committed_details(
        self, group: str, topic: str | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        """Like :meth:`committed`, with each commit's metadata string and time."""
        _check_id("consumer group", group)
        with self._read():
            return self._committed(group, topic)

    # Admin ----------------------------------------------------------------------------

    def list_groups(self) -> list[str]:
        """Groups with committed offsets or live members, sorted."""
        with self._read() as now:
            rows = self._db.execute(
                "SELECT group_id FROM offsets UNION SELECT group_id FROM members "
                "WHERE last_heartbeat_ms + session_timeout_ms >= ?",
                (now,),
            ).fetchall()
        return sorted(r[0] for r in rows)

    def describe(self, group: str) -> GroupDescription:
        """State and live members with what they own (offsets are left to the hub).

        States follow Kafka: ``Empty`` (no live member), ``Stable`` (every live member owns
        exactly its target), ``PreparingRebalance`` (some partitions still have to move).
        A group with neither live members nor offsets does not exist (Kafka's ``Dead``).
        """
        _check_id("consumer group", group)
        with self._read() as now:
            members = self._db.execute(
                "SELECT member_id, client, last_heartbeat_ms FROM members "
                "WHERE group_id = ? AND last_heartbeat_ms + session_timeout_ms >= ? "
                "ORDER BY member_id",
                (group, now),
            ).fetchall()
            has_offsets = self._db.execute(
                "SELECT 1 FROM offsets WHERE group_id = ? LIMIT 1", (group,)
            ).fetchone()
            if not members and not has_offsets:
                raise HubError(
                    f"consumer group {group!r} does not exist: it has no live members and no "
                    "committed offsets"
                )
            target = self._target(group, now)
            owned: dict[str, set[TopicPartition]] = {m: set() for m, _, _ in members}
            for tp, owner in self._owners(group).items():
                if owner in owned:  # owners whose session ran out count as gone
                    owned[owner].add(tp)
        stable = all(owned[m] == target[m] for m in owned)
        return GroupDescription(
            group=group,
            state="Empty" if not members else "Stable" if stable else "PreparingRebalance",
            members=tuple(
                MemberDescription(
                    member_id=m,
                    client=client,
                    assignment=tuple(sorted(owned[m], key=lambda tp: (tp.topic, tp.partition))),
                    last_heartbeat_ms=heartbeat,
                )
                for m, client, heartbeat in members
            ),
        )

    def delete_group(self, group: str) -> None:
        """Forget the group and its offsets; refused while it has live members."""
        _check_id("consumer group", group)
        with self._write(durable=True) as now:
            self._reap(group, now)
            exists = self._db.execute(
                "SELECT 1 FROM groups WHERE group_id = ? UNION ALL "
                "SELECT 1 FROM offsets WHERE group_id = ?",
                (group, group),
            ).fetchone()
            if not exists:
                raise HubError(f"consumer group {group!r} does not exist")
            live = self._members(group)
            if live:
                raise HubError(
                    f"group {group!r} has live members {sorted(live)}; "
                    "it can be deleted once they have left or their sessions expired"
                )
            for table in ("offsets", "groups"):
                self._db.execute(f"DELETE FROM {table} WHERE group_id = ?", (group,))  # noqa: S608

    def delete_topic(self, topic: str) -> None:
        """Drop every group's offsets and ownership of a deleted topic.

        The hub must call this when it deletes a topic: a topic re-created under the same
        name starts without offsets, and with its own partition count.
        """
        check_topic_name(topic)
        with self._write(durable=True):
            for table in ("offsets", "owners", "topic_partitions"):
                self._db.execute(f"DELETE FROM {table} WHERE topic = ?", (topic,))  # noqa: S608

    # Internals ------------------------------------------------------------------------

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn SQLite's errors into the hub's, once, here."""
        try:
            yield
        except sqlite3.Error as exc:
            name = getattr(exc, "sqlite_errorname", None) or ""
            if name.startswith("SQLITE_FULL"):
                raise StorageFull(f"the disk holding {self.path} is full: {exc}") from exc
            if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                raise HubError(
                    f"{self.path} stayed locked by another process for more than "
                    f"{self._busy_timeout}s: {exc}"
                ) from exc
            if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
                raise HubError(
                    f"{self.path} is not a consumer-group database (corrupt or not SQLite): {exc}"
                ) from exc
            raise HubError(f"consumer-group database {self.path} failed: {exc}") from exc

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[int]:
        """A ``BEGIN IMMEDIATE`` transaction; yields the time read once the lock is held."""
        with self._lock, self._translated():
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self.now_ms()
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[int]:
        """A read transaction: one consistent snapshot of the database."""
        with self._lock, self._translated():
            self._db.execute("BEGIN")
            try:
                yield self.now_ms()
            finally:
                self._db.execute("COMMIT")

    def _reap(self, group: str, now: int) -> None:
        """Remove members whose session ran out; their owner rows go with them (cascade)."""
        cur = self._db.execute(
            "DELETE FROM members WHERE group_id = ? AND last_heartbeat_ms + session_timeout_ms < ?",
            (group, now),
        )
        if cur.rowcount:
            self._bump(group)

    def _bump(self, group: str) -> None:
        self._db.execute(
            "UPDATE groups SET generation = generation + 1 WHERE group_id = ?", (group,)
        )

    def _generation(self, group: str) -> int:
        row = self._db.execute(
            "SELECT generation FROM groups WHERE group_id = ?", (group,)
        ).fetchone()
        return int(row[0]) if row else 0

    def _members(self, group: str, now: int | None = None) -> dict[str, list[str]]:
        """Members and their topics; live ones only when ``now`` is given (else after a reap)."""
        sql = "SELECT member_id, topics FROM members WHERE group_id = ?"
        rows = (
            self._db.execute(sql, (group,))
            if now is None
            else self._db.execute(
                f"{sql} AND last_heartbeat_ms + session_timeout_ms >= ?", (group, now)
            )
        )
        return {m: json.loads(topics) for m, topics in rows}

    def _target(self, group: str, now: int | None = None) -> dict[str, frozenset[TopicPartition]]:
        members = self._members(group, now)
        counts = dict(self._db.execute("SELECT topic, partitions FROM topic_partitions"))
        return assign(members, counts)

    def _owners(self, group: str) -> dict[TopicPartition, str]:
        rows = self._db.execute(
            "SELECT topic, partition_id, member_id FROM owners WHERE group_id = ?", (group,)
        )
        return {TopicPartition(t, p): m for t, p, m in rows}

    def _committed(self, group: str, topic: str | None) -> dict[TopicPartition, CommittedOffset]:
        sql = "SELECT topic, partition_id, next_offset, metadata, committed_ms FROM offsets"
        rows = (
            self._db.execute(f"{sql} WHERE group_id = ?", (group,))
            if topic is None
            else self._db.execute(f"{sql} WHERE group_id = ? AND topic = ?", (group, topic))
        )
        return {TopicPartition(t, p): CommittedOffset(o, md, ms) for t, p, o, md, ms in rows}

    def _check_owner(self, group: str, member_id: str, partitions: list[TopicPartition]) -> None:
        if member_id not in self._members(group):
            raise NotAssigned(
                f"member {member_id!r} is not in group {group!r} (it left or its session "
                "expired); nothing was committed: join again"
            )
        owners = self._owners(group)
        wrong = [tp for tp in partitions if owners.get(tp) != member_id]
        if wrong:
            found = ", ".join(
                f"{tp.topic}[{tp.partition}] (owner: {owners.get(tp) or 'none'})"
                for tp in sorted(wrong, key=lambda tp: (tp.topic, tp.partition))
            )
            raise NotAssigned(
                f"member {member_id!r} of group {group!r} does not own {found}; "
                "nothing was committed"
            )


def _check_id(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string, found {value!r}")


def _iterable(values: Iterable[str], what: str) -> list[str]:
    # A bare string is iterable too, and would subscribe to one-letter topics.
    if isinstance(values, str):
        raise ConfigError(f"{what} must be a list of names, found the string {values!r}")
    return list(values)


def _check_counts(partition_counts: Mapping[str, int]) -> dict[str, int]:
    bad = {
        t: n
        for t, n in partition_counts.items()
        if not isinstance(n, int) or isinstance(n, bool) or n < 0
    }
    if bad:
        raise ConfigError(f"partition counts must be integers >= 0, found {bad}")
    return dict(partition_counts)


def _check_partitions(partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
    parts = list(partitions)
    for tp in parts:
        if not isinstance(tp, TopicPartition):
            raise ConfigError(f"expected TopicPartition values, found {tp!r}")
    return parts


def _check_offsets(
    offsets: Mapping[TopicPartition, int], partition_counts: Mapping[str, int] | None
) -> list[tuple[str, int, int]]:
    rows = []
    for tp, offset in offsets.items():
        _check_partitions([tp])
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ConfigError(
                f"offset for {tp.topic}[{tp.partition}] must be an integer >= 0, found {offset!r}"
            )
        if tp.partition < 0:
            raise PartitionNotFound(f"partition numbers start at 0, found {tp.partition}")
        if partition_counts is not None:
            if tp.topic not in partition_counts:
                raise TopicNotFound(
                    f"topic {tp.topic!r} does not exist; known: {sorted(partition_counts)}"
                )
            if tp.partition >= partition_counts[tp.topic]:
                raise PartitionNotFound(
                    f"topic {tp.topic!r} has {partition_counts[tp.topic]} partitions; "
                    f"partition {tp.partition} does not exist"
                )
        rows.append((tp.topic, tp.partition, offset))
    return rows
