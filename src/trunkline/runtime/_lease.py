"""Leases: at most one process runs an exclusive task (a CDC slot, a DuckDB file, a flow).

Two kinds behind one interface (:class:`Lease`), chosen by where the project keeps its
metadata, because that is what says how far the project's processes are spread:

- :class:`FileLease` (metadata in SQLite: one machine). An exclusive ``flock`` on a file in
  the project's state directory. The kernel releases it when the holder exits, however it
  exits (kill -9 included), so a standby takes over at once, and a live process can never
  lose it: no expiry, no heartbeat, no fencing needed. A lease in the SQLite file would add
  a heartbeat write per task every few seconds to a database other processes wait on, and
  make every takeover wait for an expiry, for nothing the flock does not already give.
- :class:`StoreLease` (metadata in PostgreSQL: processes on several machines, typically on
  Kafka). A row per task in the shared store with its owner, an expiry by the database's
  clock (so machines' clocks do not matter) that heartbeats push forward, and a fencing
  token that grows with every acquisition. Acquiring is one conditional INSERT or UPDATE
  (free, or expired) in one transaction; renewing is an UPDATE that matches the owner and
  token. A holder that cannot renew stops its task before the expiry by its own clock
  (:meth:`Lease.valid`), and a write that checks the token (checkpoint saves, see
  :mod:`trunkline.runtime._checkpoints`) is refused once another holder took over, so a
  holder that was paused past its expiry cannot overwrite its successor's progress.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from trunkline.errors import ConfigError
from trunkline.meta import MetaStore
from trunkline.meta._schema import SHORT_TEXT_LENGTH, runtime_leases

__all__ = ["FileLease", "Lease", "StoreLease", "database_now_ms"]


class Lease(Protocol):
    """The right to run one exclusive task; the supervisor's view of it.

    Lifecycle: a standby calls :meth:`acquire` until it returns True; the holder calls
    :meth:`renew` every :attr:`heartbeat` seconds (when that is not None) and stops the task
    as soon as :meth:`renew` returns False or :meth:`valid` turns False; :meth:`release`
    ends the holding (a standby may take it at once).
    """

    #: The task's lease name (``source-orders``); also names its checkpoint.
    name: str
    #: Seconds between renewals; None when the lease cannot expire while its holder lives.
    heartbeat: float | None

    @property
    def held(self) -> bool:
        """Whether this object holds the lease (as far as it knows)."""
        ...

    @property
    def token(self) -> int | None:
        """The fencing token of the current holding; None if unheld or not fenced."""
        ...

    @property
    def holder(self) -> str:
        """Who this object acquires the lease for (the process's run id)."""
        ...

    def acquire(self) -> bool:
        """Take the lease if it is free (or expired); True if this object holds it now."""
        ...

    def renew(self) -> bool:
        """Push the expiry forward; False if the lease was lost (taken over)."""
        ...

    def valid(self) -> bool:
        """Whether the holding is still good by this process's clock (no database call)."""
        ...

    def release(self) -> None:
        """Give the lease up; does nothing if it is not held."""
        ...

    def owner(self) -> dict[str, Any] | None:
        """Who holds (or last held) the lease, for ``trunkline status``."""
        ...


class FileLease:
    """An exclusive, non-blocking lock file; the holder's pid and host are written into it.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "source-orders.lock"
        >>> first, second = FileLease(path), FileLease(path)
        >>> first.acquire(), second.acquire()
        (True, False)
        >>> first.release(); second.acquire()
        True
    """

    heartbeat: float | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.stem
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def token(self) -> int | None:
        return None  # the kernel ends a holding with its process: nothing to fence

    @property
    def holder(self) -> str:
        return f"{socket.gethostname()}-{os.getpid()}"

    def renew(self) -> bool:
        return self.held

    def valid(self) -> bool:
        return self.held

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; True if this object holds it now."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner, 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the lock

    def owner(self) -> dict[str, object] | None:
        """Who holds (or last held) the lease, as written into the file."""
        try:
            data = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


#: The share of a lease's time-to-live its holder may use before it stops its task: the rest
#: covers a renewal still in flight and clocks of two machines running at slightly different
#: rates (a standby takes over by the database's clock only after the whole time-to-live).
SAFE_SHARE = 0.8

# The database's clock in ms since the epoch: one clock for every machine that shares the
# store, so their own clocks (and how far apart they are) do not decide who holds a lease.
_NOW_MS = {
    "postgresql": lambda: sa.cast(
        sa.func.floor(sa.extract("epoch", sa.func.clock_timestamp()) * 1000), sa.BigInteger
    ),
    "sqlite": lambda: sa.cast((sa.func.julianday("now") - 2440587.5) * 86_400_000.0, sa.BigInteger),
}
# INSERT ... ON CONFLICT DO NOTHING: spelled alike, but each dialect has its own construct.
_INSERTS: dict[str, Callable[[sa.Table], Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


def database_now_ms(conn: sa.Connection) -> int:
    """The store's clock, in milliseconds since the epoch."""
    return int(conn.execute(sa.select(_NOW_MS[conn.dialect.name]())).scalar_one())


class StoreLease:
    """A lease kept in the metadata store, with an expiry and a fencing token.

    Args:
        meta: the project's metadata store (PostgreSQL when processes run on several
            machines; SQLite works too, for one machine).
        name: the lease's name, ``<kind>-<task>``.
        holder: who acquires it: the process's run id (host, pid and a random part).
        ttl: seconds a holding lasts without a renewal; a standby takes over a dead
            holder's task after at most this long. Renewals come every ``ttl / 3``.

    Example:
        >>> import tempfile
        >>> store = MetaStore.open(f"sqlite:///{tempfile.mkdtemp()}/meta.db")
        >>> first = StoreLease(store, "source-orders", "host-a", ttl=30)
        >>> second = StoreLease(store, "source-orders", "host-b", ttl=30)
        >>> first.acquire(), second.acquire(), first.token
        (True, False, 1)
        >>> first.release(); second.acquire(), second.token
        (True, 2)
        >>> store.close()
    """

    def __init__(self, meta: MetaStore, name: str, holder: str, *, ttl: float = 10.0) -> None:
        if not 0 < ttl <= 3600:
            raise ConfigError(f"lease time-to-live: expected 0 < ttl <= 3600 seconds, found {ttl}")
        for what, value in (("name", name), ("holder", holder)):
            if not 0 < len(value) <= SHORT_TEXT_LENGTH:
                raise ConfigError(
                    f"lease {what} {value[:50]!r}: expected 1-{SHORT_TEXT_LENGTH} characters, "
                    f"found {len(value)}"
                )
        self.meta = meta
        self.name = name
        self.ttl = ttl
        self.heartbeat: float | None = ttl / 3
        self._holder = holder
        self._token: int | None = None
        self._valid_until = 0.0

    @property
    def held(self) -> bool:
        return self._token is not None

    @property
    def token(self) -> int | None:
        return self._token

    @property
    def holder(self) -> str:
        return self._holder

    def valid(self) -> bool:
        return self._token is not None and time.monotonic() < self._valid_until

    def acquire(self) -> bool:
        """Take the lease if nobody holds it or its holding expired; True if held now.

        Raises:
            MetaError: the store cannot be reached (nothing changed).
        """
        if self._token is not None and self.renew():
            return True
        started = time.monotonic()
        table = runtime_leases
        with self.meta.transaction(write=True) as conn:
            now = database_now_ms(conn)
            values = {
                "owner": self._holder,
                "expires_ms": now + int(self.ttl * 1000),
                "acquired_at": datetime.now(UTC),
            }
            # Taking over an expired holding: the token grows, so the old holder's token
            # no longer matches anything it may still try to write.
            token = conn.execute(
                sa.update(table)
                .where(table.c.name == self.name, table.c.expires_ms <= now)
                .values(token=table.c.token + 1, **values)
                .returning(table.c.token)
            ).scalar_one_or_none()
            if token is None:
                insert = _INSERTS[conn.dialect.name](table).values(
                    name=self.name, token=1, **values
                )
                # (psycopg reports no rowcount for ON CONFLICT DO NOTHING; RETURNING tells.)
                token = conn.execute(
                    insert.on_conflict_do_nothing(index_elements=["name"]).returning(table.c.token)
                ).scalar_one_or_none()
                if token is None:
                    return False  # held by another process, and not expired
        self._token = int(token)
        self._valid_until = started + self.ttl * SAFE_SHARE
        return True

    def renew(self) -> bool:
        """Push the expiry forward; False (and unheld) if another process took it over.

        Raises:
            MetaError: the store cannot be reached; the holding stays valid until
                :meth:`valid` says otherwise, so the caller tries again until then.
        """
        if self._token is None:
            return False
        started = time.monotonic()
        table = runtime_leases
        with self.meta.transaction(write=True) as conn:
            now = database_now_ms(conn)
            renewed = conn.execute(
                sa.update(table)
                .where(
                    table.c.name == self.name,
                    table.c.owner == self._holder,
                    table.c.token == self._token,
                )
                .values(expires_ms=now + int(self.ttl * 1000))
            )
        if renewed.rowcount != 1:
            self._token = None
            self._valid_until = 0.0
            return False
        self._valid_until = started + self.ttl * SAFE_SHARE
        return True

    def release(self) -> None:
        """End the holding at once, so that a standby need not wait for the expiry."""
        token, self._token = self._token, None
        self._valid_until = 0.0
        if token is None:
            return
        table = runtime_leases
        with self.meta.transaction(write=True) as conn:
            conn.execute(
                sa.update(table)
                .where(
                    table.c.name == self.name,
                    table.c.owner == self._holder,
                    table.c.token == token,
                )
                .values(expires_ms=0)
            )

    def owner(self) -> dict[str, Any] | None:
        """The holder, its fencing token and the seconds until its holding expires."""
        table = runtime_leases
        with self.meta.transaction() as conn:
            row = conn.execute(sa.select(table).where(table.c.name == self.name)).first()
            now = database_now_ms(conn)
        if row is None:
            return None
        left = max(0.0, (row.expires_ms - now) / 1000)
        return {"owner": row.owner, "token": row.token, "expires_in": round(left, 1)}
