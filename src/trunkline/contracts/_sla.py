"""The SLA properties trunkline acts on: ``retention`` and ``latency`` (freshness)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from trunkline.config import parse_duration
from trunkline.config._units import UnitError
from trunkline.contracts._model import Contract, SlaProperty

_DAY = 24 * 3600 * 1000
#: ODCS units (ISO-ish, case-insensitive) in milliseconds.
_UNITS: dict[str, int] = {
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), 1),
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1000),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60_000),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3_600_000),
    **dict.fromkeys(("d", "day", "days"), _DAY),
    **dict.fromkeys(("w", "week", "weeks"), 7 * _DAY),
    **dict.fromkeys(("y", "yr", "year", "years"), 365 * _DAY),
}
_FOREVER = ("forever", "unlimited", "infinite")
RETENTION = ("retention", "re")
LATENCY = ("latency", "ly", "freshness")


@dataclass(frozen=True, slots=True)
class SlaDuration:
    """A duration an SLA property agrees, and where it is written (its index)."""

    ms: int | None  # None: forever
    index: int
    element: str | None = None


def duration_of(sla: SlaProperty) -> int | None:
    """Milliseconds of ``value`` + ``unit`` (or a value such as ``7d``); None for forever.

    Raises:
        ValueError: the value or the unit cannot be read; the message says what was expected.
    """
    value = sla.value
    if isinstance(value, str) and value.strip().lower() in _FOREVER:
        return None
    if sla.unit is None:
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        raise ValueError(
            f"expected a 'unit' (d, h, m, s, ms, w, y) beside the value {value!r}, or a value "
            "such as '7d'"
        )
    factor = _UNITS.get(sla.unit.strip().lower())
    if factor is None:
        raise ValueError(
            f"unknown unit {sla.unit!r}: expected d, h, m, s, ms, w or y (or day, days, ...)"
        )
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"expected a number of {sla.unit}, found {value!r}") from None
    if number < 0:
        raise ValueError(f"expected a duration >= 0, found {value!r}")
    return int(number * factor)


def find(contract: Contract, names: tuple[str, ...]) -> SlaDuration | None:
    """The first SLA property called one of ``names`` (case-insensitive), read as a duration.

    Raises:
        ValueError: as :func:`duration_of`.
    """
    for index, sla in enumerate(contract.sla_properties):
        if sla.property.strip().lower() in names:
            element = sla.element or contract.sla_default_element
            return SlaDuration(duration_of(sla), index, element)
    return None


def element_property(contract: Contract, element: str) -> str:
    """The property name of an SLA ``element``: ``orders.created_at`` or ``created_at``."""
    obj = contract.object
    prefix = f"{obj.name}."
    return element[len(prefix) :] if element.startswith(prefix) else element


def retention_mismatch(contract: Contract, topic_retention_ms: int | None) -> str | None:
    """Why the contract's retention disagrees with the topic's (None: it agrees or is absent)."""
    from trunkline.config import format_duration

    try:
        agreed = find(contract, RETENTION)
    except ValueError:
        return None  # reported by the contract's own checks
    if agreed is None or agreed.ms == topic_retention_ms:
        return None
    return (
        f"contract {contract.id!r} agrees a retention of {format_duration(agreed.ms)}, but the "
        f"topic keeps records for {format_duration(topic_retention_ms)}"
    )
