"""Helpers for runtime tests: projects in temp folders, ``trunkline run`` as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trunkline.hub.embedded import EmbeddedHub

CHILD = Path(__file__).with_name("_runtime_child.py")


def write_project(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "trunkline.yaml").write_text(textwrap.dedent(text))
    return root


def start_run(root: Path, *args: str, child: bool = False) -> subprocess.Popen[bytes]:
    """``trunkline -p root run`` (or the test child that adds test plugins) as a process."""
    log = open(root / f"run-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - closed by the OS
    command = [str(CHILD)] if child else ["-m", "trunkline"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, *command, "-p", str(root), "run", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    os.kill(proc.pid, sig)
    return proc.wait(timeout)


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, status: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    shown = ""
    if status is not None:
        newest = max(
            (status / ".trunkline" / "status").glob("*.json"),
            key=lambda p: p.stat().st_mtime,
            default=None,
        )
        shown = "\n" + newest.read_text() if newest is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{shown}")


def group_lag(root: Path, group: str) -> int:
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        described = hub.describe_group(group)
        return described.lag if described.offsets else -1


def committed_total(root: Path, group: str) -> int:
    """Records a group has committed, over all partitions of the topics it committed in."""
    with EmbeddedHub(root / ".trunkline" / "hub") as hub:
        described = hub.describe_group(group)
        return sum(o.committed or 0 for o in described.offsets)


def checkpoint(root: Path, source: str) -> dict[str, Any]:
    path = root / ".trunkline" / "checkpoints" / f"source-{source}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def files_done(root: Path, source: str) -> set[str]:
    state = checkpoint(root, source).get("state") or {}
    if state.get("current"):
        return set()
    return set(state.get("done", {}))


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MB; ``RssAnon`` leaves out mapped files (page cache
    of the hub's segments, which the kernel reclaims at will)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_log(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(root.glob("run-*.log")))


class Files:
    """Writes CSV files into the source folder, each whole (written aside, then renamed)."""

    def __init__(self, folder: Path, rows_per_file: int = 300, keys: int = 400) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.rows_per_file = rows_per_file
        self.keys = keys
        self.seq = 0
        self.count = 0
        self.names: list[str] = []

    def write(self) -> None:
        lines = ["id,seq,payload"]
        for _ in range(self.rows_per_file):
            lines.append(f"{self.seq % self.keys},{self.seq},p{self.seq * 7919 % 100_003}")
            self.seq += 1
        name = f"{self.count:05d}.csv"
        self.count += 1
        temp = self.folder / f".{name}.tmp"
        temp.write_text("\n".join(lines) + "\n")
        past = time.time() - 5
        os.utime(temp, (past, past))
        temp.rename(self.folder / name)
        self.names.append(name)


def tasks_of(root: Path, pid: int) -> dict[str, dict[str, Any]]:
    """The tasks in the status file of the `trunkline run` process ``pid``, by name."""
    path = next((root / ".trunkline" / "status").glob(f"*-{pid}.json"), None)
    if path is None:
        return {}
    try:
        return {t["name"]: t for t in json.loads(path.read_text())["tasks"]}
    except (ValueError, KeyError):
        return {}
