"""A logical replication connection: PostgreSQL's streaming replication protocol over libpq.

psycopg 3 has no replication API, but its ``psycopg.pq`` module exposes libpq itself, and
libpq already speaks everything below the replication protocol: authentication, TLS, and
the CopyBoth sub-protocol that ``START_REPLICATION`` switches to (``PQgetCopyData`` /
``PQputCopyData``, the calls ``pg_recvlogical`` makes). This module adds the few messages
of the protocol on top (see "Streaming Replication Protocol" in PostgreSQL's
documentation):

* replication commands (``IDENTIFY_SYSTEM``, ``CREATE_REPLICATION_SLOT``) as simple queries
  on a ``replication=database`` connection;
* from the server, inside CopyData: ``w`` XLogData (a start LSN, the server's WAL end, its
  clock, then one pgoutput message) and ``k`` keepalives (the WAL end, the clock, and
  whether a reply is wanted now);
* to the server: ``r`` standby status updates, whose "flushed" LSN is what the slot
  confirms; PostgreSQL may then recycle the WAL before it.

Alternatives weighed: a raw socket would re-implement authentication (SCRAM) and TLS;
``pg_recvlogical`` as a subprocess writes messages without framing (binary pgoutput cannot
be split reliably) and confirms positions itself, as soon as it has written them, which is
before the hub has them.
"""

from __future__ import annotations

import select
import struct
import time
from collections.abc import Mapping

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from trunkline.connectors.sources._pgoutput import PG_EPOCH_US, format_lsn, parse_lsn
from trunkline.errors import ConnectorError, TargetUnavailable

__all__ = ["ReplicationConnection", "SlotMissing"]

_STATUS = struct.Struct(">cQQQqB")


class SlotMissing(ConnectorError):
    """The replication slot is gone (dropped, or invalidated after falling too far behind)."""

    retryable = False


class ReplicationConnection:
    """One ``replication=database`` connection; commands first, then one stream.

    Args:
        conninfo: A libpq connection string (URL or ``key=value``) of the database.
        settings: Session settings (``-c name=value``), such as output formats.
        application_name: Shown in ``pg_stat_replication``.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        settings: Mapping[str, str] = {},
        application_name: str = "trunkline",
        connect_timeout: float = 10.0,
    ) -> None:
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        full = make_conninfo(
            conninfo,
            replication="database",
            application_name=application_name,
            options=options,
            connect_timeout=str(max(1, round(connect_timeout))),
        )
        self._pg = pq.PGconn.connect(full.encode())
        if self._pg.status != pq.ConnStatus.OK:
            message = _text(self._pg.error_message)
            self._pg.finish()
            raise TargetUnavailable(f"cannot open a replication connection: {message}")
        self.streaming = False
        self.closed = False

    # -- commands ---------------------------------------------------------------------

    def command(self, text: str) -> list[tuple[str | None, ...]]:
        """Run a replication command (or SQL); its rows as text."""
        result = self._pg.exec_(text.encode())
        if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            raise self._error(result.error_message, doing=text.split("(")[0].strip())
        rows = []
        for row in range(result.ntuples):
            values = (result.get_value(row, col) for col in range(result.nfields))
            rows.append(tuple(None if v is None else bytes(v).decode() for v in values))
        return rows

    def create_slot(self, slot: str, *, temporary: bool, server_version: int) -> tuple[int, str]:
        """Create a pgoutput slot that exports a snapshot; (consistent LSN, snapshot name).

        The snapshot can be imported (``SET TRANSACTION SNAPSHOT``) until this connection
        runs another command or closes.
        """
        temp = " TEMPORARY" if temporary else ""
        if server_version >= 150000:
            text = f"CREATE_REPLICATION_SLOT {slot}{temp} LOGICAL pgoutput (SNAPSHOT 'export')"
        else:
            text = f"CREATE_REPLICATION_SLOT {slot}{temp} LOGICAL pgoutput EXPORT_SNAPSHOT"
        rows = self.command(text)
        _, point, snapshot, _ = rows[0]
        assert point is not None and snapshot is not None
        return parse_lsn(point), snapshot

    def start(self, slot: str, lsn: int, options: Mapping[str, str]) -> None:
        """``START_REPLICATION``: from here on the connection carries the stream."""
        quoted = ", ".join(
            f"{name} '{value.replace(chr(39), chr(39) * 2)}'" for name, value in options.items()
        )
        text = f"START_REPLICATION SLOT {slot} LOGICAL {format_lsn(lsn)} ({quoted})"
        self._pg.send_query(text.encode())
        result = self._pg.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            message = result.error_message if result is not None else self._pg.error_message
            raise self._error(message, doing="START_REPLICATION")
        self.streaming = True

    # -- the stream -------------------------------------------------------------------

    def get(self) -> tuple[int, memoryview]:
        """The next CopyData message if one is buffered: ``(size, data)``; size 0 when
        none is (then :meth:`wait`). The hot path of the stream: one libpq call.
        """
        return self._pg.get_copy_data(1)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for data from the server and buffer what came;
        whether something did."""
        ready, _, _ = select.select([self._pg.socket], [], [], max(0.0, timeout))
        try:
            self._pg.consume_input()
        except psycopg.Error as exc:
            raise TargetUnavailable(f"the replication stream broke: {exc}") from exc
        return bool(ready)

    def failed(self, size: int) -> ConnectorError:
        """The error behind a negative :meth:`get` size (the stream ended or broke)."""
        message = self._pg.error_message
        if size == -1:
            result = self._pg.get_result()
            message = (result.error_message if result is not None else b"") or message
        error = self._error(message or b"the server ended the stream", doing="streaming")
        if isinstance(error, SlotMissing):
            return error
        # A server shutting down, a terminated walsender, a network failure: try again.
        return TargetUnavailable(f"the replication stream ended: {_text(message)}")

    def send_status(self, flushed: int, *, reply: bool = False) -> None:
        """Tell the server what is safe: WAL before ``flushed`` may be recycled."""
        now = int(time.time() * 1_000_000) - PG_EPOCH_US
        message = _STATUS.pack(b"r", flushed, flushed, flushed, now, 1 if reply else 0)
        try:
            if self._pg.put_copy_data(message) != 1 or self._pg.flush() != 0:
                raise TargetUnavailable(
                    f"cannot send to the server: {_text(self._pg.error_message)}"
                )
        except psycopg.Error as exc:
            raise TargetUnavailable(f"cannot send to the server: {exc}") from exc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pg.finish()

    # -- errors -----------------------------------------------------------------------

    def _error(self, message: bytes | None, *, doing: str) -> ConnectorError:
        text = _text(message or self._pg.error_message)
        if "replication slot" in text and (
            "does not exist" in text or "can no longer get changes" in text
        ):
            return SlotMissing(text)
        if self._pg.status != pq.ConnStatus.OK:
            return TargetUnavailable(f"{doing}: {text}")
        return ConnectorError(f"{doing}: {text}", retryable=False)


def _text(message: bytes | None) -> str:
    return (message or b"").decode("utf-8", "replace").strip() or "no message from the server"
