"""The runtime: runs sources, sinks and continuous flows with batching, bounded memory,
backpressure, retries, restarts, checkpoints, dead letters and status.

Scale-out: several ``trunkline run`` processes share a project's work. Sinks share
partitions through their consumer groups; an exclusive task (a source, the DuckDB sink, a
continuous flow) runs in one process at a time under a lease, the others standing by to take
over when its owner dies. The metadata store decides how: with SQLite (one machine) a lease
is a file lock the kernel drops with its process, and checkpoints are files in
``.trunkline/``; with PostgreSQL (processes on several machines, each with its own project
folder, sharing the store and a Kafka hub) a lease is a row of the store with an expiry that
heartbeats renew and a fencing token that grows with every takeover, a holder that cannot
renew stops the task, and checkpoints are rows of the store whose saves are refused once the
saver's token is stale, so the new owner continues from the last checkpoint and nothing
overwrites it (see ``_lease`` and ``_checkpoints``); each process publishes its status in the
store too, so ``trunkline status`` on any machine shows every process (see ``_status``).

Example:
    >>> from trunkline.project import Project
    >>> from trunkline.runtime import Runner, RunOptions
    >>> runner = Runner(Project.open("shop"), RunOptions(only=("warehouse",)))  # doctest: +SKIP
    >>> runner.run()  # until runner.stop(), which SIGTERM calls  # doctest: +SKIP
"""

from __future__ import annotations

from trunkline.runtime._deadletters import (
    DeadLetterEntry,
    HubDeadLetters,
    dead_letter_topics,
    read_dead_letters,
    replay,
)
from trunkline.runtime._runner import Runner, RunOptions, shared_store, state_dir
from trunkline.runtime._sink_task import group_of
from trunkline.runtime._status import ProcessStatus, read_status

__all__ = [
    "DeadLetterEntry",
    "HubDeadLetters",
    "ProcessStatus",
    "RunOptions",
    "Runner",
    "dead_letter_topics",
    "group_of",
    "read_dead_letters",
    "read_status",
    "replay",
    "shared_store",
    "state_dir",
]
