"""The cost model: seconds an engine takes to scan, process and hand over data.

Each engine has speed factors; ``trunkline calibrate`` measures them on this machine and
keeps them in the metadata store, and these defaults (measured on a 2-core machine) stand
in until then. Factors are looked up by engine name, then by the engine's kind of system,
then the defaults: the model never needs to know which engine is which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class SpeedFactors:
    """Seconds per unit of work of one engine.

    Attributes:
        startup: fixed seconds per step (a round trip, a job).
        row: seconds per row processed (filtered, joined, aggregated).
        scan_byte: seconds per byte read from storage.
        transfer_row: seconds per row handed to another engine as Arrow.
        transfer_byte: seconds per byte handed to another engine as Arrow.
        session: one-time seconds to start the engine if it is not running.
    """

    startup: float = 0.002
    row: float = 2e-8
    scan_byte: float = 1e-9
    transfer_row: float = 0.0
    transfer_byte: float = 0.0
    session: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: Defaults by engine kind (``capabilities.dialect`` or the engine's name when it has none).
DEFAULTS: dict[str, SpeedFactors] = {
    "duckdb": SpeedFactors(startup=0.001, row=2e-8, scan_byte=1e-9),
    "postgres": SpeedFactors(
        startup=0.003, row=3e-8, scan_byte=5e-10, transfer_row=1.2e-7, transfer_byte=5e-9
    ),
    "hub": SpeedFactors(startup=0.001, row=6e-8, scan_byte=5e-9),
    "spark": SpeedFactors(
        startup=0.25,
        row=6e-8,
        scan_byte=2e-9,
        transfer_row=1e-6,
        transfer_byte=1e-8,
        session=8.0,
    ),
}
FALLBACK = SpeedFactors()


@dataclass(frozen=True, slots=True)
class CostModel:
    """Speed factors of every engine, calibrated ones first."""

    calibrated: Mapping[str, Mapping[str, float]]

    def factors(self, name: str, kind: str) -> SpeedFactors:
        base = DEFAULTS.get(kind, FALLBACK)
        measured = dict(self.calibrated.get(kind, {}))
        measured.update(self.calibrated.get(name, {}))
        known = {f.name for f in fields(SpeedFactors)}
        return replace(base, **{k: float(v) for k, v in measured.items() if k in known})

    def origin(self, name: str, kind: str) -> str:
        if name in self.calibrated or kind in self.calibrated:
            return "calibrated"
        return "default"
