"""``trunkline contract lint|diff|check|schema``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from trunkline.cli._common import EXIT_BAD_INPUT, EXIT_FAILURE, bad_input, err, out, print_json
from trunkline.cli._common import project as open_project
from trunkline.contracts import ContractValidator, json_schema, load_contract
from trunkline.contracts._check import check_topic
from trunkline.contracts._diff import diff_contracts
from trunkline.contracts._lint import lint
from trunkline.errors import MetaError, TrunklineError

contract_app = typer.Typer(
    help="Data contracts (ODCS v3) of topics: lint, diff, check.", no_args_is_help=True
)

_JSON = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@contract_app.command("lint")
def contract_lint(
    file: Annotated[Path, typer.Argument(help="The contract file.")],
    strict: Annotated[bool, typer.Option(help="Fail on warnings too.")] = False,
    as_json: _JSON = False,
) -> None:
    """Check a contract's structure and trunkline's own rules (exit 2 on errors)."""
    findings = lint(file)
    errors = sum(f.severity == "error" for f in findings)
    if as_json:
        print_json(
            {
                "file": str(file),
                "errors": errors,
                "warnings": len(findings) - errors,
                "findings": [
                    {
                        "severity": f.severity,
                        "line": f.problem.line,
                        "column": f.problem.column,
                        "message": f.problem.message,
                        "hint": f.problem.hint,
                    }
                    for f in findings
                ],
            }
        )
    else:
        console = err()
        for finding in findings:
            colour = "red" if finding.severity == "error" else "yellow"
            console.print(f"[{colour}]{finding.severity}[/{colour}]: ", end="")
            console.print(str(finding.problem), markup=False)
        summary = f"{errors} error(s), {len(findings) - errors} warning(s)"
        (out() if not findings else console).print(
            f"{file}: ok" if not findings else f"{file}: {summary}", markup=False
        )
    if errors or (strict and findings):
        raise typer.Exit(EXIT_BAD_INPUT)


@contract_app.command("diff")
def contract_diff(
    ctx: typer.Context,
    old: Annotated[Path, typer.Argument(help="The contract as it was.")],
    new: Annotated[Path, typer.Argument(help="The contract as it is to be.")],
    topic: Annotated[
        str | None,
        typer.Option(
            help="The topic, to name its downstream consumers (default: the topic "
            "whose contract is NEW or OLD in the project)."
        ),
    ] = None,
    as_json: _JSON = False,
) -> None:
    """Each change classified (breaking or not, and the semver bump it needs).

    Exits 1 when NEW's version is not bumped enough for its changes.
    """
    before, after = load_contract(old), load_contract(new)
    result = diff_contracts(before, after)
    topic = topic or _topic_of(ctx, (new, old))
    consumers = _downstream(ctx, topic) if topic else []
    affected = consumers if any(c.breaking for c in result.changes) else []
    data: dict[str, Any] = {
        "old_version": result.old_version,
        "new_version": result.new_version,
        "required_bump": result.required.label,
        "declared_bump": result.declared.label,
        "suggested_version": result.suggested_version,
        "version_ok": result.version_ok,
        "changes": [
            {"bump": c.bump.label, "breaking": c.breaking, "where": c.where, "message": c.message}
            for c in result.changes
        ],
        "registry": list(result.registry),
        "topic": topic,
        "downstream": consumers,
        "affected": affected,
    }
    if as_json:
        print_json(data)
    else:
        console = out()
        for change in sorted(result.changes, key=lambda c: -c.bump):
            tag = "BREAKING" if change.breaking else change.bump.label
            console.print(f"{tag:>8}  {change.where}: {change.message}", markup=False)
        if not result.changes:
            console.print("no changes")
        for line in result.registry:
            console.print(f"  schema  {line}", markup=False)
        console.print(
            f"needs a {result.required.label} bump: {result.old_version} -> "
            f"{result.suggested_version} (declared {result.new_version})",
            markup=False,
        )
        if affected:
            console.print(f"downstream of {topic} and affected: {', '.join(affected)}")
        elif topic and consumers:
            console.print(f"downstream of {topic}: {', '.join(consumers)}")
    if not result.version_ok:
        if not as_json:
            err().print(
                f"[red]version too low[/red]: {result.new_version} is a "
                f"{result.declared.label} bump; the changes need {result.required.label}"
            )
        raise typer.Exit(EXIT_FAILURE)


@contract_app.command("check")
def contract_check(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic whose retained data to check.")],
    max_records: Annotated[
        int | None, typer.Option("--max", min=1, help="Check at most this many records.")
    ] = None,
    as_json: _JSON = False,
) -> None:
    """Run the topic's contract over its retained data; per rule: passed, failed, examples.

    Exits 1 when a rule fails or the retention disagrees with the contract.
    """
    project = open_project(ctx)
    loaded = project.contracts.load(topic)
    if loaded is None:
        raise bad_input(f"topic {topic!r} has no contract in {project.config.root}/trunkline.yaml")
    hub = project.hub
    retention = hub.describe_topic(topic).config.retention_ms
    report = check_topic(
        hub, topic, ContractValidator(loaded.contract), retention_ms=retention,
        max_records=max_records,
    )  # fmt: skip
    if as_json:
        print_json(report.to_dict())
    else:
        console = out()
        console.print(f"{topic}: {report.records:,} record(s) checked against {report.contract}")
        for rule in report.rules.values():
            mark = "[green]pass[/green]" if not rule.failed else "[red]FAIL[/red]"
            console.print(f"  {mark} ", end="")
            console.print(
                f"{rule.rule}: {rule.passed:,} passed, {rule.failed:,} failed", markup=False
            )
            for example in rule.examples if rule.failed else ():
                console.print(f"      {example}", markup=False)
        for note in report.notes:
            console.print("  [red]FAIL[/red] ", end="")
            console.print(note, markup=False)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


@contract_app.command("schema")
def contract_schema(
    file: Annotated[Path, typer.Argument(help="The contract file.")],
) -> None:
    """Print the JSON Schema the contract registers under <topic>-value."""
    sys.stdout.write(json.dumps(json_schema(load_contract(file)), indent=2) + "\n")


def _topic_of(ctx: typer.Context, files: tuple[Path, ...]) -> str | None:
    """The project's topic whose contract is one of ``files`` (None outside a project)."""
    try:
        project = open_project(ctx)
    except TrunklineError:
        return None
    wanted = {f.resolve() for f in files}
    for name in project.contracts.topics():
        path = project.contracts.path(name)
        if path is not None and path.resolve() in wanted:
            return name
    return None


