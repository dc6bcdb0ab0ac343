"""``trunkline run``, ``trunkline status`` and ``trunkline dlq list|show|replay``."""

from __future__ import annotations

import json
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.table import Table

from trunkline.cli._common import EXIT_FAILURE, bad_input, err, out, print_json, project
from trunkline.config import parse_duration, parse_size
from trunkline.connectors.base import dead_letter_topic
from trunkline.errors import ConfigError, TopicNotFound

dlq_app = typer.Typer(
    help="Dead letters: records a connector could not process.", no_args_is_help=True
)


def run(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", help="Run only this source, sink or continuous flow (repeat for several)."
        ),
    ] = None,
    memory: Annotated[
        str, typer.Option(help="In-flight memory budget of all sinks of this process.")
    ] = "256MiB",
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port (0: any free port)."),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address of the metrics endpoint.")
    ] = "127.0.0.1",
    lease_ttl: Annotated[
        str,
        typer.Option(
            help="With a PostgreSQL metadata store: how long a lease lasts without a "
            "heartbeat, i.e. how soon another process takes over a dead one's sources."
        ),
    ] = "10s",
) -> None:
    """Run every source, sink and continuous flow until SIGTERM or Ctrl-C, which drain cleanly."""
    from trunkline.runtime import Runner, RunOptions

    try:
        budget = parse_size(memory)
    except ConfigError as exc:
        raise bad_input(f"--memory: {exc}") from None
    try:
        ttl = parse_duration(lease_ttl) / 1000
    except ConfigError as exc:
        raise bad_input(f"--lease-ttl: {exc}") from None
    if not 1 <= ttl <= 3600:
        raise bad_input(f"--lease-ttl: expected 1s to 1h, found {lease_ttl!r}")
    proj = project(ctx)
    if not proj.config.sources and not proj.config.sinks:
        raise bad_input("the project has no sources or sinks to run (see trunkline.yaml)")
    address = None if metrics_port is None else (metrics_host, metrics_port)
    options = RunOptions(
        only=tuple(only or ()), memory=budget, metrics_address=address, lease_ttl=ttl
    )
    runner = Runner(proj, options)

    def stop(signum: int, frame: FrameType | None) -> None:
        err().print(f"{signal.Signals(signum).name}: draining and committing (again to quit now)")
        runner.stop()
        # A second signal ends the process at once.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    names = ", ".join(p.name for p in runner.tasks) or "nothing"
    err().print(f"running {names} (run {runner.run_id})")
    try:
        runner.start()
        if runner.metrics_url:
            err().print(f"metrics: {runner.metrics_url}")
        runner.wait()
    finally:
        runner.shutdown()
    failed = runner.failed
    if failed:
        for task in runner.tasks:
            if task.name in failed:
                err().print(f"{task.kind} {task.name} failed: {task.metrics.last_error}")
        raise typer.Exit(EXIT_FAILURE)


