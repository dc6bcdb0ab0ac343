"""The ``trunkline`` command line (typer + rich).

Every command works on the project in the current directory, or the one given with
``--project PATH`` (or ``TRUNKLINE_PROJECT``). Read commands take ``--json`` for scripts.
Exit codes: 0 success, 1 a failure at run time, 2 bad input (project file, arguments,
records) — in which case nothing was written.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from trunkline import __version__
from trunkline.cli._catalog import catalog_app, lineage
from trunkline.cli._common import EXIT_BAD_INPUT, State, err, exit_code, out
from trunkline.cli._contract import contract_app, perf_contracts
from trunkline.cli._groups import group_app
from trunkline.cli._hub import hub_app
from trunkline.cli._perf import perf_app
from trunkline.cli._planner import (
    analyze,
    calibrate,
    catalog_add,
    flow_app,
    perf_planner,
    plan,
    query,
)
from trunkline.cli._project import config_app, init, validate
from trunkline.cli._records import consume, produce
from trunkline.cli._runtime import dlq_app, perf_sink, run, status
from trunkline.cli._schema import registry_app, schema_app
from trunkline.cli._topics import topic_app
from trunkline.errors import TrunklineError


class _Root(TyperGroup):
    """Turns trunkline's errors into a one-line message and an exit code, for every command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except TrunklineError as exc:
            err().print(Text.assemble(("error", "bold red"), f": {exc}"))
            raise typer.Exit(exit_code(exc)) from None


app = typer.Typer(
    name="trunkline",
    cls=_Root,
    help="A log hub as the ETL backbone of a data platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    project_path: Annotated[
        Path,
        typer.Option(
            "--project",
            "-p",
            envvar="TRUNKLINE_PROJECT",
            help="Project directory (or its trunkline.yaml).",
        ),
    ] = Path(),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    st = State(project_path=project_path)
    ctx.obj = st
    ctx.call_on_close(st.close)


@app.command("version")
def version() -> None:
    """Print trunkline's version."""
    out().print(__version__)


@app.command("demo")
def demo(
    directory: Annotated[
        Path | None,
        typer.Option(help="Build the demo project here instead of a temporary folder."),
    ] = None,
    scale: Annotated[
        float, typer.Option(min=0.001, help="Data volume factor (1 = 610k records).")
    ] = 1.0,
) -> None:
    """Run the main job on the embedded default: produce sample data, consume it, report."""
    from trunkline.cli._demo import render_demo

    render_demo(directory, scale)


app.command("init")(init)
app.command("validate")(validate)
app.command("produce")(produce)
app.command("consume")(consume)
app.command("run")(run)
app.command("status")(status)
app.add_typer(config_app, name="config")
app.add_typer(topic_app, name="topic")
app.add_typer(group_app, name="group")
catalog_app.command("add")(catalog_add)
app.add_typer(catalog_app, name="catalog")
app.command("lineage")(lineage)
app.command("analyze")(analyze)
app.command("query")(query)
app.command("plan")(plan)
app.command("calibrate")(calibrate)
app.add_typer(flow_app, name="flow")
app.add_typer(hub_app, name="hub")
perf_app.command("sink")(perf_sink)
perf_app.command("contracts")(perf_contracts)
perf_app.command("planner")(perf_planner)
app.add_typer(perf_app, name="perf")
app.add_typer(dlq_app, name="dlq")
app.add_typer(schema_app, name="schema")
app.add_typer(registry_app, name="registry")
app.add_typer(contract_app, name="contract")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    try:
        app(args=argv, prog_name="trunkline")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_BAD_INPUT)
    return 0
