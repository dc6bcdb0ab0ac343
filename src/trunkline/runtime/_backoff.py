"""Exponential backoff with jitter, for restarting connectors after failures."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Waits of ``base * 2**n`` seconds (capped), each drawn from its upper half at random.

    The jitter ("equal jitter") keeps processes that failed together from retrying in
    lockstep, while every wait stays at least half the nominal one.

    Example:
        >>> backoff = Backoff(0.5, 30.0, rng=random.Random(1))
        >>> [round(backoff.next(), 2) for _ in range(4)]
        [0.28, 0.92, 1.76, 2.51]
        >>> backoff.reset(); backoff.failures
        0
    """

    def __init__(self, base: float, cap: float, *, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def next(self) -> float:
        """The wait before the next attempt; counts one more failure."""
        nominal = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return float(nominal / 2 + self._rng.uniform(0, nominal / 2))

    def reset(self) -> None:
        """A success: the next failure starts from ``base`` again."""
        self.failures = 0
