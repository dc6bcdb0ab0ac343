"""What every connector task shares: its environment, and the supervisor that restarts it.

A task is one life of a connector in this process: open, loop until told to stop, close.
The :class:`Supervisor` thread runs lives one after the other: it takes the connector's
lease first when the connector is exclusive (waiting as a standby while another process
holds it), and after a failure it starts a new life after a backoff, unless the error says
that trying again cannot help.

A lease that can expire (:class:`~trunkline.runtime._lease.StoreLease`) is renewed by a
heartbeat thread while the life runs. When a renewal finds the lease taken over, or the
holding runs out by this process's clock before a renewal got through (the store is
unreachable), the heartbeat ends that life alone (its ``stop`` event, not the process's),
and the task goes back to standing by. A life that ends so does not drain into its target:
its checkpoint save carries the lease's fencing token and is refused, and sinks skip their
final write (:meth:`Task.lease_valid`).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trunkline.connectors.base import CheckpointStore
from trunkline.errors import LeaseLost, MetaError, TrunklineError
from trunkline.hub import Hub
from trunkline.meta import MetaStore
from trunkline.runtime._backoff import Backoff
from trunkline.runtime._budget import MemoryBudget
from trunkline.runtime._checkpoints import FileCheckpointStore, StoreCheckpointStore
from trunkline.runtime._lease import Lease
from trunkline.runtime._metrics import TaskMetrics

__all__ = ["Supervisor", "Task", "TaskEnv"]

log = logging.getLogger("trunkline.runtime")

#: How often a standby process tries to take an exclusive connector's lease.
STANDBY_POLL = 1.0
#: How often a heartbeat looks at the process's stop event and the lease's validity.
_HEARTBEAT_TICK = 0.1


@dataclass(frozen=True)
class TaskEnv:
    """What the runtime gives every task of a process."""

    root: Path
    hub: Hub
    meta: MetaStore | None
    checkpoints: FileCheckpointStore | StoreCheckpointStore
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
        #: The lease this task runs under (exclusive tasks), set by the supervisor.
        self.lease: Lease | None = None

    @property
    def checkpoints(self) -> CheckpointStore:
        """The checkpoint store, its saves fenced by this task's lease where it can expire."""
        return self.env.checkpoints.fenced(self.lease)

    def lease_valid(self) -> bool:
        """False once this task's lease is lost: its life must not write any more."""
        return self.lease is None or self.lease.valid()

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
        lease: Lease | None,
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
                if self.lease is not None and not self._acquire():
                    self.stop.wait(STANDBY_POLL)
                    continue
                metrics.set_state("running")
                self.task.progressed = False
                self.task.lease = self.lease
                heartbeat = self._heartbeat()
                life = self.stop if heartbeat is None else heartbeat.life
                try:
                    self.task.run_once(life)
                    if self.stop.is_set() or heartbeat is None or not heartbeat.lost:
                        return  # a life returns when told to stop, or when its lease is lost
                except Exception as exc:  # every failure is reported; see _is_permanent
                    if isinstance(exc, LeaseLost) or (heartbeat is not None and heartbeat.lost):
                        pass  # the life ended because the lease was lost: reported below
                    elif not self._failed(exc):
                        return
                    else:
                        continue
                finally:
                    if heartbeat is not None:
                        heartbeat.finish()
                self._lost()
        finally:
            if self.lease is not None:
                self._release()
            if metrics.state not in ("failed",):
                metrics.set_state("stopped")

    def _acquire(self) -> bool:
        """Take the lease, or show who holds it (state ``standby``)."""
        assert self.lease is not None
        metrics = self.task.metrics
        try:
            if self.lease.acquire():
                return True
            owner = self.lease.owner() or {}
        except MetaError as exc:
            # The store is down: nobody can take the lease over meanwhile; keep trying.
            metrics.error(f"{type(exc).__name__}: {exc}")
            owner = {}
        metrics.set_state("standby")
        metrics.position = {"lease_owner": owner}
        return False

    def _release(self) -> None:
        assert self.lease is not None
        try:
            self.lease.release()
        except MetaError as exc:
            log.warning("%s %s: lease not released (%s); it expires", *self._label(), exc)

    def _heartbeat(self) -> _Heartbeat | None:
        if self.lease is None or self.lease.heartbeat is None:
            return None
        heartbeat = _Heartbeat(self.lease, self.stop, self.name)
        heartbeat.start()
        return heartbeat

    def _lost(self) -> None:
        """The life ended without a stop: the lease went to another process."""
        metrics = self.task.metrics
        metrics.count("leases_lost")
        metrics.error(f"LeaseLost: lease {getattr(self.lease, 'name', '?')} was lost")
        log.warning("%s %s: lease lost; standing by", *self._label())
        metrics.set_state("standby")
        if self.lease is not None:
            self._release()
        self.stop.wait(STANDBY_POLL)

    def _label(self) -> tuple[str, str]:
        return self.task.kind, self.task.name

    def _failed(self, exc: Exception) -> bool:
        """Report a failed life; True to start another after a backoff, False to give up."""
        metrics = self.task.metrics
        message = f"{type(exc).__name__}: {exc}"
        metrics.error(message)
        if _is_permanent(exc):
            log.error("%s %s stopped: %s", self.task.kind, self.task.name, message)
            metrics.set_state("failed")
            return False
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
        return True


class _Heartbeat(threading.Thread):
    """Renews a lease while one life runs; sets :attr:`life` when the process stops or the
    lease is lost (:attr:`lost`)."""

    def __init__(self, lease: Lease, stop: threading.Event, name: str) -> None:
        super().__init__(name=f"heartbeat-{name}", daemon=True)
        self.lease = lease
        self.stop = stop
        self.life = threading.Event()
        self.lost = False

    def run(self) -> None:
        try:
            self._beat()
        finally:
            self.life.set()  # whatever happens here, the life does not outlive its lease

    def _beat(self) -> None:
        interval = self.lease.heartbeat or STANDBY_POLL
        next_renewal = time.monotonic() + interval
        while not self.life.is_set():
            if self.stop.wait(_HEARTBEAT_TICK):
                return
            if time.monotonic() >= next_renewal:
                try:
                    if not self.lease.renew():
                        self.lost = True
                        return
                    next_renewal = time.monotonic() + interval
                except Exception as exc:  # the store is unreachable, or worse
                    # Still ours until valid() says otherwise; try again at the next tick.
                    log.warning("lease %s: renewal failed: %s", self.lease.name, exc)
            if not self.lease.valid():
                self.lost = True
                return

    def finish(self) -> None:
        self.life.set()
        self.join()


def sleep_until(stop: threading.Event, deadline: float) -> None:
    """Wait until ``deadline`` (monotonic) or until ``stop`` is set."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        stop.wait(remaining)
