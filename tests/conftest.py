"""Fixtures shared by every test folder: real services started as local processes.

A service test that cannot get its service fails in CI (``CI=true``) and is skipped locally,
with the reason in the ``-ra`` summary; see :func:`require_service`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from service_support import POSTGRES_SCRIPT, last_line, require_service, run_service_script

#: The Kafka broker fixture lives in its own plugin module (tests/kafka_fixtures.py).
pytest_plugins = ["kafka_fixtures"]


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
        yield last_line(status.stdout)
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
        yield last_line(started.stdout)
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


@pytest.fixture
def cdc_db(postgres_db: str) -> Iterator[str]:
    """:func:`postgres_db` for tests that create replication slots: the slots of the database
    (which would keep it from being dropped) are dropped first."""
    yield postgres_db
    import psycopg

    name = make_url(postgres_db).database
    with psycopg.connect(postgres_db, autocommit=True, connect_timeout=10) as conn:
        for _ in range(50):
            rows = conn.execute(
                "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                [name],
            ).fetchall()
            if not rows:
                break
            for slot, pid in rows:
                if pid is not None:
                    conn.execute("SELECT pg_terminate_backend(%s)", [pid])
                    continue
                # Active again, or dropped meanwhile: the next round sees.
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
            time.sleep(0.1)
