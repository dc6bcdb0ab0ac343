"""The in-flight memory budget: bytes of fetched records held by all sinks of a process."""

from __future__ import annotations

import threading

__all__ = ["MemoryBudget"]


class MemoryBudget:
    """Counts bytes held in buffers; tasks stop fetching while it is spent.

    A task asks :meth:`has_room` before fetching, adds what it fetched with :meth:`take`
    and gives it back with :meth:`give` once written. One fetch may overshoot the limit,
    so memory stays below ``limit`` plus one fetch per task.

    Example:
        >>> budget = MemoryBudget(100)
        >>> budget.take(80); budget.has_room()
        True
        >>> budget.take(30); budget.has_room()
        False
        >>> budget.give(50); budget.used
        60
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    def has_room(self) -> bool:
        with self._cond:
            return self.used < self.limit

    def take(self, size: int) -> None:
        with self._cond:
            self.used += size

    def give(self, size: int) -> None:
        with self._cond:
            self.used = max(0, self.used - size)
            self._cond.notify_all()

    def wait_for_room(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the budget has room; True if it has."""
        with self._cond:
            return self._cond.wait_for(lambda: self.used < self.limit, timeout)
