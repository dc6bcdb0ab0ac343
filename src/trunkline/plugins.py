"""Plugin registries: one :class:`Registry` instance per kind of plugin (sources, sinks, ...).

A registry maps a name to a plugin object, usually a class. The name is the same string
everywhere: the ``type:`` in the project file, the registry key and the entry-point name.
Built-ins are registered as ``"module:attribute"`` strings and imported only when first
used, so that listing names never imports a driver. Third-party packages add plugins
through an entry-point group, for example in their ``pyproject.toml``::

    [project.entry-points."trunkline.sources"]
    mqtt = "trunkline_mqtt:MqttSource"

A built-in or explicitly registered name wins over an entry point of the same name: a stray
package must not silently replace a built-in.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, cast

from trunkline.errors import ConfigError, MissingDependency

__all__ = ["Registry"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry:
    """A registered plugin: the object, or where to import it from; the extra it needs."""

    target: object
    extra: str | None = None
    from_entry_point: bool = False


class Registry(Generic[T]):
    """The plugins of one kind, by name.

    Args:
        kind: What the plugins are, singular ("source"); used in messages.
        entry_point_group: The entry-point group third-party plugins register in.

    Example:
        >>> codecs = Registry[type[Any]]("codec")
        >>> codecs.register("json", "json:JSONDecoder")
        >>> codecs.get("json").__name__
        'JSONDecoder'
        >>> codecs.get("jsno")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trunkline.errors.ConfigError: unknown codec type 'jsno' - did you mean 'json'? ...
    """

    def __init__(self, kind: str, *, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, _Entry] = {}
        self._loaded: dict[str, T] = {}
        self._discovered = entry_point_group is None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, entry_point_group={self.entry_point_group!r})"

    def register(self, name: str, target: str | T, *, extra: str | None = None) -> None:
        """Add a plugin: an object, or a lazy ``"module:attribute"`` string.

        Args:
            name: The plugin's name (the project file's ``type:``).
            target: The plugin, or where to import it from.
            extra: The ``trunkline[extra]`` that installs the plugin's optional dependencies;
                named in the error when one of them is missing.

        Raises:
            ValueError: The name is empty or registered already (entry points aside).
        """
        if not name:
            raise ValueError(f"a {self.kind} type needs a non-empty name")
        current = self._entries.get(name)
        if current is not None and not current.from_entry_point:
            raise ValueError(f"{self.kind} type {name!r} is registered already")
        self._entries[name] = _Entry(target, extra)
        self._loaded.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every known name, sorted; imports nothing."""
        self._discover()
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def get(self, name: str) -> T:
        """The plugin called ``name``, imported on first use.

        Raises:
            ConfigError: No plugin has that name; the message suggests close names and lists
                the known ones.
            MissingDependency: The plugin needs an optional package that is not installed;
                the message names the ``pip install 'trunkline[extra]'`` command.
        """
        if name in self._loaded:
            return self._loaded[name]
        self._discover()
        entry = self._entries.get(name)
        if entry is None:
            raise ConfigError(f"unknown {self.kind} type {name!r} - {self.hint(name)}")
        plugin = cast(T, self._import(name, entry))
        self._loaded[name] = plugin
        return plugin

    def hint(self, name: str) -> str:
        """What to say about an unknown ``name``: a close match, if any, and the known names.

        Example:
            >>> Registry("sink").hint("duckdb")
            'known sink types: none installed'
        """
        known = self.names()
        listing = f"known {self.kind} types: {', '.join(known) if known else 'none installed'}"
        close = difflib.get_close_matches(name, known, n=1)
        return f"did you mean {close[0]!r}? {listing}" if close else listing

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for point in entry_points(group=cast(str, self.entry_point_group)):
            if point.name not in self._entries:
                self._entries[point.name] = _Entry(point, from_entry_point=True)

    def _import(self, name: str, entry: _Entry) -> object:
        target = entry.target
        try:
            if isinstance(target, str):
                module_name, _, attribute = target.partition(":")
                module = importlib.import_module(module_name)
                return getattr(module, attribute) if attribute else module
            if hasattr(target, "load") and entry.from_entry_point:
                return target.load()
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if _is_part_of(missing, _module_of(target)):
                raise  # the plugin's own module is missing: a packaging bug, not a user error
            if entry.extra is not None:
                raise MissingDependency(missing, extra=entry.extra) from exc
            raise ConfigError(
                f"the {self.kind} type {name!r} needs the {missing!r} module, which is not "
                "installed; install the package that provides it"
            ) from exc
        return target


def _module_of(target: Any) -> str:
    if isinstance(target, str):
        return target.partition(":")[0]
    return str(getattr(target, "module", ""))


def _is_part_of(missing: str, module: str) -> bool:
    """Whether ``missing`` is ``module`` or one of its parent packages."""
    return bool(missing) and (module == missing or module.startswith(missing + "."))
