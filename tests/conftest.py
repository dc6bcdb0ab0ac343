"""Fixtures shared by every test folder: real services started as local processes.

A service test that cannot get its service fails in CI (``CI=true``) and is skipped locally,
with the reason in the ``-ra`` summary; see :func:`require_service`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SCRIPT = REPO_ROOT / "scripts" / "services" / "postgres"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_service(name: str, reason: str) -> NoReturn:
    """Give up on a test whose service is missing: a failure in CI, a skip elsewhere.

    Locally a missing PostgreSQL should not block someone working on the planner; in CI the
    same gap would silently hide every test that needs it.
    """
    message = f"{name} is not available: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(message)


def run_service_script(
    script: Path, command: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/services/<name> <command>``; its last stdout line is the address."""
    return subprocess.run(
        [sys.executable, str(script), command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else ""


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[str]:
    """The DSN of a PostgreSQL server for this test session (``postgresql://...``).

    ``TRUNKLINE_TEST_POSTGRES_DSN`` names an existing server; otherwise
    ``scripts/services/postgres`` provides one, and the session stops it at the end only if
    the session started it (a server someone started by hand keeps running).
    """
    configured = os.environ.get("TRUNKLINE_TEST_POSTGRES_DSN")
    if configured:
        yield configured
        return
    status = run_service_script(POSTGRES_SCRIPT, "status")
    if status.returncode == 0:
        yield _last_line(status.stdout)
        return
    try:
        started = run_service_script(POSTGRES_SCRIPT, "start")
    except subprocess.TimeoutExpired as exc:
        require_service("postgres", f"{POSTGRES_SCRIPT} start timed out after {exc.timeout}s")
    if started.returncode != 0:
        require_service(
            "postgres",
            f"{POSTGRES_SCRIPT} start failed (exit {started.returncode}):\n{started.stderr}",
        )
    try:
        yield _last_line(started.stdout)
    finally:
        run_service_script(POSTGRES_SCRIPT, "stop")


@pytest.fixture
def postgres_db(postgres_service: str) -> Iterator[str]:
    """A fresh, empty database on :func:`postgres_service` for one test; dropped afterwards.

    Returns its DSN (``postgresql://...``), with the password of the server DSN if it had one.
    """
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        require_service("postgres", "psycopg is not installed (pip install -e '.[test]')")
    server = make_url(postgres_service).set(drivername="postgresql")
    admin_dsn = server.render_as_string(hide_password=False)
    name = f"trunkline_test_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        require_service("postgres", f"cannot create a test database: {exc}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            # FORCE: a test that failed half-way may leave connections open.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
