"""What every connector task shares: its environment, and the supervisor that restarts it.

A task is one life of a connector in this process: open, loop until told to stop, close.
The :class:`Supervisor` thread runs lives one after the other: it takes the connector's
lease first when the connector is exclusive (waiting as a standby while another process
holds it), and after a failure it starts a new life after a backoff, unless the error says
that trying again cannot help.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trunkline.errors import TrunklineError
from trunkline.hub import Hub
from trunkline.meta import MetaStore
from trunkline.runtime._backoff import Backoff
from trunkline.runtime._budget import MemoryBudget
from trunkline.runtime._checkpoints import FileCheckpointStore
from trunkline.runtime._lease import FileLease
from trunkline.runtime._metrics import TaskMetrics

__all__ = ["Supervisor", "Task", "TaskEnv"]

log = logging.getLogger("trunkline.runtime")

#: How often a standby process tries to take an exclusive connector's lease.
STANDBY_POLL = 1.0


@dataclass(frozen=True)
class TaskEnv:
    """What the runtime gives every task of a process."""

    root: Path
    hub: Hub
    meta: MetaStore | None
    checkpoints: FileCheckpointStore
    budget: MemoryBudget
    run_id: str
    client: str
    #: Per topic, the fields its contract classifies as pii (for transforms).
    pii: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Task(ABC):
    """One connector in this process; :meth:`run_once` is one life of it."""

    kind: str

    def __init__(self, name: str, type_name: str, env: TaskEnv, metrics: TaskMetrics) -> None:
        self.name = name
        self.type_name = type_name
        self.env = env
        self.metrics = metrics
        self.log = logging.getLogger(f"trunkline.{self.kind}.{name}")
        #: Set by a life once it has done useful work (the supervisor resets its backoff).
        self.progressed = False

    @abstractmethod
    def run_once(self, stop: threading.Event) -> None:
        """Open, work until ``stop`` is set, then drain, checkpoint and close."""


def _is_permanent(exc: BaseException) -> bool:
    """Errors that a restart cannot fix: bad settings, data the target cannot take."""
    return isinstance(exc, TrunklineError) and not exc.retryable


class Supervisor(threading.Thread):
    """Runs a task's lives until stopped; restarts it with backoff after failures."""

    def __init__(
        self,
        task: Task,
        stop: threading.Event,
        *,
        lease: FileLease | None,
        backoff: Backoff,
    ) -> None:
        super().__init__(name=f"{task.kind}-{task.name}", daemon=True)
        self.task = task
        self.stop = stop
        self.lease = lease
        self.backoff = backoff

    def run(self) -> None:
        metrics = self.task.metrics
        try:
            while not self.stop.is_set():
                if self.lease is not None and not self.lease.acquire():
                    owner = self.lease.owner() or {}
                    metrics.set_state("standby")
                    metrics.position = {"lease_owner": owner}
                    self.stop.wait(STANDBY_POLL)
                    continue
                metrics.set_state("running")
                self.task.progressed = False
                try:
                    self.task.run_once(self.stop)
                    return
                except Exception as exc:  # every failure is reported; see _is_permanent
                    message = f"{type(exc).__name__}: {exc}"
                    metrics.error(message)
                    if _is_permanent(exc):
                        log.error("%s %s stopped: %s", self.task.kind, self.task.name, message)
                        metrics.set_state("failed")
                        return
                    if self.task.progressed:
                        self.backoff.reset()
                    wait = self.backoff.next()
                    metrics.count("restarts")
                    metrics.set_state("restarting")
                    log.warning(
                        "%s %s failed (%s); restarting in %.1fs",
                        self.task.kind,
                        self.task.name,
                        message,
                        wait,
                    )
                    self.stop.wait(wait)
        finally:
            if self.lease is not None:
                self.lease.release()
            if metrics.state not in ("failed",):
                metrics.set_state("stopped")


def sleep_until(stop: threading.Event, deadline: float) -> None:
    """Wait until ``deadline`` (monotonic) or until ``stop`` is set."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        stop.wait(remaining)
