"""``trunkline contract lint|diff|check|schema``."""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from trunkline.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    bad_input,
    check_bootstrap,
    err,
    out,
    print_json,
    state,
)
from trunkline.cli._common import project as open_project
from trunkline.config import PROJECT_FILE, ProjectFileError
from trunkline.contracts import ContractValidator, json_schema, load_contract
from trunkline.contracts._check import check_topic
from trunkline.contracts._diff import Downstream, diff_contracts, downstream_of
from trunkline.contracts._lint import lint
from trunkline.errors import MetaError, NotFound
from trunkline.meta import MetaStore
from trunkline.project import HUB_SYSTEM

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
        list[str] | None,
        typer.Option(
            help="A topic the contract is for, to name its downstream consumers (repeat for "
            "several; default: the project's topics whose contract is NEW or OLD)."
        ),
    ] = None,
    as_json: _JSON = False,
) -> None:
    """Each change classified (breaking or not, and the semver bump it needs), and what
    reads the contract's topics: the datasets and jobs downstream in the lineage.

    Exits 1 when NEW's version is not bumped enough for its changes.
    """
    before, after = load_contract(old), load_contract(new)
    result = diff_contracts(before, after)
    downstream = _downstream(ctx, (new, old), tuple(topic or ()))
    affected = downstream.consumers if result.breaking else ()
    data: dict[str, Any] = {
        "old_version": result.old_version,
        "new_version": result.new_version,
        "required_bump": result.required.label,
        "declared_bump": result.declared.label,
        "suggested_version": result.suggested_version,
        "version_ok": result.version_ok,
        "breaking": result.breaking,
        "changes": [
            {"bump": c.bump.label, "breaking": c.breaking, "where": c.where, "message": c.message}
            for c in result.changes
        ],
        "registry": list(result.registry),
        "topics": list(downstream.topics),
        "downstream": {
            "datasets": [
                {"name": c.dataset, "hops": c.hops, "jobs": [str(j) for j in c.jobs]}
                for c in downstream.consumers
            ],
            "jobs": [{"kind": j.kind, "name": j.name} for j in downstream.jobs],
            "note": downstream.note,
        },
        "affected": {
            "datasets": [c.dataset for c in affected],
            "jobs": [str(j) for j in downstream.jobs] if affected else [],
        },
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
        _print_downstream(downstream, breaking=result.breaking)
    if not result.version_ok:
        if not as_json:
            err().print(
                f"[red]version too low[/red]: {result.new_version} is a "
                f"{result.declared.label} bump; the changes need {result.required.label}"
            )
        raise typer.Exit(EXIT_FAILURE)


def _print_downstream(downstream: Downstream, *, breaking: bool) -> None:
    console = out()
    if downstream.note is not None:
        console.print(f"downstream consumers unknown: {downstream.note}", markup=False)
        return
    shown = ", ".join(downstream.topics)
    if breaking:
        console.print(f"affected downstream of {shown} (breaking changes):", markup=False)
    else:
        console.print(f"downstream of {shown} (not affected: no breaking change):", markup=False)
    for consumer in downstream.consumers:
        jobs = ", ".join(str(j) for j in consumer.jobs)
        away = "" if consumer.hops == 1 else f", {consumer.hops} hops away"
        console.print(f"  {consumer.dataset}  (written by {jobs}{away})", markup=False)
    console.print(f"  jobs: {', '.join(str(j) for j in downstream.jobs)}", markup=False)


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


def _downstream(ctx: typer.Context, files: tuple[Path, ...], topics: tuple[str, ...]) -> Downstream:
    """The consumers of ``topics`` (by default the project's topics whose contract is one of
    ``files``), or a note saying why they cannot be named."""
    path = state(ctx).project_path
    try:
        project = open_project(ctx)
    except ProjectFileError as exc:
        if not (path.is_file() or (path / PROJECT_FILE).is_file()):
            where = path.resolve() / PROJECT_FILE if path.is_dir() else path.resolve()
            return Downstream(
                topics,
                note=f"not in a project ({where} does not exist), so the contract's topics "
                "and their lineage are unknown; run it in the project or pass -p PROJECT",
            )
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Downstream(topics, note=f"the project cannot be loaded: {first}")
    try:
        meta = project.meta
    except MetaError as exc:
        return Downstream(topics, note=f"the metadata store cannot be opened: {exc}")
    known = project.config.topics
    if topics:
        for name in topics:
            if name not in known and not _in_catalog(meta, name):
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                listed = ", ".join(sorted(known)) or "none"
                raise bad_input(
                    f"--topic {name!r}: no such topic in {project.config.root / PROJECT_FILE}; "
                    f"{hint}its topics: {listed}"
                )
    else:
        wanted = {f.resolve() for f in files}
        topics = tuple(
            name
            for name in project.contracts.topics()
            if (found := project.contracts.path(name)) is not None and found.resolve() in wanted
        )
        if not topics:
            names = " or ".join(str(f) for f in files)
            return Downstream(
                (),
                note=f"no topic in {project.config.root / PROJECT_FILE} has {names} as its "
                "contract; name the topic with --topic",
            )
    return downstream_of(meta, topics)


def _in_catalog(meta: MetaStore, topic: str) -> bool:
    """Whether the catalog knows ``topic`` (a topic made outside trunkline.yaml)."""
    try:
        meta.get_dataset(HUB_SYSTEM, topic)
    except NotFound:
        return False
    return True


def perf_contracts(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    records: Annotated[int, typer.Option(min=1000, help="Records per workload.")] = 1_000_000,
    batch: Annotated[int, typer.Option(min=1, help="Records per produce call.")] = 10_000,
    ack: Annotated[str, typer.Option(help="Ack level of the embedded hub.")] = "fsync",
    directory: Annotated[
        Path | None, typer.Option(help="Where to put the benchmark's files (a temp folder).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="A small run (for smoke tests).")] = False,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Also run the produce workloads on this Kafka cluster (host:port; "
            "scripts/services/kafka start prints one)."
        ),
    ] = None,
) -> None:
    """Contract validation throughput and produce overhead (with / without a contract)."""
    from trunkline.perf.contracts import run

    if ack not in ("fsync", "written"):
        raise bad_input(f"--ack: expected fsync or written, found {ack!r}")
    if bootstrap is not None:
        check_bootstrap("--bootstrap", bootstrap)
    sizes = {"records": 20_000, "batch": 5_000, "repeats": 1} if quick else {
        "records": records, "batch": batch}  # fmt: skip
    from trunkline.cli._perf import print_figures

    print_figures(run(directory, ack=ack, bootstrap=bootstrap, **sizes), as_json)
