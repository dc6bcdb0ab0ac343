"""Decoding pgoutput, PostgreSQL's logical replication output (protocol version 1).

Each ``XLogData`` payload of a ``START_REPLICATION ... LOGICAL`` stream is one message,
tagged by its first byte (see "Logical Replication Message Formats" in PostgreSQL's
documentation): ``B`` begin, ``C`` commit, ``R`` relation (the columns of a table, sent
before its first change and again after it changes), ``I``/``U``/``D`` insert, update and
delete, ``T`` truncate, ``M`` a logical decoding message (``pg_logical_emit_message``),
``Y`` type and ``O`` origin.

Column values stay in PostgreSQL's text format, as bytes: converting them happens a column
at a time later (:mod:`._pgvalues`). An unchanged TOASTed value is
:data:`~._pgvalues.UNCHANGED`. This module does only what must happen per message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from trunkline.connectors.sources._pgvalues import UNCHANGED
from trunkline.errors import ConnectorError

__all__ = [
    "Begin",
    "Change",
    "Commit",
    "Decoder",
    "LogicalMessage",
    "MalformedMessage",
    "Relation",
    "Truncate",
    "format_lsn",
    "parse_lsn",
    "pg_time_ms",
]

#: PostgreSQL counts time from 2000-01-01; Unix from 1970-01-01 (microseconds apart).
PG_EPOCH_US = 946_684_800_000_000

Value = bytes | None
Row = list[Value]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")


class MalformedMessage(ConnectorError):
    """A replication message does not follow the pgoutput format; nothing can be skipped
    safely (a change would be lost), so the source stops."""

    retryable = False


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` as a number.

    Example:
        >>> parse_lsn("16/B374D848")
        97500059720
    """
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL writes it.

    Example:
        >>> format_lsn(97500059720)
        '16/B374D848'
    """
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def pg_time_ms(microseconds: int) -> int:
    """A PostgreSQL timestamp (microseconds since 2000-01-01) in Unix milliseconds."""
    return (microseconds + PG_EPOCH_US) // 1000


@dataclass(frozen=True, slots=True)
class Relation:
    """A published table as the stream describes it (``R``)."""

    oid: int
    schema: str
    name: str
    identity: str  # d(efault), n(othing), f(ull) or i(ndex)
    columns: tuple[str, ...]
    type_oids: tuple[int, ...]
    key_flags: tuple[bool, ...]


class Begin(NamedTuple):
    final_lsn: int
    commit_ms: int
    xid: int


class Commit(NamedTuple):
    commit_lsn: int
    end_lsn: int
    commit_ms: int


class Change(NamedTuple):
    """``op`` is ``c``, ``u`` or ``d``; ``old_kind`` says what ``old`` holds: ``K`` the
    key columns (the others None), ``O`` the whole old row, or empty for no old row."""

    op: str
    relation: int
    old_kind: str
    old: Row | None
    new: Row | None


class Truncate(NamedTuple):
    relations: tuple[int, ...]
    cascade: bool
    restart_identity: bool


class LogicalMessage(NamedTuple):
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = Begin | Commit | Change | Relation | Truncate | LogicalMessage | None


class Decoder:
    """Decodes pgoutput messages; remembers relations as they are announced."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}

    def decode(self, data: bytes, lsn: int) -> Message:
        """The message in ``data`` (one XLogData payload at ``lsn``); None for messages
        that carry nothing a change event needs (types, origins)."""
        try:
            return self._decode(data)
        except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
            raise MalformedMessage(
                f"malformed pgoutput message at LSN {format_lsn(lsn)}: {exc} "
                f"(first bytes: {data[:32].hex()})"
            ) from exc

    def _decode(self, data: bytes) -> Message:
        tag = data[0]
        if tag == 0x49:  # I
            (relation,) = _U32.unpack_from(data, 1)
            if data[5] != 0x4E:  # N
                raise ValueError(f"insert: expected 'N', found {chr(data[5])!r}")
            new, _ = _tuple(data, 6)
            return Change("c", relation, "", None, new)
        if tag == 0x55:  # U
            (relation,) = _U32.unpack_from(data, 1)
            kind = chr(data[5])
            old: Row | None = None
            pos = 6
            if kind in ("K", "O"):
                old, pos = _tuple(data, pos)
                if data[pos] != 0x4E:
                    raise ValueError(f"update: expected 'N', found {chr(data[pos])!r}")
                pos += 1
            elif kind == "N":
                kind = ""
            else:
                raise ValueError(f"update: expected 'K', 'O' or 'N', found {kind!r}")
            new, _ = _tuple(data, pos)
            return Change("u", relation, kind, old, new)
        if tag == 0x44:  # D
            (relation,) = _U32.unpack_from(data, 1)
            kind = chr(data[5])
            if kind not in ("K", "O"):
                raise ValueError(f"delete: expected 'K' or 'O', found {kind!r}")
            old, _ = _tuple(data, 6)
            return Change("d", relation, kind, old, None)
        if tag == 0x42:  # B
            final_lsn, ts, xid = _BEGIN.unpack_from(data, 1)
            return Begin(final_lsn, pg_time_ms(ts), xid)
        if tag == 0x43:  # C
            _, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(data, 1)
            return Commit(commit_lsn, end_lsn, pg_time_ms(ts))
        if tag == 0x52:  # R
            relation = self._relation(data)
            self.relations[relation.oid] = relation
            return relation
        if tag == 0x54:  # T
            (count,) = _I32.unpack_from(data, 1)
            options = data[5]
            oids = struct.unpack_from(f">{count}I", data, 6)
            return Truncate(tuple(oids), bool(options & 1), bool(options & 2))
        if tag == 0x4D:  # M
            flags = data[1]
            (msg_lsn,) = struct.unpack_from(">Q", data, 2)
            prefix, pos = _string(data, 10)
            (length,) = _I32.unpack_from(data, pos)
            content = data[pos + 4 : pos + 4 + length]
            return LogicalMessage(bool(flags & 1), msg_lsn, prefix, content)
        if tag in (0x59, 0x4F):  # Y (type), O (origin)
            return None
        raise ValueError(f"unknown message type {chr(tag)!r}")

    def _relation(self, data: bytes) -> Relation:
        (oid,) = _U32.unpack_from(data, 1)
        schema, pos = _string(data, 5)
        name, pos = _string(data, pos)
        identity = chr(data[pos])
        (count,) = _I16.unpack_from(data, pos + 1)
        pos += 3
        columns, types, keys = [], [], []
        for _ in range(count):
            flags = data[pos]
            column, pos = _string(data, pos + 1)
            type_oid, _typmod = struct.unpack_from(">Ii", data, pos)
            pos += 8
            columns.append(column)
            types.append(type_oid)
            keys.append(bool(flags & 1))
        return Relation(oid, schema, name, identity, tuple(columns), tuple(types), tuple(keys))


def _string(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(0, pos)
    return data[pos:end].decode(), end + 1


def _tuple(data: bytes, pos: int) -> tuple[Row, int]:
    """TupleData at ``pos``: the values (text bytes, None, or UNCHANGED) and the end."""
    (count,) = _I16.unpack_from(data, pos)
    pos += 2
    values: Row = []
    append = values.append
    unpack = _I32.unpack_from
    for _ in range(count):
        kind = data[pos]
        if kind == 0x74:  # t: text
            (length,) = unpack(data, pos + 1)
            pos += 5
            append(data[pos : pos + length])
            pos += length
        elif kind == 0x6E:  # n: null
            append(None)
            pos += 1
        elif kind == 0x75:  # u: unchanged TOASTed value
            append(UNCHANGED)
            pos += 1
        else:
            raise ValueError(f"unexpected column kind {chr(kind)!r} (binary mode is not used)")
    if len(data) < pos:
        raise ValueError("a value runs past the end of the message")
    return values, pos
