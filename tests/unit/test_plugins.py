"""The plugin registry: lazy built-ins, entry points, suggestions, missing dependencies."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from trunkline import plugins
from trunkline.errors import ConfigError, MissingDependency
from trunkline.plugins import Registry


class Widget:
    pass


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for throwaway plugin modules."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def fake_entry_points(
    monkeypatch: pytest.MonkeyPatch, group: str, points: dict[str, str]
) -> list[str]:
    """Make `entry_points(group=...)` return ``points``; returns the groups asked for."""
    asked: list[str] = []

    def entry_points(*, group: str) -> list[EntryPoint]:
        asked.append(group)
        return [EntryPoint(name, value, group) for name, value in points.items()]

    monkeypatch.setattr(plugins, "entry_points", entry_points)
    return asked


def test_register_object_and_lazy_string() -> None:
    registry: Registry[Any] = Registry("widget")
    registry.register("direct", Widget)
    registry.register("lazy", f"{__name__}:Widget")
    assert registry.names() == ("direct", "lazy")
    assert "lazy" in registry
    assert "other" not in registry
    assert registry.get("direct") is Widget
    assert registry.get("lazy") is Widget


def test_lazy_strings_are_imported_on_first_get(plugin_dir: Path) -> None:
    (plugin_dir / "tl_test_lazy_widget.py").write_text("class Thing:\n    pass\n")
    registry: Registry[Any] = Registry("widget")
    registry.register("thing", "tl_test_lazy_widget:Thing")
    assert registry.names() == ("thing",)
    assert "tl_test_lazy_widget" not in sys.modules
    assert registry.get("thing").__name__ == "Thing"
    assert "tl_test_lazy_widget" in sys.modules
    sys.modules.pop("tl_test_lazy_widget")


def test_register_twice_is_an_error() -> None:
    registry: Registry[Any] = Registry("widget")
    registry.register("a", Widget)
    with pytest.raises(ValueError, match="widget type 'a' is registered already"):
        registry.register("a", Widget)
    with pytest.raises(ValueError, match="non-empty name"):
        registry.register("", Widget)


def test_unknown_name_suggests_and_lists() -> None:
    registry: Registry[Any] = Registry("sink")
    for name in ("duckdb", "postgres", "parquet"):
        registry.register(name, Widget)
    with pytest.raises(ConfigError) as caught:
        registry.get("duckbd")
    assert str(caught.value) == (
        "unknown sink type 'duckbd' - did you mean 'duckdb'? "
        "known sink types: duckdb, parquet, postgres"
    )
    with pytest.raises(ConfigError) as caught:
        registry.get("kafka")
    assert (
        str(caught.value)
        == "unknown sink type 'kafka' - known sink types: duckdb, parquet, postgres"
    )


def test_empty_registry_says_none_installed() -> None:
    with pytest.raises(ConfigError) as caught:
        Registry("source").get("files")
    assert str(caught.value) == "unknown source type 'files' - known source types: none installed"


def test_missing_optional_dependency_names_the_extra(plugin_dir: Path) -> None:
    (plugin_dir / "tl_test_pg_source.py").write_text(
        "import tl_test_not_installed_driver\n\nclass Source:\n    pass\n"
    )
    registry: Registry[Any] = Registry("source")
    registry.register("pg", "tl_test_pg_source:Source", extra="postgres")
    with pytest.raises(MissingDependency) as caught:
        registry.get("pg")
    assert caught.value.package == "tl_test_not_installed_driver"
    assert caught.value.extra == "postgres"
    assert "pip install 'trunkline[postgres]'" in str(caught.value)


def test_missing_dependency_without_extra(plugin_dir: Path) -> None:
    (plugin_dir / "tl_test_other_source.py").write_text("import tl_test_not_installed_lib\n")
    registry: Registry[Any] = Registry("source")
    registry.register("other", "tl_test_other_source:Source")
    with pytest.raises(ConfigError, match="needs the 'tl_test_not_installed_lib' module") as caught:
        registry.get("other")
    assert not isinstance(caught.value, MissingDependency)


def test_a_missing_plugin_module_is_a_bug_not_a_user_error() -> None:
    registry: Registry[Any] = Registry("source")
    registry.register("typo", "trunkline.connectors.no_such_module:Source", extra="postgres")
    with pytest.raises(ModuleNotFoundError):
        registry.get("typo")


def test_entry_points_add_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_entry_points(monkeypatch, "trunkline.widgets", {"ep_widget": f"{__name__}:Widget"})
    registry: Registry[Any] = Registry("widget", entry_point_group="trunkline.widgets")
    registry.register("builtin", Widget)
    assert registry.names() == ("builtin", "ep_widget")
    assert registry.get("ep_widget") is Widget
    registry.names()
    assert asked == ["trunkline.widgets"]  # discovered once


def test_builtins_win_over_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, "trunkline.widgets", {"duckdb": "json:JSONDecoder"})
    registry: Registry[Any] = Registry("widget", entry_point_group="trunkline.widgets")
    registry.register("duckdb", Widget)
    assert registry.get("duckdb") is Widget


def test_explicit_registration_replaces_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, "trunkline.widgets", {"w": "json:JSONDecoder"})
    registry: Registry[Any] = Registry("widget", entry_point_group="trunkline.widgets")
    assert registry.get("w").__name__ == "JSONDecoder"
    registry.register("w", Widget)
    assert registry.get("w") is Widget


def test_entry_point_with_missing_dependency(
    monkeypatch: pytest.MonkeyPatch, plugin_dir: Path
) -> None:
    (plugin_dir / "tl_test_ep_plugin.py").write_text("import tl_test_not_installed_sdk\n")
    fake_entry_points(monkeypatch, "trunkline.sources", {"mqtt": "tl_test_ep_plugin:Source"})
    registry: Registry[Any] = Registry("source", entry_point_group="trunkline.sources")
    with pytest.raises(
        ConfigError, match="source type 'mqtt' needs the 'tl_test_not_installed_sdk'"
    ):
        registry.get("mqtt")


def test_connector_registries() -> None:
    from trunkline.connectors import SINKS, SOURCES

    assert (SOURCES.kind, SOURCES.entry_point_group) == ("source", "trunkline.sources")
    assert (SINKS.kind, SINKS.entry_point_group) == ("sink", "trunkline.sinks")
