"""Reading a project file's YAML while remembering where every key and value was written.

PyYAML's ``safe_load`` forgets positions and silently keeps the last of two equal keys, so
the file is composed into PyYAML's node tree and converted here: scalars through PyYAML's
safe constructor (so ``3``, ``true``, ``null`` mean what YAML says), mappings and sequences
by hand, recording the position of each key and value by its path of keys and indexes.
``${VAR}`` references are resolved on the way, in string values (not in keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trunkline.config._base import EnvValue
from trunkline.config._env import substitute
from trunkline.config._problems import Problem

#: Where a value sits in the document: the keys and list indexes leading to it.
KeyPath = tuple[Any, ...]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column."""

    line: int
    column: int


@dataclass(slots=True)
class Document:
    """A project file's data with the positions of its parts.

    ``data`` is None when the file has no usable top-level mapping; ``problems`` then says
    why. ``env_variables`` and ``env_secrets`` record, per path, which variables and which
    environment values went into a string; ``reported`` holds paths whose value is meaningless
    because a problem about it is reported already (an unset variable, a bad tag).
    """

    path: Path
    data: dict[Any, Any] | None = None
    values: dict[KeyPath, Position] = field(default_factory=dict)
    keys: dict[KeyPath, Position] = field(default_factory=dict)
    env_variables: dict[KeyPath, tuple[str, ...]] = field(default_factory=dict)
    env_secrets: dict[KeyPath, tuple[str, ...]] = field(default_factory=dict)
    reported: set[KeyPath] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, at: Position | None, message: str, hint: str = "") -> None:
        line, column = (at.line, at.column) if at else (None, None)
        self.problems.append(Problem(self.path, line, column, message, hint))


#: What the top of a project file holds, for the hints about an empty or misshapen file.
_PROJECT_TOP = (
    "expected a mapping with keys such as 'hub', 'meta' and 'topics'; "
    "'trunkline init' writes a starter file",
    "the top level holds keys such as 'hub', 'meta' and 'topics'",
)


def read_document(
    text: str,
    *,
    path: Path,
    env: Mapping[str, str] | None,
    what: str = "project file",
    top: tuple[str, str] = _PROJECT_TOP,
) -> Document:
    """Parse ``text`` (the content of ``path``) into a :class:`Document`; never raises.

    ``env=None`` leaves ``${VAR}`` text as written (data contracts hold regexes and SQL, not
    secrets). ``what`` names the file in messages; ``top`` holds the hints for an empty file
    and for a top level that is not a mapping.
    """
    doc = Document(path)
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
            doc.problem(None, f"the {what} is empty", top[0])
        elif not isinstance(root, MappingNode):
            doc.problem(
                _position(root),
                f"expected a mapping at the top of the file, found {_kind(root)}",
                top[1],
            )
        else:
            data = _Converter(doc, loader, env).convert(root, ())
            doc.data = data if isinstance(data, dict) else None
    except yaml.MarkedYAMLError as exc:
        _report_yaml_error(doc, exc)
    except yaml.YAMLError as exc:
        doc.problem(None, f"invalid YAML: {exc}")
    finally:
        loader.dispose()
    return doc


def _report_yaml_error(doc: Document, exc: yaml.MarkedYAMLError) -> None:
    mark = exc.problem_mark or exc.context_mark
    position = Position(mark.line + 1, mark.column + 1) if mark else None
    hint = ""
    if exc.context:
        hint = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            hint += f" at line {exc.context_mark.line + 1}"
    doc.problem(position, f"invalid YAML: {exc.problem or exc.context}", hint)


def _position(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _kind(node: Node) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, MappingNode):
        return "a mapping"
    return repr(node.value) if isinstance(node, ScalarNode) else "something else"


class _Converter:
    """Turns a node tree into plain data, filling the document's positions and problems."""

    def __init__(
        self, doc: Document, loader: yaml.SafeLoader, env: Mapping[str, str] | None
    ) -> None:
        self._doc = doc
        self._loader = loader
        self._env = env
        # Nodes being converted: an alias back to one of them would recurse forever.
        self._open: set[int] = set()
        self._scalars: dict[int, Any] = {}

    def convert(self, node: Node, path: KeyPath) -> Any:
        self._doc.values[path] = _position(node)
        if id(node) in self._open:
            self._doc.problem(_position(node), "a YAML alias refers to a node that contains it")
            self._doc.reported.add(path)
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            return self._scalar(node, path)
        finally:
            self._open.discard(id(node))

    def _scalar(self, node: Node, path: KeyPath) -> Any:
        value = self._construct(node)
        if value is _INVALID:
            self._doc.reported.add(path)
            return None
        if self._env is None or not isinstance(value, str) or "$" not in value:
            return value
        result = substitute(value, self._env)
        for message, hint in result.problems:
            self._doc.problem(_position(node), message, hint)
        if result.problems:
            self._doc.reported.add(path)
            return value
        if not result.variables:
            return result.text  # only escapes, or a '$' that is not a reference
        self._doc.env_variables[path] = result.variables
        if result.secrets:
            self._doc.env_secrets[path] = result.secrets
        return EnvValue(result.text, result.variables)

    def _sequence(self, node: SequenceNode, path: KeyPath) -> Any:
        if node.tag != _SEQ_TAG:
            self._doc.problem(_position(node), f"unsupported YAML tag {node.tag!r}")
            self._doc.reported.add(path)
            return None
        return [self.convert(item, (*path, index)) for index, item in enumerate(node.value)]

    def _mapping(self, node: MappingNode, path: KeyPath) -> Any:
        if node.tag != _MAP_TAG:
            self._doc.problem(_position(node), f"unsupported YAML tag {node.tag!r}")
            self._doc.reported.add(path)
            return None
        self._check_duplicates(node)
        try:
            # Resolves "<<: *defaults" merge keys; explicit keys then override merged ones.
            self._loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            _report_yaml_error(self._doc, exc)
            self._doc.reported.add(path)
            return None
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key is _INVALID:
                continue
            self._doc.keys[(*path, key)] = _position(key_node)
            result[key] = self.convert(value_node, (*path, key))
        return result

    def _check_duplicates(self, node: MappingNode) -> None:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, report=False)
            if key is _INVALID:
                continue
            if key in seen:
                first = _position(seen[key])
                self._doc.problem(
                    _position(key_node),
                    f"duplicate key {key!r}",
                    f"it is also defined at line {first.line}; a key may appear once per mapping",
                )
            else:
                seen[key] = key_node

    def _key(self, node: Node, *, report: bool = True) -> Any:
        if not isinstance(node, ScalarNode):
            if report:
                self._doc.problem(_position(node), f"expected a plain key, found {_kind(node)}")
            return _INVALID
        return self._construct(node)

    def _construct(self, node: Node) -> Any:
        # Keys are read twice (duplicate check, then conversion); PyYAML would report a
        # failed node as "recursive" the second time, so remember every outcome.
        if id(node) in self._scalars:
            return self._scalars[id(node)]
        try:
            value = self._loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            _report_yaml_error(self._doc, exc)
            value = _INVALID
        self._scalars[id(node)] = value
        return value


#: Marks a key or value that cannot be used (already reported).
_INVALID = object()
