"""Checkpoints: one small JSON document per connector, replaced atomically and durably."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

from trunkline.connectors.base import JSONValue
from trunkline.errors import ConnectorError

__all__ = ["FileCheckpointStore"]

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
        19
        >>> store.load("source-orders")
        {'done': ['a.csv']}
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ConnectorError(f"invalid checkpoint name {name!r}", retryable=False)
        return self.directory / f"{name}.json"

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
