"""``trunkline hub maintain|migrate``: looking after the project's hub, and moving it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from trunkline.cli._common import bad_input, err, out, print_json, project
from trunkline.errors import TrunklineError, Unsupported
from trunkline.hub.migrate import MigrationProgress, migrate

hub_app = typer.Typer(
    help="Maintenance of the project's hub, and moving it to Kafka.", no_args_is_help=True
)

_KAFKA_SCHEME = "kafka://"


@hub_app.command("maintain")
def maintain(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Apply retention and compaction to every topic now (the embedded log's cleaner)."""
    hub = project(ctx).hub
    run_maintenance = getattr(hub, "maintain", None)
    if run_maintenance is None:
        raise Unsupported(f"the {hub.backend} hub runs retention and compaction itself")
    report = run_maintenance()
    data = {
        "segments_deleted": report.segments_deleted,
        "segments_compacted": report.segments_compacted,
        "records_compacted": report.records_compacted,
    }
    if as_json:
        print_json(data)
        return
    out().print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in data.items()))


def parse_kafka_url(url: str) -> str:
    """``kafka://host:port[,host:port]`` -> the bootstrap list, or a bad-input error."""
    from trunkline.config import KafkaHub

    if not url.startswith(_KAFKA_SCHEME):
        raise bad_input(f"--to: expected kafka://host:port, found {url!r}")
    bootstrap = url[len(_KAFKA_SCHEME) :].rstrip("/")
    try:
        KafkaHub.model_validate({"backend": "kafka", "bootstrap": bootstrap})
    except ValueError:
        raise bad_input(f"--to: expected kafka://host:port[,host:port...], found {url!r}") from None
    return bootstrap


@hub_app.command("migrate")
def migrate_hub(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="The Kafka cluster: kafka://host:port.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Copy every topic, record and group offset of the embedded hub to Kafka.

    Resumable: run it again after an interruption and it continues where it stopped. It
    verifies record counts and group offsets at the end. Stop producers first.
    """
    bootstrap = parse_kafka_url(to)
    proj = project(ctx)
    if proj.config.hub.backend != "embedded":
        raise bad_input(
            f"hub migrate copies an embedded hub; this project's hub is {proj.config.hub.backend}"
        )
    from trunkline.hub.kafka import KafkaHub

    source = proj.hub
    with (
        KafkaHub(bootstrap) as target,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
            console=err(),
            transient=True,
        ) as bar,
    ):
        tasks: dict[tuple[str, int], TaskID] = {}

        def show(step: MigrationProgress) -> None:
            key = (step.topic, step.partition)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{step.topic}[{step.partition}]", total=step.end)
            bar.update(tasks[key], completed=step.offset, total=step.end)

        try:
            report = migrate(source, target, progress=show)
        except TrunklineError as exc:
            raise type(exc)(f"{exc} (run the same command again to resume)") from exc
    data = {
        "verified": report.verified,
        "records": report.records,
        "copied": report.copied,
        "topics": [
            {
                "topic": t.topic,
                "partitions": t.partitions,
                "records": t.records,
                "copied": t.copied,
                "resumed": t.resumed,
                "notes": list(t.config_notes),
            }
            for t in report.topics
        ],
        "groups": [
            {
                "group": g.group,
                "offsets": {f"{tp.topic}[{tp.partition}]": list(o) for tp, o in g.offsets.items()},
            }
            for g in report.groups
        ],
    }
    if as_json:
        print_json(data)
    else:
        console = out()
        for topic in report.topics:
            resumed = f", {topic.resumed:,} already there" if topic.resumed else ""
            console.print(f"{topic.topic}: {topic.records:,} record(s){resumed}")
            for note in topic.config_notes:
                console.print(f"  note: {note}", markup=False)
        console.print(f"{len(report.groups)} group(s) with translated offsets")
        console.print(
            f"verified: {report.records:,} records in {bootstrap}. Point the project at it "
            f'with hub: {{backend: kafka, bootstrap: "{bootstrap}"}} in trunkline.yaml.'
        )
    if not report.verified:
        raise typer.Exit(1)
