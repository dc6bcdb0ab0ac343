"""Fixtures of the runtime's tests: a metadata store on SQLite and, when PostgreSQL runs, on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trunkline.meta import MetaStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/meta.db"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
def meta(store_url: str) -> Iterator[MetaStore]:
    with MetaStore.open(store_url) as store:
        yield store
