"""What every command shares: the project option, consoles, JSON output, exit codes."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from trunkline.errors import ConfigError, InvalidRecord, TrunklineError
from trunkline.project import Project

#: Exit codes: 0 success, 1 a runtime failure, 2 bad input (config, arguments, records).
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def out() -> Console:
    """Console on stdout (resolved at call time so that tests can capture it)."""
    return Console(file=sys.stdout, soft_wrap=True, highlight=False)


def err() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def exit_code(exc: TrunklineError) -> int:
    return EXIT_BAD_INPUT if isinstance(exc, ConfigError | InvalidRecord) else EXIT_FAILURE


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@dataclass
class State:
    """Per-invocation state: where the project is, and the project once opened."""

    project_path: Path = Path()
    _project: Project | None = field(default=None, repr=False)

    def project(self) -> Project:
        if self._project is None:
            self._project = Project.open(self.project_path)
        return self._project

    def close(self) -> None:
        if self._project is not None:
            self._project.close()
            self._project = None


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def project(ctx: typer.Context) -> Project:
    return state(ctx).project()


def bad_input(message: str) -> ConfigError:
    """An error about command-line input (exit code 2)."""
    return ConfigError(message)


def check_bootstrap(option: str, value: str) -> str:
    """A Kafka bootstrap list given on the command line, checked as trunkline.yaml checks
    one, before any work starts."""
    from trunkline.config import KafkaHub

    try:
        KafkaHub.model_validate({"backend": "kafka", "bootstrap": value})
    except ValueError:
        raise bad_input(
            f"{option}: expected host:port[,host:port...], such as 127.0.0.1:9092, found {value!r}"
        ) from None
    return value
