"""``trunkline catalog list|show|sync``: the datasets trunkline knows and their lineage."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from trunkline.cli._common import bad_input, out, print_json, project
from trunkline.config import format_size
from trunkline.meta import Dataset, Direction, LineageEdge

catalog_app = typer.Typer(
    help="Systems, datasets, owners, stats and lineage.", no_args_is_help=True
)


def _dataset(d: Dataset) -> dict[str, Any]:
    return {
        "name": d.qualified_name,
        "system": d.system,
        "kind": d.kind,
        "owner": d.owner,
        "description": d.description,
        "tags": list(d.tags),
        "rows": d.rows,
        "size_bytes": d.size_bytes,
        "stats_updated_at": d.stats_updated_at,
        "schema_ref": None if d.schema_ref is None else str(d.schema_ref),
        "columns": None
        if d.columns is None
        else [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in d.columns],
    }


@catalog_app.command("list")
def list_datasets(
    ctx: typer.Context,
    system: Annotated[str | None, typer.Option(help="Only datasets of this system.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Every dataset: the hub's topics (kept in sync) and registered systems' tables."""
    proj = project(ctx)
    proj.sync_catalog()
    datasets = proj.meta.list_datasets(system=system)
    if as_json:
        print_json([_dataset(d) for d in datasets])
        return
    table = Table("dataset", "kind", "owner", "rows", "size", "description")
    for d in datasets:
        table.add_row(
            d.qualified_name,
            d.kind,
            d.owner or "-",
            "-" if d.rows is None else f"{d.rows:,}",
            format_size(d.size_bytes, exact=False) if d.size_bytes is not None else "-",
            d.description or "",
        )
    out().print(table)


@catalog_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="system.name, or a unique short name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """One dataset with its owner, stats, schema and lineage."""
    proj = project(ctx)
    proj.sync_catalog()
    dataset = proj.meta.resolve(name)
    upstream = proj.meta.upstream(dataset)
    downstream = proj.meta.downstream(dataset)
    data = _dataset(dataset)
    data["upstream"] = [f"{e.source} via {e.job_kind} {e.job}" for e in upstream]
    data["downstream"] = [f"{e.target} via {e.job_kind} {e.job}" for e in downstream]
    if as_json:
        print_json(data)
        return
    console = out()
    console.print(f"[bold]{dataset.qualified_name}[/bold] ({dataset.kind})")
    for key in ("owner", "description", "tags", "rows", "size_bytes", "stats_updated_at"):
        value = data[key]
        if value not in (None, "", []):
            console.print(f"  {key}: {value}", markup=False)
    if dataset.columns:
        columns = Table("column", "type", "nullable")
        for c in dataset.columns:
            columns.add_row(c.name, c.type, "yes" if c.nullable else "no")
        console.print(columns)
    console.print(f"  upstream: {', '.join(data['upstream']) or '-'}")
    console.print(f"  downstream: {', '.join(data['downstream']) or '-'}")


def _edge(e: LineageEdge) -> dict[str, Any]:
    return {
        "source": str(e.source),
        "target": str(e.target),
        "job": e.job,
        "job_kind": e.job_kind,
        "first_seen": e.first_seen,
        "last_seen": e.last_seen,
        "last_run_id": e.last_run_id,
    }


def lineage(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="system.name, or a unique short name.")],
    upstream: Annotated[
        bool, typer.Option("--upstream", help="Only what feeds the dataset.")
    ] = False,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="Only what the dataset feeds.")
    ] = False,
    depth: Annotated[
        int | None, typer.Option(min=1, help="At most this many hops (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Where a dataset's data comes from and where it goes: every edge, hop by hop, with the
    connector or flow that moves it (``trunkline lineage warehouse.main.orders``)."""
    if upstream and downstream:
        raise bad_input("--upstream and --downstream exclude each other; give neither for both")
    proj = project(ctx)
    proj.sync_catalog()
    dataset = proj.meta.resolve(name)
    directions: list[Direction] = ["upstream", "downstream"]
    if upstream or downstream:
        directions = ["upstream" if upstream else "downstream"]
    walks = {d: proj.meta.lineage(dataset, direction=d, depth=depth) for d in directions}
    if as_json:
        print_json(
            {"dataset": dataset.qualified_name, **{d: [_edge(e) for e in walks[d]] for d in walks}}
        )
        return
    console = out()
    console.print(f"[bold]{dataset.qualified_name}[/bold] ({dataset.kind})")
    for direction, edges in walks.items():
        console.print(f"{direction}:")
        if not edges:
            console.print("  -")
        for e in edges:
            console.print(f"  {e.source} -> {e.target}  ({e.job_kind} {e.job})", markup=False)


@catalog_app.command("sync")
def sync(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Register every hub topic as a dataset, with fresh stats; forget deleted topics."""
    datasets = project(ctx).sync_catalog()
    if as_json:
        print_json([_dataset(d) for d in datasets])
        return
    out().print(f"catalog holds {len(datasets)} topic(s) of the hub")
