"""``trunkline schema register|get|list|check|diff|delete|compat`` and ``registry serve``.

The commands work on the project's metadata store directly (no server needed). Exit codes:
0 success (``check``: compatible), 1 a failure at run time or an incompatible schema
(``register`` and ``check`` print one line per problem), 2 bad input (a malformed schema,
an unknown subject name format, version or level) — in which case nothing was written.

A schema file's type is ``--type`` when given; otherwise a ``.avsc`` file is Avro, a file
whose document has ``$schema`` is JSON Schema, and anything else is Avro (Confluent's default).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from trunkline.cli._common import EXIT_FAILURE, bad_input, err, out, print_json, project
from trunkline.errors import (
    IncompatibleSchema,
    InvalidCompatibility,
    InvalidSchema,
    InvalidSubject,
    InvalidVersion,
    SchemaError,
)
from trunkline.schemas import (
    Compatibility,
    ParsedSchema,
    RegisteredSchema,
    Schema,
    SchemaReference,
    SchemaRegistry,
    SchemaType,
    diff,
    parse_version,
)
from trunkline.schemas.diff import unbroken

schema_app = typer.Typer(
    help="Register, inspect, check and evolve schemas (the schema registry).",
    no_args_is_help=True,
)
registry_app = typer.Typer(help="The schema registry's HTTP server.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
TypeOption = Annotated[
    str | None,
    typer.Option("--type", "-t", help="avro or json (default: from the file, see the docs)."),
]
ReferenceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--reference",
        "-r",
        help="A schema reference as name=subject:version (version may be 'latest'); repeatable.",
    ),
]

#: Errors that mean the input was wrong (exit 2), not that something failed.
_BAD_INPUT = (InvalidSchema, InvalidSubject, InvalidVersion, InvalidCompatibility)


@contextlib.contextmanager
def _exit_codes() -> Iterator[None]:
    try:
        yield
    except _BAD_INPUT as exc:
        raise bad_input(str(exc)) from exc
    except IncompatibleSchema as exc:
        err().print(f"[bold red]error[/bold red]: {escape(exc.args[0].split(':')[0])}:")
        for message in exc.messages:
            err().print(f"  - {escape(message)}", highlight=False)
        raise typer.Exit(EXIT_FAILURE) from None


def _registry(ctx: typer.Context) -> SchemaRegistry:
    return project(ctx).registry


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad_input(f"schema file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise bad_input(f"cannot read schema file {path}: {exc}") from None


def _guess_type(path: Path, text: str) -> SchemaType:
    if path.suffix.lower() == ".avsc":
        return SchemaType.AVRO
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return SchemaType.AVRO  # parsing reports the error
    if isinstance(document, dict) and "$schema" in document:
        return SchemaType.JSON
    return SchemaType.AVRO


def _references(values: list[str] | None) -> tuple[SchemaReference, ...]:
    refs = []
    for value in values or []:
        name, eq, rest = value.partition("=")
        subject, colon, version = rest.rpartition(":")
        if not (eq and colon and name and subject and version):
            raise bad_input(f"expected --reference name=subject:version, found {value!r}")
        try:
            number = parse_version(version)
        except InvalidVersion as exc:
            raise bad_input(f"--reference {value!r}: {exc}") from None
        refs.append(SchemaReference(name, subject, number))
    return tuple(refs)


def _schema(path: Path, schema_type: str | None, references: list[str] | None) -> Schema:
    text = _read(path)
    kind = SchemaType.parse(schema_type) if schema_type else _guess_type(path, text)
    return Schema(text, kind, _references(references))


def _described(found: RegisteredSchema) -> dict[str, Any]:
    return {
        "subject": found.subject,
        "version": found.version,
        "id": found.id,
        "schemaType": found.schema_type.value,
        "references": [ref.to_dict() for ref in found.references],
        "deleted": found.deleted,
        "schema": found.text,
    }


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2)
    except json.JSONDecodeError:
        return text


@schema_app.command("register")
def register(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Subject, e.g. orders-value.")],
    file: Annotated[Path, typer.Argument(help="Schema file ('-' reads stdin).")],
    schema_type: TypeOption = None,
    references: ReferenceOption = None,
    normalize: Annotated[
        bool, typer.Option(help="Store the canonical form instead of the text as written.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Register a schema under a subject (checked against the subject's compatibility level).

    A schema already registered under the subject returns its version; nothing is added.
    """
    with _exit_codes():
        schema = _schema(file, schema_type, references)
        found = _registry(ctx).register(subject, schema, normalize=normalize)
    if as_json:
        print_json(_described(found))
        return
    out().print(
        f"[bold]{escape(subject)}[/bold] version {found.version} "
        f"(schema id {found.id}, {found.schema_type})"
    )