def _lag_origin(rows: list[dict[str, Any]]) -> str:
    """Where a pipeline's lag comes from: sources not keeping up, or sinks after the hub."""
    sink_lag = sum(r["lag_records"] or 0 for r in rows if r["kind"] == "sink")
    source_backlog = sum(r["source_backlog"] or 0 for r in rows if r["kind"] == "source")
    slow = [
        r["name"]
        for r in rows
        if r["kind"] == "sink" and (r["busy"] > 0.8 or r["backpressured"] > 0.2)
    ]
    if sink_lag and slow:
        return f"sinks after the hub ({', '.join(slow)} busy or backpressured)"
    if sink_lag:
        return "the hub: records wait for sinks that are not running or idle"
    if source_backlog:
        return "the sources: input not read yet"
    return "none"


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """What every connector is doing, in every `trunkline run` process of the project.

    With a shared (PostgreSQL) metadata store, the processes of every machine; else this
    machine's.
    """
    from trunkline.runtime import read_status, shared_store, state_dir
    from trunkline.runtime._lag import lag_origin, pipelines, status_row

    proj = project(ctx)
    meta = proj.meta if shared_store(proj) else None
    processes = read_status(state_dir(proj) / "status", meta)
    configured = [("source", n, s.type) for n, s in proj.config.sources.items()]
    configured += [("sink", n, s.type) for n, s in proj.config.sinks.items()]
    configured += [("flow", n, "flow") for n, f in proj.config.flows.items() if f.freshness]
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for process in processes:
        label = f"{process.document.get('host')}:{process.document.get('pid')}"
        for task in process.tasks:
            key = (task["kind"], task["name"])
            row = status_row(task, process.alive, label)
            current = best.get(key)
            # A live process that runs the task wins over a standby, which wins over history.
            rank = (process.alive, task.get("state") not in ("standby",))
            if current is None or rank > current["_rank"]:
                best[key] = {**row, "_rank": rank}
    rows = []
    for kind, name, type_name in configured:
        found = best.get((kind, name))
        if found is None:
            found = {"name": name, "kind": kind, "type": type_name, "state": "never run"}
        rows.append({k: v for k, v in found.items() if k != "_rank"})
    full_rows = [r for r in rows if "rows_per_s" in r]
    keyed = {(r["kind"], r["name"]): r for r in rows}
    lags = [lag_origin(p, keyed) for p in pipelines(proj.config)]
    # Processes that died (killed, machine lost) rather than stopped.
    gone = [
        {
            "host": p.document.get("host"),
            "pid": p.document.get("pid"),
            "run_id": p.document.get("run_id"),
            "updated": p.document.get("updated"),
        }
        for p in processes
        if not p.alive and p.document.get("state") == "running"
    ]
    running = [
        {
            "host": p.document.get("host"),
            "pid": p.document.get("pid"),
            "alive": p.alive,
            "metrics_url": p.document.get("metrics_url", ""),
            "updated": p.document.get("updated"),
        }
        for p in processes
        if p.alive
    ]
    summary = {
        "processes": running,
        "gone": gone,
        "connectors": rows,
        "lag_origin": _lag_origin(full_rows),
        "pipelines": lags,
    }
    if as_json:
        print_json(summary)
        return
    table = Table("connector", "state", "rows/s", "lag", "busy/bp/idle", "checkpoint", "dlq")
    errors = []
    for r in rows:
        label = f"{r['name']} ({r['kind']})"
        if "rows_per_s" not in r:
            table.add_row(label, r["state"], *["-"] * 5)
            continue
        lag = "-"
        if r["kind"] == "source" and r["source_backlog"] is not None:
            lag = f"{int(r['source_backlog']):,} B to read"
        elif r["lag_records"] is not None:
            lag = f"{int(r['lag_records']):,} ({r['lag_seconds'] or 0:.1f}s)"
        shares = f"{r['busy']:.0%}/{r['backpressured']:.0%}/{r['idle']:.0%}"
        ckpt = "-"
        if r["checkpoint_seconds"] is not None:
            ckpt = f"{r['checkpoint_seconds'] * 1000:.0f}ms {int(r['checkpoint_bytes'] or 0)}B"
        table.add_row(
            label,
            r["state"],
            f"{r['rows_per_s']:,.0f}",
            lag,
            shares,
            ckpt,
            f"{int(r['dead_letters']):,}",
        )
        if r["last_error"]:
            errors.append(f"{r['name']}: {r['last_error']}")
    console = out()
    console.print(table)
    for line in errors:
        console.print(f"last error of {line}")
    console.print(f"processes running: {len(running)}; lag comes from: {summary['lag_origin']}")
    for shown in running:
        console.print(f"process {shown['host']}:{shown['pid']} is running", markup=False)
    for shown in gone:
        console.print(f"process {shown['host']}:{shown['pid']} is gone", markup=False)
    for lagging in lags:
        if lagging["origin"] != "none":
            line = f"lag of {lagging['pipeline']}: {lagging['origin']} - {lagging['why']}"
            console.print(line, markup=False)


