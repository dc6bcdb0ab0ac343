"""Loading ``trunkline.yaml``: read, parse with positions, resolve ``${VAR}``, validate."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from trunkline.config._model import ProjectConfig
from trunkline.config._problems import Problem, ProjectFileError
from trunkline.config._translate import translate
from trunkline.config._yaml import read_document
from trunkline.errors import ConfigError

PROJECT_FILE = "trunkline.yaml"
M = TypeVar("M", bound=BaseModel)


def load_project(path: Path | str, env: Mapping[str, str] | None = None) -> ProjectConfig:
    """Load and validate a project.

    Args:
        path: The project directory (holding ``trunkline.yaml``) or the file itself.
        env: Where ``${VAR}`` references are looked up; the process environment by default.

    Raises:
        ProjectFileError: Everything wrong with the file, each problem with its position.

    Example:
        >>> config = load_project("shop", env={"SHOP_DSN": "postgresql://..."})  # doctest: +SKIP
        >>> config.topics["orders"].partitions  # doctest: +SKIP
        3
    """
    file = _project_file(Path(path))
    text = _read(file)
    doc = read_document(text, path=file, env=os.environ if env is None else env)
    problems = list(doc.problems)
    config = None
    if doc.data is not None:
        try:
            config = ProjectConfig.model_validate(doc.data, context={"root": file.parent.resolve()})
        except ValidationError as exc:
            problems.extend(translate(exc, doc, ProjectConfig))
    if problems or config is None:
        raise ProjectFileError(problems)
    return config


def _project_file(path: Path) -> Path:
    if path.is_dir():
        return path / PROJECT_FILE
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    return path / PROJECT_FILE


def _read(file: Path) -> str:
    def fail(message: str, hint: str = "") -> ProjectFileError:
        return ProjectFileError([Problem(file, None, None, message, hint)])

    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "'trunkline init' writes a starter project" if file.name == PROJECT_FILE else ""
        raise fail("project file not found", hint) from None
    except UnicodeDecodeError as exc:
        raise fail(f"the file is not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    except OSError as exc:
        raise fail(f"cannot read the file: {exc.strerror or exc}") from None


def load_settings(
    settings: Sequence[tuple[str, str, str]], model: type[M]
) -> tuple[M, frozenset[str]]:
    """Validate ``key=value`` settings from the command line with the project file's rules.

    Each setting is ``(label, key, value)``; ``label`` says where it came from (such as
    ``--set retention=7d``) and is what error messages point at. Values are read as YAML
    scalars, so ``3`` is a number and ``7d`` a duration, exactly as in ``trunkline.yaml``.

    Returns:
        The model, and the keys that were given (everything else holds its default).

    Raises:
        ConfigError: Every problem, each naming the setting it comes from.

    Example:
        >>> from trunkline.config import TopicSpec
        >>> spec, keys = load_settings([("--set", "retention", "36h")], TopicSpec)
        >>> spec.retention, sorted(keys)
        (129600000, ['retention'])
    """
    labels = [label for label, _, _ in settings]
    text = "".join(f"{key}: {value}\n" for _, key, value in settings)
    doc = read_document(text or "{}", path=Path("<command line>"), env={})
    problems = list(doc.problems)
    result = None
    if doc.data is not None:
        try:
            result = model.model_validate(doc.data)
        except ValidationError as exc:
            problems.extend(translate(exc, doc, model))
    if problems or result is None:
        lines = []
        for problem in problems:
            where = labels[problem.line - 1] if problem.line else "the command line"
            lines.append(
                f"{problem.message} in {where}" + (f" - {problem.hint}" if problem.hint else "")
            )
        raise ConfigError("\n".join(lines))
    return result, frozenset(key for _, key, _ in settings)
