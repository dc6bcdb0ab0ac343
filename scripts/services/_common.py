"""Shared plumbing for scripts/services/*: folders, state files, pids, ports, locks.

Standard library only: these scripts run with the system ``python3`` before any virtual
environment exists. Each service script has the same shape (``start|stop|status``), keeps
its files under ``<services dir>/<name>/`` and prints the address of the running service as
the last line of stdout, so callers (pytest fixtures, .ci/run, people) can take ``tail -1``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def services_dir() -> Path:
    """Where all services keep their files: ``$TRUNKLINE_SERVICES_DIR`` or ``build/services``."""
    override = os.environ.get("TRUNKLINE_SERVICES_DIR")
    return Path(override).resolve() if override else REPO_ROOT / "build" / "services"


def note(message: str) -> None:
    """Progress and diagnostics go to stderr; stdout is reserved for the service address."""
    print(message, file=sys.stderr, flush=True)


class ServiceError(Exception):
    """The service could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class OsUser:
    """The unprivileged account a server runs as when the script itself runs as root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str) -> OsUser:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ServiceError(
                f"running as root, but there is no {name!r} OS user to run the server as; "
                f"create one (useradd --system {name}) or run this script as a normal user"
            ) from None
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid)

    def popen_args(self) -> dict[str, Any]:
        """Keyword arguments that make subprocess run a command as this user (no sudo)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def can_traverse(self, path: Path) -> bool:
        """Whether this user can pass through ``path``, asked as that user (honours ACLs)."""
        # Not sys.executable: it may live under a folder that user cannot enter (pyenv in /root).
        test = shutil.which("test") or "/usr/bin/test"
        result = subprocess.run(
            [test, "-x", str(path)],
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            **self.popen_args(),
        )
        return result.returncode == 0


def running_as_root() -> bool:
    return os.geteuid() == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago; callers retry if the server loses the race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as dead).

    A server started by an earlier run of the script is not our child, so nobody here reaps
    it; in containers whose init does not reap either, a stopped server lingers as a zombie.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # The state letter follows the parenthesised command name, which may contain spaces.
        state = stat.read_text().rpartition(")")[2].split()[0]
        return state not in {"Z", "X"}
    return True


def process_command(pid: int) -> str:
    """The command line of ``pid`` ("" where /proc is not there to ask)."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def stop_pid(pid: int, *, timeout: float, first_signal: int = signal.SIGINT) -> bool:
    """Send ``first_signal``, wait up to ``timeout`` seconds, then SIGKILL.

    Returns:
        True if the process ended on the first signal, False if it had to be killed.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first_signal)
    if wait_until(lambda: not pid_alive(pid), timeout):
        return True
    note(f"pid {pid} did not stop within {timeout:.0f}s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10.0)
    return False


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or None if it is missing or unreadable (treated as stopped)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write the state file atomically, so a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so concurrent starts and stops take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, indented, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log written)"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) or "    (log is empty)"


def clean_env(drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without variables that would redirect a client tool."""
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}


def run(
    argv: Sequence[str],
    *,
    as_user: OsUser | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing its output; raise ServiceError if it fails."""
    extra = as_user.popen_args() if as_user else {}
    try:
        result = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            check=False,
            **extra,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"{argv[0]} did not finish within {timeout:.0f}s") from exc
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise ServiceError(
            f"{' '.join(argv)} failed with exit code {result.returncode}:\n    {output}"
        )
    return result


def main(commands: Mapping[str, Callable[..., int]], description: str) -> None:
    """Dispatch ``sys.argv[1]`` to one of ``commands`` and turn ServiceError into exit 1."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(commands))
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the service to come up or go down (default: 60)",
    )
    args = parser.parse_args()
    try:
        code = commands[args.command](timeout=args.timeout)
    except (ServiceError, OSError) as exc:
        note(f"error: {exc}")
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
