"""Fixtures of the contract tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from _contract_text import FIXTURE


@pytest.fixture
def orders_contract_path() -> Path:
    return FIXTURE
