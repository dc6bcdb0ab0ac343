"""Sources and sinks: ``type:`` looked up in the plugin registries, settings validated by the
connector's own ``Config`` model, errors placed like every other error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import Field

from trunkline import connectors
from trunkline.config import ConfigModel, ProjectConfig, SinkSpec, SourceSpec, explain
from trunkline.errors import MissingDependency
from trunkline.plugins import Registry

Load = Callable[..., ProjectConfig]
Problems = Callable[..., list[str]]


class FakeCdc:
    """A test source with a settings model."""

    class Config(ConfigModel):
        dsn: str = Field(description="Where the database is.")
        tables: tuple[str, ...] = Field(description="Tables to capture.")
        topic_prefix: str = Field("cdc", description="Prefix of the topics written.")
        batch_size: int = Field(1000, ge=1, description="Rows per batch.")


class FakeDuckdb:
    """A test sink."""

    class Config(ConfigModel):
        path: str = Field(description="The database file.")
        mode: str = Field("append", description="append or upsert")


class NoConfig:
    """A broken plugin: no settings model."""


@pytest.fixture
def registries(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Registry[Any], Registry[Any]]]:
    # A plugin module that exists but needs a driver that is not installed.
    modules = tmp_path_factory.mktemp("plugins")
    (modules / "trunkline_test_needs_driver.py").write_text(
        "import trunkline_missing_test_driver\n\nclass Source:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(modules))
    sources: Registry[Any] = Registry("source")
    sinks: Registry[Any] = Registry("sink")
    sources.register("fake_cdc", FakeCdc)
    sources.register("no_config", NoConfig)
    sources.register("needs_driver", "trunkline_test_needs_driver:Source", extra="postgres")
    sinks.register("fake_duckdb", f"{__name__}:FakeDuckdb")
    monkeypatch.setattr(connectors, "SOURCES", sources)
    monkeypatch.setattr(connectors, "SINKS", sinks)
    yield sources, sinks


def test_builtins_are_registered_lazily() -> None:
    assert set(connectors.SOURCES.names()) >= {"files"}
    assert set(connectors.SINKS.names()) >= {"duckdb", "parquet"}


def test_unknown_type_with_nothing_installed(
    problems: Problems, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connectors, "SOURCES", Registry("source"))
    monkeypatch.setattr(connectors, "SINKS", Registry("sink"))
    text = """\
    sources:
      shop_db:
        type: postgres_cdc
        dsn: x
    sinks:
      warehouse: {type: duckdb}
    """
    assert problems(text) == [
        "expected a source type for 'type', found 'postgres_cdc' at trunkline.yaml:3:11"
        " - known source types: none installed",
        "expected a sink type for 'type', found 'duckdb' at trunkline.yaml:6:21"
        " - known sink types: none installed",
    ]


@pytest.mark.usefixtures("registries")
def test_known_types_load(load: Load) -> None:
    config = load(
        """\
        sources:
          shop_db:
            type: fake_cdc
            dsn: ${SHOP_DSN}
            tables: [public.orders]
        sinks:
          warehouse: {type: fake_duckdb, path: warehouse.duckdb, mode: upsert}
        """,
        env={"SHOP_DSN": "postgresql://cdc:pw@db/shop"},
    )
    source = config.sources["shop_db"]
    assert isinstance(source, SourceSpec)
    assert source.type == "fake_cdc"
    assert source.config == FakeCdc.Config(
        dsn="postgresql://cdc:pw@db/shop", tables=("public.orders",)
    )
    assert "pw" not in repr(config)
    sink = config.sinks["warehouse"]
    assert isinstance(sink, SinkSpec)
    assert sink.config == FakeDuckdb.Config(path="warehouse.duckdb", mode="upsert")
    # Dumped in the file's shape, settings beside `type`, so that a dump loads back.
    assert config.model_dump()["sinks"]["warehouse"] == {
        "type": "fake_duckdb",
        "path": "warehouse.duckdb",
        "mode": "upsert",
    }
    again = ProjectConfig.model_validate(config.model_dump(), context={"root": config.root})
    assert again == config


@pytest.mark.usefixtures("registries")
def test_unknown_type_suggests_and_lists_known_types(problems: Problems) -> None:
    assert problems("sources:\n  db: {type: fake_cd}\n  web: {type: http}\n") == [
        "expected a source type for 'type', found 'fake_cd' at trunkline.yaml:2:14"
        " - did you mean 'fake_cdc'? known source types: fake_cdc, needs_driver, no_config",
        "expected a source type for 'type', found 'http' at trunkline.yaml:3:15"
        " - known source types: fake_cdc, needs_driver, no_config",
    ]


@pytest.mark.usefixtures("registries")
def test_settings_errors_are_placed_and_suggest_keys(problems: Problems) -> None:
    text = """\
    sources:
      shop_db:
        type: fake_cdc
        dsn: postgresql://db/shop
        table: [public.orders]
        batch_size: 0
    sinks:
      warehouse:
        type: fake_duckdb
    """
    assert problems(text) == [
        "missing required key 'tables' in 'sources.shop_db' at trunkline.yaml:2:3",
        "unknown key 'table' at trunkline.yaml:5:5 - did you mean 'tables'?",
        "expected a value >= 1 for 'batch_size', found 0 at trunkline.yaml:6:17",
        "missing required key 'path' in 'sinks.warehouse' at trunkline.yaml:8:3",
    ]


@pytest.mark.usefixtures("registries")
def test_unknown_key_lists_type_among_valid_keys(problems: Problems) -> None:
    assert problems("sinks:\n  w: {type: fake_duckdb, path: x, zzz: 1}\n") == [
        "unknown key 'zzz' at trunkline.yaml:2:35 - valid keys here: type, path, mode"
    ]


def test_missing_type(problems: Problems) -> None:
    assert problems("sinks:\n  warehouse:\n    path: x\n") == [
        "missing required key 'type' in 'sinks.warehouse' at trunkline.yaml:2:3"
    ]


@pytest.mark.usefixtures("registries")
def test_missing_dependency_names_the_extra(problems: Problems) -> None:
    assert problems("sources:\n  db: {type: needs_driver}\n") == [
        "this source type needs the 'trunkline_missing_test_driver' package, which is not"
        " installed at trunkline.yaml:2:14 - install it with: pip install 'trunkline[postgres]'"
    ]


@pytest.mark.usefixtures("registries")
def test_plugin_without_config_model(problems: Problems) -> None:
    assert problems("sources:\n  db: {type: no_config}\n") == [
        "the plugin 'NoConfig' of this source type has no 'Config' model extending"
        " trunkline.config.ConfigModel at trunkline.yaml:2:14"
    ]


def test_registry_errors_outside_a_project(
    registries: tuple[Registry[Any], Registry[Any]],
) -> None:
    sources, _ = registries
    with pytest.raises(MissingDependency, match=r"pip install 'trunkline\[postgres\]'"):
        sources.get("needs_driver")


def test_connector_settings_are_explained() -> None:
    rows = {row.key: row for row in explain(FakeCdc.Config)}
    assert rows["batch_size"][1:] == ("integer", "1000", "Rows per batch.")
    assert rows["tables"].default == "required"


def test_duckdb_threads_below_one_are_placed(problems: Problems) -> None:
    text = "sinks:\n  w: {type: duckdb, path: w.duckdb, topics: [t], threads: 0}\n"
    assert problems(text) == ["expected a value >= 1 for 'threads', found 0 at trunkline.yaml:2:59"]


def test_an_unknown_topic_compression_is_placed_and_lists_the_choices(problems: Problems) -> None:
    text = "sources:\n  a: {type: files, path: in, topic: t, topic_compression: gzip}\n"
    assert problems(text) == [
        "expected 'none', 'lz4' or 'zstd' for 'topic_compression', found 'gzip' at "
        "trunkline.yaml:2:59"
    ]
