"""The change stream of a replication slot, read in batches.

:class:`ChangeStream` reads a started :class:`~._pgwire.ReplicationConnection`. Its loop
does as little as possible per message: a change (insert, update, delete) is only kept,
as the libpq buffer it arrived in; transactions, relations, truncates and heartbeats are
decoded on the spot (:mod:`._pgoutput`). :meth:`ChangeStream.take` then decodes the kept
changes of each table together (:mod:`._pgtuples`) into a :class:`~._pgevents.ChangeSet`.

It also tracks the *safe position*: the LSN from which a restarted stream repeats nothing
that was taken and misses nothing that was not. That is the end of the last commit taken,
or, between transactions, the server's position from a keepalive or a heartbeat message.

An update that changes the key becomes a delete of the old key and a create of the new
one, as Debezium does, so that keyed consumers drop the old row.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.connectors.sources._pgcatalog import Table
from trunkline.connectors.sources._pgevents import ChangeSet, empty_image
from trunkline.connectors.sources._pgoutput import (
    Begin,
    Commit,
    Decoder,
    LogicalMessage,
    MalformedMessage,
    Relation,
    Truncate,
    format_lsn,
)
from trunkline.connectors.sources._pgtuples import (
    Image,
    TupleError,
    be_uint,
    changed_keys,
    parse_changes,
)
from trunkline.connectors.sources._pgwire import ReplicationConnection
from trunkline.errors import TargetUnavailable

__all__ = ["HEARTBEAT_PREFIX", "ChangeStream", "Taken"]

#: Heartbeat messages the source writes into the WAL (``pg_logical_emit_message``).
HEARTBEAT_PREFIX = "trunkline.heartbeat"

_CHANGE_TAGS = (0x49, 0x55, 0x44)  # I, U, D
_KEEPALIVE = struct.Struct(">QqB")
_START = struct.Struct(">Q")


@dataclass
class Taken:
    """Changes per table in stream order (a table appears more than once when a truncate
    or a change of its columns came in between), and the safe position after all."""

    sets: list[tuple[Table, ChangeSet]] = field(default_factory=list)
    safe_lsn: int = 0

    @property
    def rows(self) -> int:
        return sum(len(s) for _, s in self.sets)


@dataclass
class _Txn:
    first: int  # index of its first change among the kept messages of this batch
    final_lsn: int
    xid: int
    commit_ms: int


class ChangeStream:
    """Reads a started stream into batches.

    Args:
        connection: A connection on which ``START_REPLICATION`` succeeded.
        start_lsn: Where the stream started (the first safe position).
        table_of: The captured table a relation describes (its columns as the stream has
            them now), or None for a table that is not captured.
    """

    def __init__(
        self,
        connection: ReplicationConnection,
        start_lsn: int,
        table_of: Callable[[Relation], Table | None],
    ) -> None:
        self.connection = connection
        self.decoder = Decoder()
        self.table_of = table_of
        self.safe_lsn = start_lsn
        self.wal_end = start_lsn
        self.last_commit_ms = 0
        self.caught_up = False
        self.changes = 0
        self._tables: dict[int, Table | None] = {}
        self._kept: list[memoryview] = []
        self._sets: list[tuple[Table, ChangeSet]] = []
        self._txns: list[_Txn] = []
        self._txn: Begin | None = None
        self._held: bytes | None = None
        self._reply = False
        self._run = (0, 0)  # (lsn, changes seen at it) of the last change taken
        self._pending_safe = 0  # a safe position once what is kept has been taken

    # -- reading --------------------------------------------------------------------------

    def pump(self, timeout: float, max_rows: int, linger: float = 0.05) -> None:
        """Read for up to ``timeout`` seconds: until ``max_rows`` changes are kept, or
        until the stream has been quiet for a moment (or ``linger`` has passed) once
        something is."""
        if self._held is not None:
            held, self._held = self._held, None
            if self._control(held):
                return
        connection = self.connection
        get = connection.get
        kept = self._kept
        keep = kept.append
        deadline = time.monotonic() + timeout
        first = 0.0
        while len(kept) < max_rows:
            try:
                size, data = get()
            except psycopg.Error as exc:
                raise TargetUnavailable(f"the replication stream broke: {exc}") from exc
            if size > 0:
                head = data[0]
                if head == 0x77:  # w: XLogData
                    if data[25] in _CHANGE_TAGS:
                        keep(data)
                        continue
                    if self._control(bytes(data)):
                        return
                elif head == 0x6B and self._keepalive(bytes(data)):
                    return
                continue
            if size < 0:
                raise connection.failed(size)
            now = time.monotonic()
            if kept or self._sets:
                if not first:
                    first = now
                # Something is kept: wait only a little for more, then hand it out.
                wait = min(0.005, first + linger - now)
                if wait <= 0 or not connection.wait(wait):
                    self.caught_up = True
                    return
            else:
                if now >= deadline:
                    self.caught_up = True
                    return
                if not connection.wait(deadline - now):
                    self.caught_up = True
                    return
            self.caught_up = False

    def reply_wanted(self) -> bool:
        """Whether the server asked for a status update (it disconnects otherwise)."""
        wanted, self._reply = self._reply, False
        return wanted

    def _between(self, lsn: int) -> None:
        """Everything before ``lsn`` has been sent and there is no open transaction."""
        if self._kept or self._sets:
            self._pending_safe = max(self._pending_safe, lsn)
        else:
            self.safe_lsn = max(self.safe_lsn, lsn)

    def _keepalive(self, data: bytes) -> bool:
        wal_end, _clock, reply = _KEEPALIVE.unpack_from(data, 1)
        self.wal_end = max(self.wal_end, wal_end)
        if self._txn is None:
            self._between(wal_end)
        if reply:
            self._reply = True
            return True
        return False

    def _control(self, data: bytes) -> bool:
        """A message other than a change; True when the batch must end before it (it is
        held and handled at the next :meth:`pump`)."""
        (start,) = _START.unpack_from(data, 1)
        self.wal_end = max(self.wal_end, start)
        decoded = self.decoder.decode(data[25:], start)
        if isinstance(decoded, Begin):
            self._txn = decoded
            self._txns.append(
                _Txn(len(self._kept), decoded.final_lsn, decoded.xid, decoded.commit_ms)
            )
        elif isinstance(decoded, Commit):
            self._txn = None
            self.last_commit_ms = decoded.commit_ms
            self._between(decoded.end_lsn)
        elif isinstance(decoded, Relation):
            table = self.table_of(decoded)
            known = self._tables.get(decoded.oid)
            if (
                self._kept
                and known is not None
                and (table is None or table.columns != known.columns)
            ):
                # Kept changes have the old columns: decode them first.
                self._held = data
                self.decoder.relations.pop(decoded.oid, None)
                return True
            self._tables[decoded.oid] = table
        elif isinstance(decoded, Truncate):
            if self._kept:
                self._held = data
                return True
            self._truncate(decoded, start)
        elif (
            isinstance(decoded, LogicalMessage) and not decoded.transactional and self._txn is None
        ):
            # A heartbeat between transactions: everything before it has been sent.
            self._between(decoded.lsn)
        return False

    def _truncate(self, truncate: Truncate, lsn: int) -> None:
        txn = self._txn or Begin(lsn, int(time.time() * 1000), 0)
        for position, oid in enumerate(truncate.relations):
            table = self._tables.get(oid)
            if table is None:
                continue
            width = len(table.columns)
            self._sets.append(
                (
                    table,
                    ChangeSet(
                        np.array(["t"]),
                        empty_image(width, 1),
                        empty_image(width, 1),
                        np.array([lsn], dtype=np.uint64),
                        np.array([position], dtype=np.int64),
                        np.array([txn.final_lsn], dtype=np.uint64),
                        np.array([txn.xid], dtype=np.int64),
                        np.array([txn.commit_ms], dtype=np.int64),
                    ),
                )
            )
            self.changes += 1

    # -- taking ---------------------------------------------------------------------------

    def take(self) -> Taken:
        """What was read, decoded, and the safe position after it; reading starts over."""
        sets = self._sets
        kept = self._kept
        if kept:
            try:
                sets = sets + self._decode(kept)
            except (TupleError, IndexError) as exc:
                raise MalformedMessage(
                    f"malformed pgoutput change between LSN {format_lsn(self.safe_lsn)} and "
                    f"{format_lsn(self.wal_end)}: {exc}"
                ) from exc
        if self._pending_safe:
            self.safe_lsn = max(self.safe_lsn, self._pending_safe)
            self._pending_safe = 0
        self._kept = []
        self._sets = []
        # A transaction still open continues in the next batch, from its first change.
        self._txns = (
            []
            if self._txn is None
            else [_Txn(0, self._txn.final_lsn, self._txn.xid, self._txn.commit_ms)]
        )
        # Inside a transaction the safe position stays at the last commit taken: a restart
        # repeats this transaction whole, and record ids recognise what was written.
        return Taken(sets, self.safe_lsn)

    def _decode(self, kept: list[memoryview]) -> list[tuple[Table, ChangeSet]]:
        n = len(kept)
        self.changes += n
        sizes = np.fromiter((len(m) for m in kept), dtype=np.int64, count=n)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        buf = np.frombuffer(b"".join(kept), dtype=np.uint8)
        lsn = be_uint(buf, starts + 1, 8)
        self.wal_end = max(self.wal_end, int(be_uint(buf, starts[-1:] + 9, 8)[0]))
        relation = be_uint(buf, starts + 26, 4)
        position = _positions(lsn, self._run)
        self._run = (int(lsn[-1]), int(position[-1]) + 1)
        txns = self._txns
        first = np.array([t.first for t in txns], dtype=np.int64)
        owner = np.searchsorted(first, np.arange(n), side="right") - 1
        if len(txns) == 0 or (owner < 0).any():
            raise TupleError("a change outside a transaction")
        commit_lsn = np.array([t.final_lsn for t in txns], dtype=np.uint64)[owner]
        xid = np.array([t.xid for t in txns], dtype=np.int64)[owner]
        ts_ms = np.array([t.commit_ms for t in txns], dtype=np.int64)[owner]
        out = []
        for oid in np.unique(relation):
            table = self._tables.get(int(oid))
            if table is None:
                continue
            rows = np.flatnonzero(relation == oid)
            parsed = parse_changes(buf, starts[rows], len(table.columns))
            changes = ChangeSet(
                parsed.op,
                parsed.old,
                parsed.new,
                lsn[rows],
                position[rows],
                commit_lsn[rows],
                xid[rows],
                ts_ms[rows],
            )
            out.append((table, _with_key_changes(changes, parsed.old_kind, table)))
        return out


def _positions(lsn: np.ndarray, run: tuple[int, int]) -> np.ndarray:
    """Each change's place among consecutive changes with the same LSN (a multi-row insert
    is one WAL record), continuing the run of the previous batch."""
    n = len(lsn)
    starts = np.ones(n, dtype=bool)
    starts[1:] = lsn[1:] != lsn[:-1]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    position = np.arange(n) - run_start
    if n and int(lsn[0]) == run[0]:
        position[run_start == 0] += run[1]
    return position


def _with_key_changes(changes: ChangeSet, old_kind: np.ndarray, table: Table) -> ChangeSet:
    """Before images as Debezium has them, and key changes split into delete + create."""
    op = changes.op
    # An update has a before image only with REPLICA IDENTITY FULL ('O'); deletes always.
    old = changes.before
    changes.before = Image(
        old.present & ((op == "d") | (old_kind == ord("O"))), old.values, old.unchanged
    )
    names = [c.name for c in table.columns]
    key_positions = [names.index(k) for k in table.key if k in names]
    split = changed_keys(op, old, changes.after, key_positions)
    if not split.any():
        return changes
    # The update's key changed: a delete of the old key, then a create of the new one.
    copies = np.where(split, 2, 1)
    ends = np.cumsum(copies)
    expanded = changes.take(np.repeat(np.arange(len(op)), copies))
    deleted = np.zeros(len(expanded), dtype=bool)
    deleted[ends[split] - 2] = True
    created = np.zeros(len(expanded), dtype=bool)
    created[ends[split] - 1] = True
    expanded.op = np.where(deleted, "d", np.where(created, "c", expanded.op))
    old_expanded = old.take(np.repeat(np.arange(len(op)), copies))
    expanded.before = Image(
        np.where(deleted, True, np.where(created, False, expanded.before.present)),
        [
            pa_if(deleted, o, b)
            for o, b in zip(old_expanded.values, expanded.before.values, strict=True)
        ],
        [
            _either(deleted, o, b)
            for o, b in zip(old_expanded.unchanged, expanded.before.unchanged, strict=True)
        ],
    )
    expanded.after.present = np.where(deleted, False, expanded.after.present)
    # The create shares the update's WAL position: a negative place keeps its id apart.
    expanded.position = np.where(created, -(expanded.position + 1), expanded.position)
    return expanded


def pa_if(mask: np.ndarray, when: pa.Array, otherwise: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(mask), when, otherwise)


def _either(
    mask: np.ndarray, when: np.ndarray | None, otherwise: np.ndarray | None
) -> np.ndarray | None:
    if when is None and otherwise is None:
        return None
    n = len(mask)
    a = when if when is not None else np.zeros(n, dtype=bool)
    b = otherwise if otherwise is not None else np.zeros(n, dtype=bool)
    return np.where(mask, a, b)
