"""The runtime: runs sources and sinks (later flows) with batching, bounded memory,
backpressure, retries, restarts, checkpoints, dead letters and status.

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
from trunkline.runtime._runner import Runner, RunOptions, state_dir
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
    "state_dir",
]
