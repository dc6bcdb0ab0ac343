"""Helpers for tests that need real services (imported by conftest.py and by tests).

A plain module, not a conftest, so that tests can import it by a name no other test folder
shadows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SCRIPT = REPO_ROOT / "scripts" / "services" / "postgres"
JDBC_SCRIPT = REPO_ROOT / "scripts" / "services" / "jdbc"


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


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else ""