@schema_app.command("get")
def get(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Subject.")],
    version: Annotated[str, typer.Option(help="Version number or 'latest'.")] = "latest",
    deleted: Annotated[bool, typer.Option(help="Also find soft-deleted versions.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show one version of a subject: id, type, references and the schema."""
    with _exit_codes():
        found = _registry(ctx).get_version(subject, version, deleted=deleted)
    if as_json:
        print_json(_described(found))
        return
    state = " (soft-deleted)" if found.deleted else ""
    console = out()
    console.print(
        f"[bold]{escape(subject)}[/bold] version {found.version}{state}: schema id {found.id}, "
        f"{found.schema_type}"
    )
    for ref in found.references:
        console.print(f"  references {escape(ref.name)} = {escape(ref.subject)}:{ref.version}")
    console.print(escape(_pretty(found.text)))


@schema_app.command("list")
def list_subjects(
    ctx: typer.Context,
    deleted: Annotated[bool, typer.Option(help="Include soft-deleted versions.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Subjects with their versions and the latest schema's id and type."""
    registry = _registry(ctx)
    rows: list[dict[str, Any]] = []
    with _exit_codes():
        live = set(registry.subjects())
        for subject in registry.subjects(deleted=deleted):
            versions = registry.versions(subject, deleted=deleted)
            latest = registry.get_version(subject, versions[-1], deleted=True)
            rows.append(
                {
                    "subject": subject,
                    "versions": versions,
                    "latest": latest.version,
                    "id": latest.id,
                    "schemaType": latest.schema_type.value,
                    "deleted": subject not in live,
                }
            )
    if as_json:
        print_json(rows)
        return
    if not rows:
        out().print("no subjects registered")
        return
    table = Table("subject", "versions", "latest", "id", "type")
    for row in rows:
        table.add_row(
            escape(row["subject"]),
            ", ".join(map(str, row["versions"])),
            str(row["latest"]),
            str(row["id"]),
            row["schemaType"],
        )
    out().print(table)


@schema_app.command("check")
def check(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Subject.")],
    file: Annotated[Path, typer.Argument(help="Schema file ('-' reads stdin).")],
    schema_type: TypeOption = None,
    references: ReferenceOption = None,
    version: Annotated[
        str | None,
        typer.Option(help="Compare with this version only (default: as registering would)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Would the schema be accepted? Exit 0 compatible, 1 incompatible, 2 bad input."""
    with _exit_codes():
        schema = _schema(file, schema_type, references)
        report = _registry(ctx).check(subject, schema, version=version)
    if as_json:
        print_json(
            {
                "is_compatible": report.compatible,
                "compatibility": report.compatibility.value,
                "messages": list(report.messages),
            }
        )
    elif report.compatible:
        out().print(f"compatible with {escape(subject)} ({report.compatibility})")
    else:
        out().print(
            f"[bold red]incompatible[/bold red] with {escape(subject)} ({report.compatibility}):"
        )
        for message in report.messages:
            out().print(f"  - {escape(message)}")
    if not report.compatible:
        raise typer.Exit(EXIT_FAILURE)


def _side(
    registry: SchemaRegistry, subject: str, what: str, schema_type: str | None
) -> tuple[str, ParsedSchema]:
    """A version of the subject (number or 'latest') or a schema file, parsed."""
    path = Path(what)
    if path.is_file() or what == "-":
        return str(path), registry.parse(_schema(path, schema_type, None))
    try:
        number = parse_version(what)
    except InvalidVersion:
        raise bad_input(
            f"{what!r} is neither a version of {subject!r} ('latest' or a number) nor a schema file"
        ) from None
    found = registry.get_version(subject, number, deleted=True)
    return f"version {found.version}", registry.parsed(found.id)


@schema_app.command("diff")
def diff_command(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Subject.")],
    old: Annotated[str, typer.Argument(help="Old side: a version ('latest', 3) or a file.")],
    new: Annotated[str, typer.Argument(help="New side: a version or a file.")],
    schema_type: TypeOption = None,
    as_json: JsonOption = False,
) -> None:
    """The changes from OLD to NEW, and which compatibility levels each one breaks."""
    registry = _registry(ctx)
    with _exit_codes():
        old_name, old_schema = _side(registry, subject, old, schema_type)
        new_name, new_schema = _side(registry, subject, new, schema_type)
        level, policy = registry.effective(subject)
        changes = diff(old_schema, new_schema, policy)
    holds = unbroken(changes)
    if as_json:
        print_json(
            {
                "old": old_name,
                "new": new_name,
                "changes": [
                    {
                        "rule": c.rule,
                        "path": c.path,
                        "message": c.message,
                        "breaks": [broken.value for broken in c.breaks],
                    }
                    for c in changes
                ],
                "compatible_with": [level.value for level in holds],
                "subject_compatibility": level.value,
            }
        )
        return
    console = out()
    console.print(f"{escape(subject)}: {escape(old_name)} -> {escape(new_name)}")
    if not changes:
        same = old_schema.canonical == new_schema.canonical
        console.print("  no changes" if same else "  no breaking changes")
    for change in changes:
        broken = ", ".join(level.value for level in change.breaks) or "nothing"
        console.print(
            f"  {escape(change.rule)} at {escape(change.path)}: {escape(change.message)}\n"
            f"      breaks: {broken}"
        )
    shown = ", ".join(held.value for held in holds if held is not Compatibility.NONE)
    console.print(f"compatible under: {shown or 'NONE only'}")
    verdict = "holds" if level in holds else "[bold red]is broken[/bold red]"
    console.print(f"the subject's level {level} {verdict}")


@schema_app.command("delete")
def delete(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Subject.")],
    version: Annotated[
        str | None, typer.Option(help="Delete this version only (a number or 'latest').")
    ] = None,
    permanent: Annotated[
        bool, typer.Option(help="Remove for good what was soft-deleted before.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Soft-delete a subject or one version; --permanent removes soft-deleted ones for good."""
    registry = _registry(ctx)
    what = f"{subject!r}" if version is None else f"{subject!r} version {version}"
    if permanent and not yes:
        typer.confirm(f"permanently delete {what}? This cannot be undone", abort=True)
    with _exit_codes():
        if version is None:
            versions = registry.delete_subject(subject, permanent=permanent)
        else:
            versions = [registry.delete_version(subject, version, permanent=permanent)]
    kind = "permanently deleted" if permanent else "soft-deleted"
    out().print(f"{kind} {escape(subject)} version(s) {', '.join(map(str, versions))}")


@schema_app.command("compat")
def compat(
    ctx: typer.Context,
    subject: Annotated[
        str | None, typer.Argument(help="Subject (leave out for the global level).")
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(
            help="Set the level: BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, "
            "FULL, FULL_TRANSITIVE or NONE."
        ),
    ] = None,
    json_policy: Annotated[
        str | None,
        typer.Option(help="Set how JSON Schema treats added properties: STRICT or LENIENT."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show or set the compatibility level of a subject (or the global one)."""
    registry = _registry(ctx)
    with _exit_codes():
        if level is not None or json_policy is not None:
            registry.set_config(subject, compatibility=level, json_policy=json_policy)
        if subject is None:
            config = registry.get_config()
            current, policy, origin = config.compatibility, config.json_policy, "global"
        else:
            current, policy = registry.effective(subject)
            try:
                registry.get_config(subject)
                origin = "set on the subject"
            except SchemaError:
                origin = "from the global config"
    assert current is not None and policy is not None
    if as_json:
        print_json(
            {
                "subject": subject,
                "compatibility": current.value,
                "jsonCompatibilityPolicy": policy.value,
                "origin": origin,
            }
        )
        return
    name = escape(subject) if subject is not None else "global"
    out().print(f"{name}: {current} (JSON policy {policy}; {origin})")


@registry_app.command("serve")
def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8081,
    host: Annotated[
        str,
        typer.Option(help="Address to bind; beyond loopback it needs TRUNKLINE_API_TOKEN."),
    ] = "127.0.0.1",
    max_body_bytes: Annotated[
        int, typer.Option(min=1024, help="Largest request body accepted (413 beyond).")
    ] = 1024 * 1024,
) -> None:
    """Serve the Confluent-compatible schema registry API at the root paths."""
    from trunkline.api import TOKEN_ENV, check_exposure
    from trunkline.api import serve as serve_api

    token = os.environ.get(TOKEN_ENV) or None
    check_exposure(host, token)
    registry = _registry(ctx)
    auth = "token required" if token else "no token"
    err().print(f"schema registry on http://{host}:{port} ({auth}); Ctrl-C stops it")
    serve_api(registry, host=host, port=port, token=token, max_body_bytes=max_body_bytes)