# -- dead letters --------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Dead-letter topics with how many records each holds and the latest error."""
    from trunkline.runtime import dead_letter_topics, read_dead_letters

    hub = project(ctx).hub
    found: list[dict[str, Any]] = []
    for topic in dead_letter_topics(hub):
        described = hub.describe_topic(topic)
        latest = None
        for partition in described.partitions:
            if partition.end_offset > partition.start_offset:
                entries = list(
                    read_dead_letters(
                        hub,
                        topic,
                        start=partition.end_offset - 1,
                        limit=1,
                        partitions=(partition.partition,),
                    )
                )
                if entries and (latest is None or entries[0].timestamp > latest.timestamp):
                    latest = entries[0]
        found.append(
            {
                "connector": topic.removesuffix(".dlq"),
                "topic": topic,
                "records": described.records,
                "latest_error": latest.error if latest else "",
                "latest_origin": latest.origin if latest else "",
            }
        )
    if as_json:
        print_json(found)
        return
    table = Table("connector", "topic", "records", "latest error", "from")
    for f in found:
        table.add_row(
            f["connector"],
            f["topic"],
            f"{f['records']:,}",
            f["latest_error"][:80],
            f["latest_origin"],
        )
    out().print(table)


class ShowFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    RAW = "raw"


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    connector: Annotated[
        str, typer.Argument(help="The source or sink whose dead letters to show.")
    ],
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Start at this offset (per partition).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print only the original values, one per line.")
    ] = False,
) -> None:
    """Dead letters of a connector: the error, where each came from, the original bytes."""
    from trunkline.runtime import read_dead_letters

    hub = project(ctx).hub
    topic = dead_letter_topic(connector)
    try:
        entries = list(read_dead_letters(hub, topic, start=offset, limit=limit))
    except TopicNotFound:
        raise bad_input(f"{connector!r} has no dead letters (no topic {topic!r})") from None
    if raw:
        for entry in entries:
            sys.stdout.buffer.write((entry.value or b"") + b"\n")
        return
    if as_json:
        print_json(
            [
                {
                    "partition": e.partition,
                    "offset": e.offset,
                    "timestamp": e.timestamp,
                    "error": e.error,
                    "stage": e.stage,
                    "origin": e.origin,
                    "headers": e.headers,
                    "key": None if e.key is None else e.key.decode("utf-8", "replace"),
                    "value": None if e.value is None else e.value.decode("utf-8", "replace"),
                }
                for e in entries
            ]
        )
        return
    table = Table("offset", "stage", "from", "error", "value")
    for e in entries:
        shown = "" if e.value is None else e.value[:60].decode("utf-8", "replace")
        table.add_row(f"{e.partition}@{e.offset}", e.stage, e.origin, e.error[:80], shown)
    out().print(table)


class ReplayTarget(StrEnum):
    RETRY = "retry"
    TOPIC = "topic"


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    connector: Annotated[str, typer.Argument(help="The sink whose dead letters to replay.")],
    to: Annotated[
        ReplayTarget,
        typer.Option(
            help="retry: the sink runs on them again (its retry topic); topic: back into "
            "their original topic, for every reader."
        ),
    ] = ReplayTarget.RETRY,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Replay dead letters not replayed yet (the sink picks them up while it runs)."""
    from trunkline.runtime import replay

    started = time.perf_counter()
    moved = replay(project(ctx).hub, connector, to=to.value)
    summary = {
        "connector": connector,
        "to": to.value,
        "records": moved,
        "seconds": time.perf_counter() - started,
    }
    if as_json:
        print_json(summary)
        return
    if not moved:
        out().print(f"nothing to replay for {connector}")
        return
    for topic, count in moved.items():
        out().print(f"replayed {count:,} dead letters of {connector} into {topic}")


def perf_sink(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    rows: Annotated[int, typer.Option(min=1000, help="Records to write.")] = 1_000_000,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the topic.")] = 1,
    directory: Annotated[
        Path | None, typer.Option(help="Where to put the benchmark's files (a temp folder).")
    ] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Runs per figure (the median).")] = 3,
    quick: Annotated[bool, typer.Option(help="A small run (for smoke tests).")] = False,
    postgres_dsn: Annotated[
        str | None,
        typer.Option(
            envvar="TRUNKLINE_POSTGRES_DSN",
            help="Also measure the postgres sink against COPY, in a scratch database there.",
        ),
    ] = None,
) -> None:
    """DuckDB and Parquet sink throughput, with DuckDB and pyarrow baselines in the same run."""
    from trunkline.perf.sink import run_sink_benchmark

    figures = run_sink_benchmark(
        directory,
        rows=20_000 if quick else rows,
        partitions=partitions,
        repeats=1 if quick else repeats,
        postgres_dsn=postgres_dsn,
    )
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table("figure", "value")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    out().print(table)
