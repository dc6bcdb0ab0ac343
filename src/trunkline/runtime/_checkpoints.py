"""Checkpoints: one small JSON document per connector, replaced atomically and durably.

Where they live follows the lease (see :mod:`trunkline.runtime._lease`): in files of the
project's state directory (:class:`FileCheckpointStore`) when the metadata store is SQLite
(one machine), in the metadata store (:class:`StoreCheckpointStore`) when it is PostgreSQL,
so that a process on another machine that takes over a source continues from its last
checkpoint. There a save made under a lease carries the lease's fencing token
(:meth:`StoreCheckpointStore.fenced`) and is refused with
:class:`~trunkline.errors.LeaseLost` once another process took the lease over.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from trunkline.connectors.base import CheckpointStore, JSONValue
from trunkline.errors import ConnectorError, LeaseLost
from trunkline.meta import MetaStore
from trunkline.meta._schema import runtime_checkpoints, runtime_leases

if TYPE_CHECKING:
    from trunkline.runtime._lease import Lease

__all__ = ["FileCheckpointStore", "StoreCheckpointStore"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class FileCheckpointStore:
    """Checkpoints as files in a folder of the project's state directory.

    ``save`` writes a temporary file, fsyncs it, renames it over the old one and fsyncs the
    folder: after a crash the file holds the old or the new document, whole. Several
    processes may share the folder; each connector is written by its one owner (a lease).

    Example:
        >>> import tempfile
        >>> store = FileCheckpointStore(Path(tempfile.mkdtemp()))
        >>> store.save("source-orders", {"done": ["a.csv"]})
        18
        >>> store.load("source-orders")
        {'done': ['a.csv']}
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def fenced(self, lease: Lease | None) -> CheckpointStore:
        """This store: a file lease cannot be lost while its holder lives (see ``_lease``)."""
        return self

    def _path(self, name: str) -> Path:
        return self.directory / f"{_checked(name)}.json"

    def load(self, name: str) -> JSONValue | None:
        path = self._path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConnectorError(
                f"checkpoint {path} is not valid JSON ({exc}); move it away to start over",
                retryable=False,
            ) from exc

    def save(self, name: str, state: JSONValue) -> int:
        path = self._path(name)
        data = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return len(data)


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ConnectorError(
            f"invalid checkpoint name {name!r}: expected 1-200 letters, digits, '_', '.' or '-'",
            retryable=False,
        )
    return name


class StoreCheckpointStore:
    """Checkpoints as rows of the metadata store's ``runtime_checkpoints`` table.

    A save replaces the row in one transaction (the old document or the new one, whole) and
    counts its ``version`` up. ``legacy`` is the folder of file checkpoints: a connector that
    has a file there but no row here was checkpointed before the project's metadata moved to
    a shared store, and :meth:`load` stops it with a message instead of letting it start over
    from nothing (a full resync, or "slot exists but no checkpoint").

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> meta = MetaStore.open(f"sqlite:///{folder}/meta.db")
        >>> store = StoreCheckpointStore(meta, folder / "checkpoints")
        >>> store.save("source-orders", {"done": ["a.csv"]})
        18
        >>> store.load("source-orders"), store.version("source-orders")
        ({'done': ['a.csv']}, 1)
        >>> meta.close()
    """

    def __init__(self, meta: MetaStore, legacy: Path | None = None) -> None:
        self.meta = meta
        self.legacy = legacy

    def fenced(self, lease: Lease | None) -> CheckpointStore:
        """A view whose saves carry ``lease``'s fencing token (this store if unfenced)."""
        if lease is None or lease.heartbeat is None:
            return self  # a lease that cannot expire while its holder lives needs no fence
        return _Fenced(self, lease)

    def load(self, name: str) -> JSONValue | None:
        table = runtime_checkpoints
        with self.meta.transaction() as conn:
            text = conn.execute(
                sa.select(table.c.document).where(table.c.name == _checked(name))
            ).scalar_one_or_none()
        if text is None:
            self._refuse_legacy(name)
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConnectorError(
                f"checkpoint {name!r} in the metadata store {self.meta.url} is not valid JSON "
                f"({exc}); delete its row of runtime_checkpoints to start over",
                retryable=False,
            ) from exc

    def version(self, name: str) -> int:
        """How many times ``name`` was saved (0: never)."""
        table = runtime_checkpoints
        with self.meta.transaction() as conn:
            found = conn.execute(
                sa.select(table.c.version).where(table.c.name == _checked(name))
            ).scalar_one_or_none()
        return int(found or 0)

    def save(self, name: str, state: JSONValue, *, fence: Lease | None = None) -> int:
        """Replace the document; with ``fence``, only while that lease is still this
        holder's (same owner and fencing token), else :class:`LeaseLost`."""
        data = json.dumps(state, separators=(",", ":"), sort_keys=True)
        table = runtime_checkpoints
        token = None if fence is None else fence.token
        owner = None if fence is None else fence.holder
        with self.meta.transaction(write=True) as conn:
            if fence is not None:
                self._check_fence(conn, name, fence)
            row = conn.execute(
                sa.select(table.c.version, table.c.token)
                .where(table.c.name == _checked(name))
                .with_for_update()
            ).first()
            values = {
                "document": data,
                "token": token,
                "owner": owner,
                "updated_at": datetime.now(UTC),
            }
            if row is None:
                conn.execute(sa.insert(table).values(name=name, version=1, **values))
            else:
                if token is not None and row.token is not None and row.token > token:
                    raise LeaseLost(
                        f"checkpoint {name!r} refused: it was saved under fencing token "
                        f"{row.token}, newer than this process's {token}"
                    )
                conn.execute(
                    sa.update(table)
                    .where(table.c.name == name)
                    .values(version=table.c.version + 1, **values)
                )
        return len(data.encode())

    def _check_fence(self, conn: sa.Connection, name: str, fence: Lease) -> None:
        leases = runtime_leases
        # Locks the lease row: a takeover waits until this save is in, or this save sees it.
        row = conn.execute(
            sa.select(leases.c.owner, leases.c.token)
            .where(leases.c.name == fence.name)
            .with_for_update()
        ).first()
        held = None if row is None else (row.owner, row.token)
        if fence.token is None or held != (fence.holder, fence.token):
            now = "nobody" if row is None else f"{row.owner!r} with fencing token {row.token}"
            raise LeaseLost(
                f"checkpoint {name!r} refused: lease {fence.name!r} is held by {now}; this "
                f"process ({fence.holder!r}) held it with token {fence.token}"
            )

    def _refuse_legacy(self, name: str) -> None:
        if self.legacy is None:
            return
        path = self.legacy / f"{name}.json"
        if path.exists():
            raise ConnectorError(
                f"checkpoint {name!r}: found the file {path}, written while the project's "
                f"metadata store was SQLite, but none in the metadata store {self.meta.url}, "
                "where checkpoints live now that it is shared. trunkline does not start over "
                "on its own, as that would read the source again from the beginning: to keep "
                "the old progress, run from the previous metadata store (or on this machine "
                "with meta: sqlite) until caught up; to start over, remove the file",
                retryable=False,
            )


class _Fenced:
    """A :class:`StoreCheckpointStore` whose saves check one lease's fencing token."""

    def __init__(self, store: StoreCheckpointStore, lease: Lease) -> None:
        self.store = store
        self.lease = lease

    def load(self, name: str) -> JSONValue | None:
        return self.store.load(name)

    def save(self, name: str, state: JSONValue) -> int:
        return self.store.save(name, state, fence=self.lease)