def _downstream(ctx: typer.Context, topic: str) -> list[str]:
    """Datasets and jobs downstream of ``topic`` in the catalog's lineage."""
    try:
        meta = open_project(ctx).meta
        edges = meta.lineage(f"hub.{topic}", direction="downstream")
    except (TrunklineError, MetaError):
        return []
    return sorted({f"{edge.target} (via {edge.job_kind} {edge.job})" for edge in edges})


def perf_contracts(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    records: Annotated[int, typer.Option(min=1000, help="Records per workload.")] = 1_000_000,
    batch: Annotated[int, typer.Option(min=1, help="Records per produce call.")] = 10_000,
    ack: Annotated[str, typer.Option(help="Ack level of the embedded hub.")] = "fsync",
    directory: Annotated[
        Path | None, typer.Option(help="Where to put the benchmark's files (a temp folder).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="A small run (for smoke tests).")] = False,
) -> None:
    """Contract validation throughput and produce overhead (with / without a contract)."""
    from trunkline.perf.contracts import run

    if ack not in ("fsync", "written"):
        raise bad_input(f"--ack: expected fsync or written, found {ack!r}")
    sizes = {"records": 20_000, "batch": 5_000, "repeats": 1} if quick else {
        "records": records, "batch": batch}  # fmt: skip
    figures = run(directory, ack=ack, **sizes)
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    for key, value in figures.items():
        out().print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
