"""The SQLite backend: one file shared by several engines and processes."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from trunkline.errors import MetaError, MetaUnavailable
from trunkline.meta import MetaStore, _store
from trunkline.meta._engine import StoreUrl, translate


def test_docstring_examples() -> None:
    failed, tried = doctest.testmod(_store, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failed == 0


def test_creates_parent_folders_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "meta.db"
    with MetaStore.open(f"sqlite:///{path}") as store:
        assert path.exists()
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_in_memory_store(tmp_path: Path) -> None:
    with MetaStore.open("sqlite://") as store:
        store.upsert_system("hub", "hub", str(tmp_path))
        assert [s.name for s in store.list_systems()] == ["hub"]
    assert not list(tmp_path.iterdir())


def test_two_engines_see_each_others_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/meta.db"
    with MetaStore.open(url) as first, MetaStore.open(url) as second:
        first.upsert_system("pg", "postgres", "postgresql://db/shop")
        assert second.get_system("pg").kind == "postgres"
        second.upsert_dataset("pg", "public.orders", "table")
        assert first.resolve("orders").qualified_name == "pg.public.orders"


_WRITER = textwrap.dedent(
    """
    import sys
    from trunkline.meta import MetaStore

    url, worker = sys.argv[1], sys.argv[2]
    with MetaStore.open(url) as store:
        store.upsert_system("hub", "hub", ".trunkline/hub")
        for i in range(30):
            store.upsert_dataset("hub", f"w{worker}.t{i}", "topic", owner=worker)
            store.upsert_dataset("hub", "shared", "topic", owner=worker)
    """
)


def test_processes_write_one_file_concurrently(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/meta.db"
    # Every process opens a fresh file at once: the migration itself races too.
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, str(worker)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        for worker in range(3)
    ]
    for child in children:
        _, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
    with MetaStore.open(url) as store:
        assert len(store.list_datasets("hub")) == 3 * 30 + 1
        assert store.get_dataset("hub", "shared").owner in {"0", "1", "2"}


def test_a_locked_database_is_retryable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/meta.db"
    MetaStore.open(url).close()
    engine = sa.create_engine(url, connect_args={"timeout": 0.1})
    try:
        with engine.connect() as holder:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(sa.exc.OperationalError) as info, engine.connect() as other:
                other.exec_driver_sql("BEGIN IMMEDIATE")
            holder.exec_driver_sql("ROLLBACK")
    finally:
        engine.dispose()
    translated = translate(info.value, StoreUrl(sa.make_url(url)))
    assert isinstance(translated, MetaUnavailable) and translated.retryable
    assert "database is locked" in str(translated)


def test_unusable_path_is_a_meta_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MetaError, match="cannot create folder"):
        MetaStore.open(f"sqlite:///{blocker}/sub/meta.db")


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = MetaStore.open(f"sqlite:///{tmp_path}/meta.db")
    store.close()
    store.close()
    with pytest.raises(MetaError, match="is closed"):
        store.list_systems()
