"""Status files: what each ``trunkline run`` process is doing, for ``trunkline status``.

Every running process rewrites ``<state>/status/<host>-<pid>.json`` about once a second
(atomically: readers see a whole file). ``trunkline status`` reads them all; a file whose
process is gone, or that has not been rewritten for :data:`STALE_AFTER` seconds, describes a
process that stopped, and its tasks are shown as such with their last figures and error.
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

__all__ = ["STALE_AFTER", "ProcessStatus", "StatusBoard", "read_status"]

#: A status file not rewritten for this long belongs to a process that is not running.
STALE_AFTER = 10.0


class StatusBoard:
    """Writes this process's status file."""

    def __init__(self, directory: Path, *, run_id: str) -> None:
        self.directory = directory
        self.run_id = run_id
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self.path = directory / f"{self.host}-{self.pid}.json"

    def publish(self, tasks: list[dict[str, Any]], *, state: str = "running", **extra: Any) -> None:
        document = {
            "host": self.host,
            "pid": self.pid,
            "run_id": self.run_id,
            "state": state,
            "started": self.started,
            "updated": time.time(),
            "tasks": tasks,
            **extra,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(document, default=str))
        tmp.replace(self.path)


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


def read_status(directory: Path) -> list[ProcessStatus]:
    """Every process's status, newest first."""
    if not directory.is_dir():
        return []
    host = socket.gethostname()
    found = []
    for path in directory.glob("*.json"):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        fresh = time.time() - float(document.get("updated", 0)) < STALE_AFTER
        alive = document.get("state") == "running" and fresh
        if alive and document.get("host") == host:
            alive = _pid_alive(int(document.get("pid", 0)))
        found.append(ProcessStatus(document, alive))
    found.sort(key=lambda p: -float(p.document.get("updated", 0)))
    return found
