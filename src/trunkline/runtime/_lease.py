"""Leases: at most one process runs an exclusive connector (a CDC slot, a DuckDB file).

A lease is an exclusive ``flock`` on a file in the project's state directory. The kernel
releases it when the holder exits, however it exits (kill -9 included), so a standby
process takes over at once and a lease can never be held by a dead process. It covers the
processes of one machine, which is what the embedded hub spans; a deployment of several
machines on Kafka needs a lease in a shared store (a table in the PostgreSQL metadata
store, with an expiry and a fencing token) behind the same two methods.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

__all__ = ["FileLease"]


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

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

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
