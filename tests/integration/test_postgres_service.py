"""scripts/services/postgres: the server it starts, and its start/status/stop cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service_support import POSTGRES_SCRIPT, require_service

pytestmark = pytest.mark.postgres
psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def script_dsn(postgres_service: str) -> str:
    if os.environ.get("TRUNKLINE_TEST_POSTGRES_DSN"):
        pytest.skip("TRUNKLINE_TEST_POSTGRES_DSN names a server the script did not start")
    return postgres_service


def _script(command: str, services_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if services_dir is not None:
        env["TRUNKLINE_SERVICES_DIR"] = str(services_dir)
    return subprocess.run(
        [sys.executable, str(POSTGRES_SCRIPT), command],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_status_reports_the_running_server(script_dsn: str) -> None:
    status = _script("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip().splitlines()[-1] == script_dsn
    assert script_dsn.startswith("postgresql://postgres@127.0.0.1:")
    assert script_dsn.endswith("/trunkline")


def test_server_settings(script_dsn: str) -> None:
    with psycopg.connect(script_dsn) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            return str(row[0])

        assert show("wal_level") == "logical"
        assert show("listen_addresses") == "127.0.0.1"
        assert show("max_replication_slots") == "20"
        assert show("max_wal_senders") == "20"
        assert show("fsync") == "on"
        assert show("server_encoding") == "UTF8"


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net shows them) with a TCP listener on ``port``."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_listens_on_loopback_only(script_dsn: str) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    port = int(script_dsn.rsplit(":", 1)[1].split("/")[0])
    assert _listening(port) == {"0100007F"}  # 127.0.0.1, and nothing on IPv6 or 0.0.0.0


@pytest.fixture
def own_services_dir() -> Iterator[Path]:
    # Not tmp_path: pytest's folders are private (0700), which the postgres OS user cannot
    # enter, so the script would keep the cluster in a /tmp folder of its own.
    folder = Path(tempfile.mkdtemp(prefix="trunkline-services-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        _script("stop", folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_start_status_stop_cycle(script_dsn: str, own_services_dir: Path) -> None:
    started = _script("start", own_services_dir)
    if started.returncode != 0:
        require_service("postgres", started.stderr)
    dsn = started.stdout.strip().splitlines()[-1]
    assert dsn != script_dsn, "a second server, on a port of its own"
    state = own_services_dir / "postgres" / "state.json"
    assert state.exists()

    again = _script("start", own_services_dir)
    assert again.returncode == 0 and again.stdout.strip() == dsn, "start when running: same DSN"
    assert _script("status", own_services_dir).stdout.strip() == dsn
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("trunkline",)

    assert _script("stop", own_services_dir).returncode == 0
    assert not state.exists()
    stopped = _script("status", own_services_dir)
    assert stopped.returncode == 1 and stopped.stdout == ""
    assert _script("stop", own_services_dir).returncode == 0, "stop is idempotent"

    restarted = _script("start", own_services_dir)
    assert restarted.returncode == 0, restarted.stderr
    with psycopg.connect(restarted.stdout.strip().splitlines()[-1]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
