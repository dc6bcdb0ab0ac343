"""``trunkline init``, ``validate`` and ``config explain``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trunkline.cli._common import EXIT_BAD_INPUT, err, out, print_json, state
from trunkline.config import ProjectConfig, ProjectFileError, explain, load_project, write_starter
from trunkline.contracts._lint import project_problems

config_app = typer.Typer(help="The project file's keys.", no_args_is_help=True)


def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path(),
) -> None:
    """Write a commented starter trunkline.yaml (never overwrites one)."""
    written = write_starter(directory)
    out().print(f"created {written}")
    out().print(
        f"next: cd {directory} && trunkline validate && trunkline topic apply && "
        "trunkline topic list"
    )


def validate(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(help="The project file or directory (default: the current project)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check a project file: exit 0 when valid, 2 with every problem when not."""
    target = file if file is not None else state(ctx).project_path
    try:
        config = load_project(target)
        # The topics' contracts: broken files, retention that disagrees with the topic's.
        contract_problems = project_problems(config)
        if contract_problems:
            raise ProjectFileError(contract_problems)
    except ProjectFileError as exc:
        if as_json:
            print_json(
                {
                    "valid": False,
                    "problems": [
                        {
                            "file": str(p.path),
                            "line": p.line,
                            "column": p.column,
                            "message": p.message,
                            "hint": p.hint,
                        }
                        for p in exc.problems
                    ],
                }
            )
        else:
            console = err()
            console.print(f"[red]invalid[/red]: {len(exc.problems)} problem(s)")
            for problem in exc.problems:
                console.print(f"  {problem}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    summary = {
        "valid": True,
        "hub": config.hub.backend,
        "topics": sorted(config.topics),
        "sources": sorted(config.sources),
        "sinks": sorted(config.sinks),
        "flows": sorted(config.flows),
    }
    if as_json:
        print_json(summary)
        return
    out().print(
        f"[green]valid[/green]: hub {config.hub.backend}, {len(config.topics)} topic(s), "
        f"{len(config.sources)} source(s), {len(config.sinks)} sink(s), "
        f"{len(config.flows)} flow(s)"
    )


@config_app.command("explain")
def config_explain(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Every key of trunkline.yaml with its type, default and meaning."""
    docs = explain(ProjectConfig)
    if as_json:
        print_json([doc._asdict() for doc in docs])
        return
    table = Table("key", "type", "default", "meaning", show_lines=False)
    for doc in docs:
        table.add_row(doc.key, doc.type, doc.default, doc.description)
    out().print(table)
