"""``trunkline run``: every connector and continuous flow of a project in this process,
until told to stop.

The :class:`Runner` creates the topics the connectors need, registers them in the catalog,
starts one supervised thread per connector, publishes figures (a status file every second,
and the Prometheus text on ``/metrics`` when asked), and on :meth:`Runner.stop` (SIGTERM,
Ctrl-C) lets every task drain: sinks write and commit what they fetched, sources
checkpoint. Several processes can run the same project: sinks share partitions through
their consumer groups; exclusive connectors (sources, the DuckDB sink) run in one process
at a time, the others standing by (see :mod:`trunkline.runtime._lease`).

Where the project's metadata store is decides how far its processes may be spread. With
SQLite (one machine) leases are file locks and checkpoints files in ``.trunkline/``. With
PostgreSQL the processes may run on several machines (each with its own project folder,
sharing the store and a Kafka hub): leases are rows of the store with an expiry and a
fencing token (:class:`~trunkline.runtime._lease.StoreLease`, ``lease_ttl``),
checkpoints live in the store too, so the process that takes over a source continues from
its last checkpoint, and each process publishes its status there as well as in its status
file, so that ``trunkline status`` on any machine shows them all.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from trunkline.config import ConnectorSpec, FlowSpec
from trunkline.connectors import SINKS, SOURCES
from trunkline.connectors.base import (
    Sink,
    SinkSettings,
    Source,
    SourceSettings,
    dead_letter_topic,
    retry_topic,
)
from trunkline.connectors.transforms import route_topics
from trunkline.errors import ConfigError, MetaError, TopicExists, TopicNotFound
from trunkline.hub import TopicConfig
from trunkline.meta._engine import parse_url
from trunkline.project import HUB_SYSTEM, Project
from trunkline.runtime._backoff import Backoff
from trunkline.runtime._budget import MemoryBudget
from trunkline.runtime._checkpoints import FileCheckpointStore, StoreCheckpointStore
from trunkline.runtime._deadletters import DLQ_CONFIG
from trunkline.runtime._flow_task import FlowTask
from trunkline.runtime._lag import lag_origins_here, pipelines
from trunkline.runtime._lease import FileLease, Lease, StoreLease
from trunkline.runtime._metrics import TaskMetrics, prometheus_text
from trunkline.runtime._sink_task import SinkTask
from trunkline.runtime._source_task import SourceTask
from trunkline.runtime._status import StatusBoard, StoreStatusBoard
from trunkline.runtime._task import Supervisor, Task, TaskEnv

__all__ = ["RunOptions", "Runner", "shared_store", "state_dir"]

log = logging.getLogger("trunkline.runtime")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
#: How long a stopping process waits for its tasks to drain.
DRAIN_TIMEOUT = 60.0


def state_dir(project: Project) -> Path:
    """Where the runtime keeps checkpoints, leases and status files: ``.trunkline/``."""
    return project.root / ".trunkline"


def shared_store(project: Project) -> bool:
    """Whether the project's metadata store is shared by machines (PostgreSQL), not one
    file; told from its URL, so that asking opens nothing (and creates no SQLite file)."""
    return parse_url(project.config.meta_url()).backend != "sqlite"


@dataclass(frozen=True)
class RunOptions:
    """How ``trunkline run`` runs.

    Attributes:
        only: Run just these connectors (names from the project file).
        memory: The in-flight memory budget of all sinks of the process, in bytes.
        metrics_address: ``(host, port)`` to serve Prometheus text on ``/metrics``;
            None for no endpoint. Port 0 picks a free port.
        status_interval: Seconds between status updates (the file, and the store's row
            when the metadata store is shared).
        lease_ttl: Seconds an exclusive task's lease in a shared (PostgreSQL) metadata
            store lasts without a heartbeat: how long a dead process's tasks wait before
            another process takes them over.
    """

    only: tuple[str, ...] = ()
    memory: int = 256 * 1024 * 1024
    metrics_address: tuple[str, int] | None = None
    status_interval: float = 1.0
    lease_ttl: float = 10.0


@dataclass
class _Planned:
    name: str
    kind: str
    type: str
    task: Task
    exclusive: bool
    topics: list[str] = field(default_factory=list)
    #: Settings for topics it creates that trunkline.yaml does not declare (else defaults).
    created: TopicConfig | None = None


class Runner:
    """Runs the connectors of ``project``; see the module docstring."""

    def __init__(self, project: Project, options: RunOptions | None = None) -> None:
        self.project = project
        self.options = options or RunOptions()
        self.run_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.stop_event = threading.Event()
        self.state = state_dir(project)
        self.board = StatusBoard(self.state / "status", run_id=self.run_id)
        self.board.forget_old()
        self._planned = self._plan()
        self._pipelines = pipelines(project.config)
        self.store_board: StoreStatusBoard | None = None
        if self.shared:
            self.store_board = StoreStatusBoard(
                project.meta, run_id=self.run_id, interval=self.options.status_interval
            )
        self._supervisors: list[Supervisor] = []
        self._server: ThreadingHTTPServer | None = None
        self.metrics_url = ""

    # -- planning -----------------------------------------------------------------------

    def _selected(self) -> list[tuple[str, str, ConnectorSpec]]:
        config = self.project.config
        entries: list[tuple[str, str, ConnectorSpec]] = [
            *(("source", n, s) for n, s in config.sources.items()),
            *(("sink", n, s) for n, s in config.sinks.items()),
        ]
        names = {name for _, name, _ in entries} | set(self._flows(only=False))
        both = sorted(set(config.sources) & set(config.sinks))
        if both:
            raise ConfigError(
                f"{both[0]!r} names a source and a sink; give them different names (a "
                "connector's name is also its dead-letter topic's, <name>.dlq)"
            )
        for name in self.options.only:
            if name not in names:
                close = difflib.get_close_matches(name, sorted(names), n=1)
                hint = f" - did you mean {close[0]!r}?" if close else ""
                known = ", ".join(sorted(names)) or "none"
                raise ConfigError(
                    f"--only {name!r}: no source, sink or continuous flow of that name{hint} "
                    f"(known: {known})"
                )
        for kind, name, _ in entries:
            if not _NAME.match(name):
                raise ConfigError(
                    f"{kind} name {name!r}: expected 1-100 letters, digits, '_' or '-' (it "
                    "names the connector's consumer group, topics and files)"
                )
        if self.options.only:
            entries = [e for e in entries if e[1] in self.options.only]
        return entries

    def _plan(self) -> list[_Planned]:
        hub = self.project.hub
        meta = self.project.meta
        env = TaskEnv(
            root=self.project.root,
            hub=hub,
            meta=meta,
            checkpoints=self._checkpoints(),
            budget=MemoryBudget(self.options.memory),
            run_id=self.run_id,
            client=self.run_id,
            pii=self._pii_fields(),
        )
        planned = []
        for kind, name, spec in self._selected():
            metrics = TaskMetrics(name, kind, spec.type)
            if kind == "source":
                source_class: type[Source] = SOURCES.get(spec.type)
                source_config = spec.config
                assert isinstance(source_config, SourceSettings)
                task: Task = SourceTask(name, spec.type, source_class, source_config, env, metrics)
                topics = [
                    *source_class(name, source_config).topics(),
                    *route_topics(source_config.transforms),
                    dead_letter_topic(name),
                ]
                exclusive = source_class.capabilities.exclusive
                created = TopicConfig(compression=source_config.topic_compression)
            else:
                sink_class: type[Sink] = SINKS.get(spec.type)
                sink_config = spec.config
                assert isinstance(sink_config, SinkSettings)
                task = SinkTask(name, spec.type, sink_class, sink_config, env, metrics)
                topics = [*sink_config.topics, dead_letter_topic(name), retry_topic(name)]
                exclusive = sink_class.capabilities.exclusive
                created = None
            planned.append(_Planned(name, kind, spec.type, task, exclusive, topics, created))
        for name, flow in self._flows().items():
            if not _NAME.match(name):
                raise ConfigError(
                    f"flow name {name!r}: expected 1-100 letters, digits, '_' or '-' (it names "
                    "the flow's state and lease files)"
                )
            metrics = TaskMetrics(name, "flow", "flow")
            flow_task = FlowTask(name, self.project, flow, env, metrics)
            # A flow's offsets live with its target: one process at a time runs it.
            system, _, topic = (flow.into or "").partition(".")
            outputs = [topic] if system == HUB_SYSTEM else []
            planned.append(_Planned(name, "flow", "flow", flow_task, True, outputs))
        return planned

    @property
    def shared(self) -> bool:
        """Whether the metadata store is shared by machines (PostgreSQL), not one file."""
        return shared_store(self.project)

    def _checkpoints(self) -> FileCheckpointStore | StoreCheckpointStore:
        folder = self.state / "checkpoints"
        if self.shared:
            return StoreCheckpointStore(self.project.meta, legacy=folder)
        if self.project.hub.backend != "embedded":
            log.warning(
                "the hub is %s but the metadata store is SQLite: exclusive connectors "
                "(sources, the DuckDB sink) are guarded on this machine only; processes on "
                "several machines need a shared store (meta: postgresql://...)",
                self.project.hub.backend,
            )
        return FileCheckpointStore(folder)

    def _lease(self, planned: _Planned) -> Lease:
        name = f"{planned.kind}-{planned.name}"
        if self.shared:
            return StoreLease(self.project.meta, name, self.run_id, ttl=self.options.lease_ttl)
        return FileLease(self.state / "leases" / f"{name}.lock")

    def _flows(self, *, only: bool = True) -> dict[str, FlowSpec]:
        """The continuous flows (``freshness:``) this process runs."""
        flows = {n: f for n, f in self.project.config.flows.items() if f.freshness}
        if only and self.options.only:
            flows = {n: f for n, f in flows.items() if n in self.options.only}
        return flows

    def _pii_fields(self) -> dict[str, tuple[str, ...]]:
        """Per contracted topic, the fields its contract classifies as pii (for transforms)."""
        fields: dict[str, tuple[str, ...]] = {}
        for topic in self.project.contracts.topics():
            loaded = self.project.contracts.load(topic)
            if loaded is not None:
                properties = loaded.contract.object.properties
                fields[topic] = tuple(p.name for p in properties if p.pii)
        return fields

    @property
    def tasks(self) -> list[Task]:
        return [p.task for p in self._planned]

    def _prepare_topics(self) -> None:
        """Create the topics connectors write and read: as trunkline.yaml declares them, else
        dead-letter topics as such, a source's topics as it says (``topic_compression``),
        others with the hub's defaults."""
        project = self.project
        existing = set(project.hub.list_topics())
        wanted: dict[str, TopicConfig | None] = {}
        for planned in self._planned:
            for topic in planned.topics:
                if topic in existing or topic in project.config.topics:
                    wanted.setdefault(topic, None)
                elif topic.endswith(".dlq"):
                    wanted[topic] = DLQ_CONFIG
                elif planned.created is not None or topic not in wanted:
                    wanted[topic] = planned.created
        for topic, config in wanted.items():
            if topic not in existing:
                with contextlib.suppress(TopicExists):
                    project.create_topic(topic, config)
        with contextlib.suppress(TopicNotFound):
            project.sync_catalog()

    # -- running ------------------------------------------------------------------------

    def start(self) -> None:
        """Create topics, start every task and the figures; returns at once."""
        self._prepare_topics()
        for planned in self._planned:
            config = getattr(planned.task, "config", None)
            base = getattr(config, "retry_backoff", 500) / 1000
            cap = getattr(config, "retry_max_backoff", 30_000) / 1000
            lease = self._lease(planned) if planned.exclusive else None
            supervisor = Supervisor(
                planned.task, self.stop_event, lease=lease, backoff=Backoff(base, cap)
            )
            self._supervisors.append(supervisor)
            supervisor.start()
        if self.options.metrics_address is not None:
            self._serve_metrics(*self.options.metrics_address)
        self._publish()

    def samples(self) -> list[dict[str, Any]]:
        return [p.task.metrics.sample() for p in self._planned]

    def _publish(self, state: str = "running") -> None:
        document = self.board.document(self.samples(), state=state, metrics_url=self.metrics_url)
        try:
            self.board.write(document)
        except OSError as exc:
            log.warning("cannot write the status file %s: %s", self.board.path, exc)
        if self.store_board is None:
            return
        try:
            if state == "running":
                self.store_board.publish(document)
            else:
                self.store_board.remove()
        except MetaError as exc:
            # Status is for people: the tasks go on; the row's heartbeat ages meanwhile.
            log.warning("cannot publish status to the metadata store: %s", exc)

    def wait(self) -> None:
        """Publish figures until :meth:`stop`, or until every task has stopped for good."""
        while not self.stop_event.wait(self.options.status_interval):
            self._publish()
            if self._supervisors and not any(s.is_alive() for s in self._supervisors):
                break  # every task failed for good: nothing left to run

    def run(self) -> None:
        """Start, publish figures until :meth:`stop`, then drain and return."""
        try:
            self.start()
            self.wait()
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask every task to drain and stop (safe from a signal handler)."""
        self.stop_event.set()

    def shutdown(self, timeout: float = DRAIN_TIMEOUT) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for supervisor in self._supervisors:
            supervisor.join(max(0.0, deadline - time.monotonic()))
        stuck = [s.name for s in self._supervisors if s.is_alive()]
        if stuck:
            log.warning("tasks still running after %.0fs: %s", timeout, ", ".join(stuck))
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._publish("stopped")

    @property
    def failed(self) -> list[str]:
        return [p.name for p in self._planned if p.task.metrics.state == "failed"]

    # -- Prometheus -----------------------------------------------------------------------

    def prometheus_text(self) -> str:
        """What ``/metrics`` serves: every task's figures, and where the lag of each
        pipeline whose sink runs here comes from (judged as ``trunkline status`` does)."""
        samples = self.samples()
        return prometheus_text(samples, lag_origins_here(self._pipelines, samples))

    def _serve_metrics(self, host: str, port: int) -> None:
        runner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = runner.prometheus_text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics endpoint: " + format, *args)

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self._server.daemon_threads = True
        bound_port = self._server.server_address[1]
        self.metrics_url = f"http://{host}:{bound_port}/metrics"
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
