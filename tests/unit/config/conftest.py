"""Helpers for project-file tests: write a trunkline.yaml in a temporary project and load it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from trunkline.config import ProjectConfig, ProjectFileError, load_project

Load = Callable[..., ProjectConfig]
Problems = Callable[..., list[str]]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, made the working directory so messages say 'trunkline.yaml'."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def load(project: Path) -> Load:
    """Write the (dedented) text as trunkline.yaml and load the project."""

    def load_text(text: str, env: Mapping[str, str] | None = None) -> ProjectConfig:
        (project / "trunkline.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
        return load_project(".", env={} if env is None else env)

    return load_text


@pytest.fixture
def problems(load: Load) -> Problems:
    """Write the text, expect loading to fail, and return the problems as printed."""

    def problems_of(text: str, env: Mapping[str, str] | None = None) -> list[str]:
        with pytest.raises(ProjectFileError) as caught:
            load(text, env)
        lines = str(caught.value).splitlines()
        assert lines == [str(p) for p in caught.value.problems]
        return lines

    return problems_of
