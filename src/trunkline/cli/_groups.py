"""``trunkline group list|describe|reset|delete``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from trunkline.cli._common import bad_input, out, print_json, project
from trunkline.hub import GroupDescription

group_app = typer.Typer(help="Consumer groups: members, offsets, lag.", no_args_is_help=True)


def _described(desc: GroupDescription) -> dict[str, object]:
    return {
        "group": desc.group,
        "state": desc.state,
        "lag": desc.lag,
        "members": [
            {
                "member_id": m.member_id,
                "client": m.client,
                "assignment": [f"{tp.topic}[{tp.partition}]" for tp in m.assignment],
                "last_heartbeat_ms": m.last_heartbeat_ms,
            }
            for m in desc.members
        ],
        "offsets": [
            {
                "topic": o.topic,
                "partition": o.partition,
                "committed": o.committed,
                "end_offset": o.end_offset,
                "lag": o.lag,
            }
            for o in desc.offsets
        ],
    }


@group_app.command("list")
def list_groups(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Groups with their state, members and total lag."""
    hub = project(ctx).hub
    described = [hub.describe_group(g) for g in hub.list_groups()]
    if as_json:
        print_json([_described(d) for d in described])
        return
    table = Table("group", "state", "members", "lag")
    for d in described:
        table.add_row(d.group, d.state, str(len(d.members)), f"{d.lag:,}")
    out().print(table)


@group_app.command("describe")
def describe(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Members and their partitions, committed offsets and lag per partition."""
    desc = project(ctx).hub.describe_group(group)
    if as_json:
        print_json(_described(desc))
        return
    console = out()
    console.print(f"[bold]{desc.group}[/bold]: {desc.state}, lag {desc.lag:,}")
    members = Table("member", "client", "partitions")
    for m in desc.members:
        parts = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in m.assignment)
        members.add_row(m.member_id, m.client, parts or "-")
    if desc.members:
        console.print(members)
    offsets = Table("topic", "partition", "committed", "end offset", "lag")
    for o in desc.offsets:
        shown = "-" if o.committed is None else str(o.committed)
        offsets.add_row(o.topic, str(o.partition), shown, str(o.end_offset), f"{o.lag:,}")
    console.print(offsets)


@group_app.command("reset")
def reset(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group name.")],
    topic: Annotated[str, typer.Option(help="Topic whose offsets to move.")],
    to_earliest: Annotated[bool, typer.Option(help="To the oldest retained record.")] = False,
    to_latest: Annotated[bool, typer.Option(help="To the end (skip everything).")] = False,
    to_offset: Annotated[
        int | None, typer.Option(help="To this offset in every partition.")
    ] = None,
    to_datetime: Annotated[
        str | None,
        typer.Option(help="To the first record at or after this ISO time, e.g. 2026-11-25T10:00Z."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the new offsets as JSON.")] = False,
) -> None:
    """Move a group's committed offsets (only while it has no live members)."""
    chosen = [
        name
        for name, given in (
            ("--to-earliest", to_earliest),
            ("--to-latest", to_latest),
            ("--to-offset", to_offset is not None),
            ("--to-datetime", to_datetime is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        found = ", ".join(chosen) if chosen else "none"
        raise bad_input(
            "expected exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime; "
            f"found {found}"
        )
    hub = project(ctx).hub
    if to_datetime is not None:
        try:
            moment = datetime.fromisoformat(to_datetime.replace("Z", "+00:00"))
        except ValueError:
            raise bad_input(
                f"--to-datetime: expected an ISO 8601 time such as 2026-11-25T10:00:00Z, "
                f"found {to_datetime!r}"
            ) from None
        if moment.tzinfo is None:
            raise bad_input(f"--to-datetime: add a time zone (Z or +01:00) to {to_datetime!r}")
        offsets = hub.reset_group(group, topic, int(moment.timestamp() * 1000), by_time=True)
    elif to_offset is not None:
        offsets = hub.reset_group(group, topic, to_offset)
    else:
        offsets = hub.reset_group(group, topic, "earliest" if to_earliest else "latest")
    if as_json:
        print_json({"group": group, "topic": topic, "offsets": offsets})
        return
    shown = ", ".join(f"{p}: {o}" for p, o in sorted(offsets.items()))
    out().print(f"reset {group} on {topic}: {shown}")


@group_app.command("delete")
def delete(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group name.")],
) -> None:
    """Forget a group and its committed offsets (only while it has no live members)."""
    project(ctx).hub.delete_group(group)
    out().print(f"deleted group {group}")
