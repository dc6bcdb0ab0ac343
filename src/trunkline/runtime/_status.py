"""Status: what each ``trunkline run`` process is doing, for ``trunkline status``.

Every running process rewrites ``<state>/status/<host>-<pid>.json`` about once a second
(atomically: readers see a whole file). ``trunkline status`` reads them all; a file whose
process is gone, or that has not been rewritten for :data:`STALE_AFTER` seconds, describes a
process that stopped, and its tasks are shown as such with their last figures and error.

When the metadata store is shared (PostgreSQL: processes on several machines), each process
also publishes the same document as a row of the store (:class:`StoreStatusBoard`), with a
heartbeat by the database's clock, and deletes the row when it stops cleanly. A row whose
heartbeat is older than a few status intervals belongs to a process that died (killed,
machine lost): its tasks are shown as gone, as for a stale file. ``trunkline status`` on any
machine then reads every process from the store, and this machine's stopped ones (whose rows
are deleted) from its files (:func:`read_status` with ``meta``).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from trunkline.meta import MetaStore
from trunkline.meta._schema import runtime_processes
from trunkline.runtime._lease import database_now_ms

__all__ = [
    "STALE_AFTER",
    "STALE_INTERVALS",
    "ProcessStatus",
    "StatusBoard",
    "StoreStatusBoard",
    "read_status",
]

#: A status file not rewritten for this long belongs to a process that is not running.
STALE_AFTER = 10.0
#: A row of the store not replaced for this many status intervals belongs to a process that
#: is not running ...
STALE_INTERVALS = 5
#: ... and not for at least this many seconds, so that with a short interval one slow commit
#: does not make a live process look gone.
MIN_STALE_AFTER = 2.0
#: Status rows and files of processes gone this long are deleted when another process
#: starts, so that crashed processes do not pile up.
FORGET_AFTER = 86_400.0


class StatusBoard:
    """Builds this process's status document and writes its status file."""

    def __init__(self, directory: Path, *, run_id: str) -> None:
        self.directory = directory
        self.run_id = run_id
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self.path = directory / f"{self.host}-{self.pid}.json"

    def document(
        self, tasks: list[dict[str, Any]], *, state: str = "running", **extra: Any
    ) -> dict[str, Any]:
        """The status document: this process, its state and its tasks' figures."""
        return {
            "host": self.host,
            "pid": self.pid,
            "run_id": self.run_id,
            "state": state,
            "started": self.started,
            "updated": time.time(),
            "tasks": tasks,
            **extra,
        }

    def write(self, document: dict[str, Any]) -> None:
        """Replace the status file with ``document`` (readers see the old or the new one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(document, default=str))
        tmp.replace(self.path)

    def publish(self, tasks: list[dict[str, Any]], *, state: str = "running", **extra: Any) -> None:
        self.write(self.document(tasks, state=state, **extra))

    def forget_old(self, older_than: float = FORGET_AFTER) -> int:
        """Delete the status files of this machine's processes that are no longer running
        and were last updated more than ``older_than`` seconds ago; returns how many.

        A process that died still shows as gone, with its last figures and error, for a
        day; after that its file would only pile up.
        """
        forgotten = 0
        for status in _read_files(self.directory, self.host):
            document = status.document
            old = time.time() - float(document.get("updated", 0)) > older_than
            if status.alive or not old or document.get("host") != self.host:
                continue
            path = self.directory / f"{document.get('host')}-{document.get('pid')}.json"
            if path != self.path:
                path.unlink(missing_ok=True)
                forgotten += 1
        return forgotten


class StoreStatusBoard:
    """This process's row of ``runtime_processes`` in a shared metadata store.

    Lifecycle: :meth:`publish` every status interval (the first one inserts the row),
    :meth:`remove` when the process stops cleanly. A process that dies leaves its row,
    which readers take for gone once its heartbeat is older than ``stale_after``.

    Args:
        meta: the project's metadata store.
        run_id: the process's run id (the row's key; also its leases' holder).
        interval: seconds between publications (the runner's status interval).

    Example:
        >>> import tempfile
        >>> store = MetaStore.open(f"sqlite:///{tempfile.mkdtemp()}/meta.db")
        >>> board = StoreStatusBoard(store, run_id="host-a-1-ab", interval=1.0)
        >>> board.publish({"host": "a", "pid": 1, "state": "running", "tasks": []})
        >>> [p.alive for p in read_status(Path(tempfile.mkdtemp()), meta=store)]
        [True]
        >>> board.remove(); read_status(Path(tempfile.mkdtemp()), meta=store)
        []
        >>> store.close()
    """

    def __init__(self, meta: MetaStore, *, run_id: str, interval: float) -> None:
        self.meta = meta
        self.run_id = run_id
        self.stale_after = max(STALE_INTERVALS * interval, MIN_STALE_AFTER)
        self._inserted = False

    def publish(self, document: dict[str, Any]) -> None:
        """Replace the row with ``document`` and a fresh heartbeat.

        Raises:
            MetaError: the store cannot be reached (the row keeps its last heartbeat).
        """
        table = runtime_processes
        values = {
            "host": str(document.get("host", "")),
            "pid": int(document.get("pid", 0)),
            "document": json.dumps(document, default=str),
            "stale_after_ms": int(self.stale_after * 1000),
        }
        with self.meta.transaction(write=True) as conn:
            now = database_now_ms(conn)
            replaced = conn.execute(
                sa.update(table)
                .where(table.c.run_id == self.run_id)
                .values(heartbeat_ms=now, **values)
            )
            if replaced.rowcount != 1:
                conn.execute(
                    sa.insert(table).values(run_id=self.run_id, heartbeat_ms=now, **values)
                )
            if not self._inserted:
                conn.execute(
                    sa.delete(table).where(table.c.heartbeat_ms < now - int(FORGET_AFTER * 1000))
                )
        self._inserted = True

    def remove(self) -> None:
        """Delete the row: the process stopped cleanly, it is no longer one of the project's."""
        table = runtime_processes
        with self.meta.transaction(write=True) as conn:
            conn.execute(sa.delete(table).where(table.c.run_id == self.run_id))


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """One process's last status, and whether it still runs."""

    document: dict[str, Any]
    alive: bool

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return list(self.document.get("tasks", []))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(document: dict[str, Any], fresh: bool, host: str) -> bool:
    alive = document.get("state") == "running" and fresh
    if alive and document.get("host") == host:
        # On this machine a dead process is known at once, before its status grows stale.
        alive = _pid_alive(int(document.get("pid", 0)))
    return alive


def _read_files(directory: Path, host: str) -> list[ProcessStatus]:
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("*.json"):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        fresh = time.time() - float(document.get("updated", 0)) < STALE_AFTER
        found.append(ProcessStatus(document, _alive(document, fresh, host)))
    return found


def _read_store(meta: MetaStore, host: str) -> list[ProcessStatus]:
    table = runtime_processes
    with meta.transaction() as conn:
        rows = conn.execute(sa.select(table)).all()
        now = database_now_ms(conn)
    found = []
    for row in rows:
        try:
            document = dict(json.loads(row.document))
        except (TypeError, ValueError):
            continue
        age = max(0, now - row.heartbeat_ms)
        # The row's own columns are what the store vouches for; the heartbeat is the
        # database's clock, comparable across machines where ``updated`` is not.
        document.update(host=row.host, pid=row.pid, run_id=row.run_id, heartbeat_age=age / 1000)
        found.append(ProcessStatus(document, _alive(document, age <= row.stale_after_ms, host)))
    return found


def read_status(directory: Path, meta: MetaStore | None = None) -> list[ProcessStatus]:
    """Every process's status, newest first.

    Args:
        directory: this machine's status files.
        meta: a shared metadata store: every machine's processes are read from it; the files
            add only this machine's processes the store has no row of (stopped ones).

    Raises:
        MetaError: ``meta`` cannot be read.
    """
    host = socket.gethostname()
    found = _read_files(directory, host)
    if meta is not None:
        shared = _read_store(meta, host)
        published = {p.document.get("run_id") for p in shared}
        found = [*shared, *(p for p in found if p.document.get("run_id") not in published)]
    found.sort(key=lambda p: -float(p.document.get("updated", 0)))
    return found
