"""``trunkline topic create|list|describe|alter|apply|delete``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from trunkline.cli._common import bad_input, out, print_json, project
from trunkline.config import TopicSpec, format_duration, format_size, load_settings
from trunkline.hub import TopicDescription

topic_app = typer.Typer(help="Create, inspect, change and delete topics.", no_args_is_help=True)

#: trunkline.yaml topic keys -> TopicConfig fields (the CLI speaks the project file's keys).
_FIELDS = {
    "partitions": "partitions",
    "retention": "retention_ms",
    "retention_bytes": "retention_bytes",
    "cleanup": "cleanup_policy",
    "segment_bytes": "segment_bytes",
    "segment_age": "segment_ms",
    "delete_retention": "delete_retention_ms",
    "min_compaction_lag": "min_compaction_lag_ms",
    "max_message_bytes": "max_message_bytes",
    "compression": "compression",
}

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="A topic setting as key=value with the keys of trunkline.yaml "
        "(e.g. retention=36h, cleanup=compact); repeatable.",
    ),
]


def _settings(
    pairs: list[str] | None, **shortcuts: str | int | None
) -> tuple[TopicSpec, frozenset[str]]:
    """Validate --set pairs and shortcut options with the project file's rules."""
    settings: list[tuple[str, str, str]] = []
    for name, value in shortcuts.items():
        if value is not None:
            settings.append((f"--{name.replace('_', '-')} {value}", name, str(value)))
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise bad_input(f"expected key=value in --set, found {pair!r}")
        settings.append((f"--set {pair}", key.strip(), value.strip()))
    spec, given = load_settings(settings, TopicSpec)
    unknown_to_hub = given - set(_FIELDS)
    if unknown_to_hub:
        raise bad_input(
            f"{', '.join(sorted(unknown_to_hub))} cannot be set on the command line; "
            f"settable keys: {', '.join(_FIELDS)}"
        )
    return spec, given


def _changes(spec: TopicSpec, given: frozenset[str]) -> dict[str, Any]:
    config = spec.to_topic_config()
    return {_FIELDS[key]: getattr(config, _FIELDS[key]) for key in given}


def _described(desc: TopicDescription) -> dict[str, Any]:
    config = desc.config
    return {
        "name": desc.name,
        "partitions": [
            {
                "partition": p.partition,
                "start_offset": p.start_offset,
                "end_offset": p.end_offset,
                "size_bytes": p.size_bytes,
                "segments": p.segments,
            }
            for p in desc.partitions
        ],
        "config": config.to_dict(),
        "records": desc.records,
        "size_bytes": sum(p.size_bytes or 0 for p in desc.partitions),
    }


@topic_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Topic name (Kafka's rules).")],
    partitions: Annotated[int | None, typer.Option(help="Number of partitions.")] = None,
    retention: Annotated[
        str | None, typer.Option(help="How long records are kept, e.g. 7d, or 'forever'.")
    ] = None,
    cleanup: Annotated[str | None, typer.Option(help="delete, compact or compact,delete.")] = None,
    settings: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create a topic: settings from trunkline.yaml if declared there, then the options."""
    proj = project(ctx)
    declared = proj.config.topics.get(name)
    spec, given = _settings(settings, partitions=partitions, retention=retention, cleanup=cleanup)
    config = proj.topic_config(name).with_changes(_changes(spec, given))
    desc = proj.create_topic(name, config)
    if as_json:
        print_json(_described(desc))
        return
    origin = " (declared in trunkline.yaml)" if declared is not None else ""
    out().print(
        f"created topic [bold]{name}[/bold]{origin}: {config.partitions} partition(s), "
        f"retention {format_duration(config.retention_ms)}, cleanup {config.cleanup_policy}"
    )


@topic_app.command("list")
def list_topics(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Topics with partitions, records, size and retention."""
    hub = project(ctx).hub
    described = [hub.describe_topic(name) for name in hub.list_topics()]
    if as_json:
        print_json([_described(d) for d in described])
        return
    table = Table("topic", "partitions", "records", "size", "retention", "cleanup")
    for d in described:
        size = sum(p.size_bytes or 0 for p in d.partitions)
        table.add_row(
            d.name,
            str(len(d.partitions)),
            f"{d.records:,}",
            format_size(size, exact=False),
            format_duration(d.config.retention_ms),
            str(d.config.cleanup_policy),
        )
    out().print(table)


@topic_app.command("describe")
def describe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Topic name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """A topic's settings and each partition's offsets and size."""
    desc = project(ctx).hub.describe_topic(name)
    if as_json:
        print_json(_described(desc))
        return
    config = desc.config
    console = out()
    console.print(f"[bold]{desc.name}[/bold]")
    for key, field in _FIELDS.items():
        value = getattr(config, field)
        if field.endswith("_ms"):
            shown = format_duration(value)
        elif field.endswith("bytes"):
            shown = format_size(value)
        else:
            shown = str(value)
        console.print(f"  {key}: {shown}")
    table = Table("partition", "start offset", "end offset", "records", "size", "segments")
    for p in desc.partitions:
        table.add_row(
            str(p.partition),
            str(p.start_offset),
            str(p.end_offset),
            f"{p.end_offset - p.start_offset:,}",
            format_size(p.size_bytes, exact=False),
            str(p.segments),
        )
    console.print(table)


@topic_app.command("alter")
def alter(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Topic name.")],
    settings: SetOption = None,
    partitions: Annotated[int | None, typer.Option(help="Grow to this many partitions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Change a topic's settings (partitions can only grow)."""
    spec, given = _settings(settings, partitions=partitions)
    if not given:
        raise bad_input("nothing to change: give --set key=value or --partitions N")
    desc = project(ctx).alter_topic(name, _changes(spec, given))
    if as_json:
        print_json(_described(desc))
        return
    out().print(f"altered topic [bold]{name}[/bold]: {', '.join(sorted(given))}")


@topic_app.command("apply")
def apply(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Create the topics declared in trunkline.yaml and bring existing ones to their settings."""
    changes = project(ctx).apply_topics()
    if as_json:
        print_json([{"topic": c.topic, "action": c.action, "changes": c.changes} for c in changes])
        return
    if not changes:
        out().print("trunkline.yaml declares no topics")
    for change in changes:
        detail = f" ({', '.join(sorted(change.changes))})" if change.action == "altered" else ""
        out().print(f"{change.action:>9} {change.topic}{detail}")


@topic_app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Topic name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a topic and all its records."""
    proj = project(ctx)
    desc = proj.hub.describe_topic(name)
    if not yes:
        typer.confirm(f"delete topic {name!r} and its {desc.records:,} record(s)?", abort=True)
    proj.delete_topic(name)
    out().print(f"deleted topic [bold]{name}[/bold]")
