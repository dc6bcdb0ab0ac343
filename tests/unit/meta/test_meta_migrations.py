"""Migrations ship inside the package and refuse a database from a newer trunkline."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import sqlalchemy as sa

import trunkline.meta
from trunkline.errors import MetaError
from trunkline.meta import MetaStore
from trunkline.meta._migrate import MIGRATIONS, VERSION_TABLE, head_revision


def test_migrations_ship_in_the_package() -> None:
    package = resources.files(trunkline.meta)
    for name in (
        "env.py",
        "script.py.mako",
        "versions/0001_initial.py",
        "versions/0002_schema_registry.py",
        "versions/0003_planner_stats.py",
        "versions/0004_runtime_leases.py",
        "versions/0005_runtime_processes.py",
    ):
        assert (package / "migrations" / name).is_file(), name
    assert MIGRATIONS.is_relative_to(Path(trunkline.meta.__file__).parent)
    assert head_revision() == "0005"


def test_fresh_database_is_at_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/meta.db"
    MetaStore.open(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    finally:
        engine.dispose()
    assert version == [(head_revision(),)]


def test_database_from_a_newer_trunkline_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/meta.db"
    MetaStore.open(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(MetaError, match=r"revision '9999'.*newer trunkline"):
        MetaStore.open(url)
