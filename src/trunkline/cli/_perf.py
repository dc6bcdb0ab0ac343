"""``trunkline perf ...``: benchmarks that measure their baseline in the same run."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from trunkline.cli._common import bad_input, check_bootstrap, out

perf_app = typer.Typer(help="Benchmarks; each measures its baseline in the same run.")

#: Sizes of a small run, for smoke tests.
QUICK = {"mb_1k": 16, "records_100b": 50_000, "latency_seconds": 1.0, "repeats": 1}


class Backend(StrEnum):
    EMBEDDED = "embedded"
    KAFKA = "kafka"


def print_figures(figures: dict[str, Any], as_json: bool) -> None:
    """Figures as one JSON object, or as a table (nested objects as dotted rows)."""
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table("figure", "value")
    for key, value in figures.items():
        if isinstance(value, dict):
            for inner, shown in value.items():
                if not isinstance(shown, dict | list):
                    table.add_row(f"{key}.{inner}", str(shown))
        elif not isinstance(value, list):
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    out().print(table)


@perf_app.command("hub")
def perf_hub(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    backend: Annotated[Backend, typer.Option(help="Which hub to measure.")] = Backend.EMBEDDED,
    compare: Annotated[
        bool, typer.Option(help="Measure both hubs in one run and add embedded/kafka ratios.")
    ] = False,
    bootstrap: Annotated[
        str | None,
        typer.Option(envvar="TRUNKLINE_KAFKA_BOOTSTRAP", help="Kafka's host:port."),
    ] = None,
    ack: Annotated[str, typer.Option(help="Ack level of the embedded hub: fsync or written.")] = (
        "fsync"
    ),
    directory: Annotated[
        Path | None, typer.Option(help="Where to put the benchmark's files (a temp folder).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="A small run (for smoke tests).")] = False,
) -> None:
    """Hub throughput and latency, with the raw-disk ceiling measured alongside."""
    from trunkline.perf.hub import run_compare, run_embedded, run_kafka

    if ack not in ("fsync", "written"):
        raise typer.BadParameter(f"expected fsync or written, found {ack!r}", param_hint="--ack")
    needs_kafka = compare or backend is Backend.KAFKA
    if needs_kafka and not bootstrap:
        raise bad_input(
            "--bootstrap host:port (or TRUNKLINE_KAFKA_BOOTSTRAP) is needed to measure Kafka; "
            "scripts/services/kafka start prints one"
        )
    if bootstrap is not None and needs_kafka:
        check_bootstrap("--bootstrap", bootstrap)
    sizes: dict[str, Any] = dict(QUICK) if quick else {}
    if compare:
        assert bootstrap is not None
        figures = run_compare(bootstrap, directory, ack=ack, **sizes)
    elif backend is Backend.KAFKA:
        assert bootstrap is not None
        figures = run_kafka(bootstrap, directory, **sizes)
    else:
        figures = run_embedded(directory, ack=ack, **sizes)
    print_figures(figures, as_json)


@perf_app.command("cdc")
def perf_cdc(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dsn: Annotated[
        str | None,
        typer.Option(
            envvar="TRUNKLINE_POSTGRES_DSN",
            help="A PostgreSQL server with wal_level=logical where a scratch database may be "
            "created (scripts/services/postgres start prints one).",
        ),
    ] = None,
    rows: Annotated[int, typer.Option(min=1000, help="Rows of the snapshot table.")] = 1_000_000,
    stream_rows: Annotated[int, typer.Option(min=1000, help="Changes to stream.")] = 1_000_000,
    repeats: Annotated[
        int,
        typer.Option(
            min=1,
            help="Runs per figure (median): the snapshot; trunkline and dlt end to end, "
            "alternately.",
        ),
    ] = 3,
    latency_seconds: Annotated[
        float, typer.Option(min=1, help="How long to write at 1,000 rows/s.")
    ] = 10.0,
    peer: Annotated[bool, typer.Option(help="Load the same table with dlt, side by side.")] = True,
    big: Annotated[
        bool, typer.Option("--big", help="Also measure memory while snapshotting 5M rows.")
    ] = False,
    directory: Annotated[
        Path | None, typer.Option(help="Where to put the benchmark's files (a temp folder).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="A small run (for smoke tests).")] = False,
) -> None:
    """Postgres CDC: snapshot vs COPY, streaming vs pg_recvlogical, latency, dlt, memory."""
    from trunkline.perf.cdc import run_cdc_benchmark

    if not dsn:
        raise bad_input(
            "--dsn postgresql://... (or TRUNKLINE_POSTGRES_DSN) is needed: a server with "
            "wal_level=logical; scripts/services/postgres start prints one"
        )
    if quick:
        rows, stream_rows, repeats, latency_seconds = 20_000, 20_000, 1, 2.0
    figures = run_cdc_benchmark(
        dsn,
        directory,
        rows=rows,
        stream_rows=stream_rows,
        repeats=repeats,
        latency_seconds=latency_seconds,
        peer=peer,
        big_rows=5_000_000 if big else 0,
    )
    print_figures(figures, as_json)
