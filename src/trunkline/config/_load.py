"""Loading ``trunkline.yaml``: read, parse with positions, resolve ``${VAR}``, validate."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from trunkline.config._model import ProjectConfig
from trunkline.config._problems import Problem, ProjectFileError
from trunkline.config._translate import translate
from trunkline.config._yaml import read_document

PROJECT_FILE = "trunkline.yaml"


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
