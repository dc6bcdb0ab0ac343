"""Pytest plugin: an Apache Kafka broker for the test session (``-p kafka_fixtures``).

``kafka_bootstrap`` is the bootstrap address of a broker: ``TRUNKLINE_TEST_KAFKA_BOOTSTRAP``
names an existing one; otherwise ``scripts/services/kafka start`` provides one (reusing a
broker the script already runs), and the session stops it at the end only if the session
started it. A broker that cannot be had fails the test in CI (``CI=true``) and skips it
elsewhere, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from service_support import REPO_ROOT, last_line, require_service

KAFKA_SCRIPT = REPO_ROOT / "scripts" / "services" / "kafka"
ENV_BOOTSTRAP = "TRUNKLINE_TEST_KAFKA_BOOTSTRAP"


def kafka_unavailable(reason: str) -> NoReturn:
    """A failure in CI (a missing broker would hide every Kafka test), a skip elsewhere."""
    require_service("kafka", reason)


def kafka_script(
    command: str, *, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/services/kafka <command>``; its last stdout line is the address.

    Run with this interpreter, so the script's readiness check can use confluent_kafka.
    """
    return subprocess.run(
        [sys.executable, str(KAFKA_SCRIPT), command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Kafka broker for this session."""
    configured = os.environ.get(ENV_BOOTSTRAP)
    if configured:
        yield configured
        return
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        kafka_unavailable("confluent-kafka is not installed (pip install -e '.[test]')")
    status = kafka_script("status")
    if status.returncode == 0:
        yield last_line(status.stdout)
        return
    try:
        started = kafka_script("start")
    except subprocess.TimeoutExpired as exc:
        kafka_unavailable(f"{KAFKA_SCRIPT} start timed out after {exc.timeout}s")
    if started.returncode != 0:
        kafka_unavailable(
            f"{KAFKA_SCRIPT} start failed (exit {started.returncode}):\n{started.stderr}"
        )
    try:
        yield last_line(started.stdout)
    finally:
        kafka_script("stop")


@contextlib.contextmanager
def deleting_new_topics(hub: Any) -> Iterator[None]:
    """Delete the topics created inside the block, so a long-lived test broker stays small."""
    before = set(hub.list_topics())
    try:
        yield
    finally:
        for topic in set(hub.list_topics()) - before:
            with contextlib.suppress(Exception):  # best effort: the test's result stands
                hub.delete_topic(topic)
