"""Durations and sizes as people write them: ``7d``, ``1h30m``, ``500ms``, ``1GiB``, ``10MB``.

Rules (the project file, the CLI and ``config explain`` all use these):

* A duration is one or more ``<number><unit>`` parts, units ``ms``, ``s``, ``m``, ``h``,
  ``d``, ``w`` (lower case only: ``7D`` is an error that suggests ``7d``). Parts add up, so
  ``1h30m`` is 90 minutes. Numbers may have decimals when the result is a whole number of
  milliseconds (``1.5h``). A bare number is an error because its unit would be a guess; the
  one exception is ``0``, which is zero in every unit.
* A size is a number of bytes, or ``<number><unit>`` with decimal units ``KB`` (also
  ``kB``), ``MB``, ``GB``, ``TB`` (powers of 1000), binary units ``KiB``, ``MiB``, ``GiB``,
  ``TiB`` (powers of 1024), or ``B``. Units are case-sensitive because ``Gb`` (bits) and
  ``GB`` (bytes) differ; ``1gb`` is an error that suggests ``1GB``.
* Whitespace between a number and its unit is allowed (``1 GiB``); negative values are not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

from trunkline.config._explain import TypeDoc
from trunkline.config._problems import invalid
from trunkline.errors import ConfigError

__all__ = [
    "Duration",
    "DurationOrForever",
    "Size",
    "SizeOrUnlimited",
    "UnitError",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
    "size_at_least",
]

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

#: Largest first: parsing accepts any order, formatting writes them in this one.
_DURATION_UNITS: dict[str, int] = {
    "w": 7 * _DAY,
    "d": _DAY,
    "h": _HOUR,
    "m": _MINUTE,
    "s": _SECOND,
    "ms": 1,
}
#: Weeks are accepted but not written back: "14d" reads better than "2w" in retention settings.
_FORMAT_DURATION_UNITS = ("d", "h", "m", "s", "ms")

_BINARY_UNITS: dict[str, int] = {"TiB": 1024**4, "GiB": 1024**3, "MiB": 1024**2, "KiB": 1024}
_DECIMAL_UNITS: dict[str, int] = {"TB": 1000**4, "GB": 1000**3, "MB": 1000**2, "KB": 1000}
_SIZE_UNITS: dict[str, int] = {**_BINARY_UNITS, **_DECIMAL_UNITS, "kB": 1000, "B": 1}

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION_TEXT = re.compile(rf"(?:{_NUMBER}\s*[A-Za-z]+\s*)+")
_DURATION_PART = re.compile(rf"({_NUMBER})\s*([A-Za-z]+)")
_SIZE_TEXT = re.compile(rf"({_NUMBER})\s*([A-Za-z]*)")

DURATION_EXPECTED = "a duration such as '7d', '36h' or '500ms'"
SIZE_EXPECTED = "a size such as '1GiB', '512MB' or a number of bytes"


class UnitError(ConfigError):
    """A duration or size could not be read; says what was expected and what was found."""

    def __init__(self, expected: str, value: object, hint: str = "") -> None:
        message = f"expected {expected}, found {value!r}"
        super().__init__(f"{message} - {hint}" if hint else message)
        self.expected = expected
        self.hint = hint


def parse_duration(value: str | int) -> int:
    """Milliseconds in a duration such as ``7d``, ``36h``, ``1h30m`` or ``500ms``.

    Raises:
        UnitError: (a ConfigError) for anything else, including bare numbers other than 0.

    Example:
        >>> parse_duration("1h30m")
        5400000
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value == 0:
            return 0
        hint = "durations cannot be negative" if value < 0 else "add a unit, e.g. '7d' or '500ms'"
        raise UnitError(DURATION_EXPECTED, value, hint)
    if not isinstance(value, str):
        raise UnitError(DURATION_EXPECTED, value)
    text = value.strip()
    if text == "0":
        return 0
    if text.startswith("-"):
        raise UnitError(DURATION_EXPECTED, value, "durations cannot be negative")
    if not _DURATION_TEXT.fullmatch(text):
        hint = "add a unit, e.g. '7d' or '500ms'" if re.fullmatch(_NUMBER, text) else ""
        raise UnitError(DURATION_EXPECTED, value, hint)
    total = Decimal(0)
    for number, unit in _DURATION_PART.findall(text):
        if unit not in _DURATION_UNITS:
            raise UnitError(DURATION_EXPECTED, value, _unit_hint(text, unit, _DURATION_UNITS))
        total += Decimal(number) * _DURATION_UNITS[unit]
    return _whole(total, value, DURATION_EXPECTED, "milliseconds")


def parse_size(value: str | int) -> int:
    """Bytes in a size such as ``1GiB``, ``512MB``, ``64KiB`` or a plain number of bytes.

    Raises:
        UnitError: (a ConfigError) for anything else.

    Example:
        >>> parse_size("1GiB"), parse_size("10MB"), parse_size(4096)
        (1073741824, 10000000, 4096)
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise UnitError(SIZE_EXPECTED, value, "sizes cannot be negative")
        return value
    if not isinstance(value, str):
        raise UnitError(SIZE_EXPECTED, value)
    text = value.strip()
    if text.startswith("-"):
        raise UnitError(SIZE_EXPECTED, value, "sizes cannot be negative")
    match = _SIZE_TEXT.fullmatch(text)
    if match is None:
        raise UnitError(SIZE_EXPECTED, value)
    number, unit = match.groups()
    if unit and unit not in _SIZE_UNITS:
        raise UnitError(SIZE_EXPECTED, value, _unit_hint(text, unit, _SIZE_UNITS))
    return _whole(Decimal(number) * _SIZE_UNITS[unit or "B"], value, SIZE_EXPECTED, "bytes")


def format_duration(ms: int | None) -> str:
    """The shortest exact text for ``ms`` milliseconds; ``None`` (no limit) is ``forever``.

    ``parse_duration(format_duration(ms)) == ms`` for every ``ms >= 0``.

    Example:
        >>> format_duration(36 * 3600000), format_duration(86400001), format_duration(None)
        ('36h', '1d1ms', 'forever')
    """
    if ms is None:
        return "forever"
    if ms < 0:
        raise ValueError(f"expected a duration >= 0 milliseconds, found {ms}")
    if ms == 0:
        return "0s"
    # One number in the largest unit that divides ms ("36h"), unless the sum of parts is
    # shorter ("1d1ms" rather than "86400001ms").
    unit = next(u for u in _FORMAT_DURATION_UNITS if ms % _DURATION_UNITS[u] == 0)
    single = f"{ms // _DURATION_UNITS[unit]}{unit}"
    parts = []
    rest = ms
    for unit in _FORMAT_DURATION_UNITS:
        count, rest = divmod(rest, _DURATION_UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    combined = "".join(parts)
    return combined if len(combined) < len(single) else single


def format_size(size: int | None, *, exact: bool = True) -> str:
    """``size`` bytes as text; ``None`` (no limit) is ``unlimited``.

    Exact form (the default) uses the largest unit that divides ``size``, so that
    ``parse_size(format_size(n)) == n``. ``exact=False`` rounds to three significant digits
    in binary units, for showing sizes on disk.

    Example:
        >>> format_size(1073741824), format_size(10**7), format_size(1234567, exact=False)
        ('1GiB', '10MB', '1.18MiB')
    """
    if size is None:
        return "unlimited"
    if size < 0:
        raise ValueError(f"expected a size >= 0 bytes, found {size}")
    if not exact:
        for unit, factor in _BINARY_UNITS.items():
            if size >= factor:
                return f"{size / factor:.3g}{unit}"
        return f"{size}B"
    # The smallest number wins (1000KiB over 1024KB); binary units win ties.
    candidates = [
        (size // factor, unit)
        for unit, factor in (*_BINARY_UNITS.items(), *_DECIMAL_UNITS.items())
        if size and size % factor == 0
    ]
    if not candidates:
        return f"{size}B"
    count, unit = min(candidates, key=lambda c: c[0])
    return f"{count}{unit}"


def _whole(amount: Decimal, value: object, expected: str, unit: str) -> int:
    if amount != amount.to_integral_value():
        raise UnitError(expected, value, f"it is not a whole number of {unit}")
    return int(amount)


def _unit_hint(text: str, unit: str, units: dict[str, int]) -> str:
    """Suggest the right spelling when only the case of a unit is wrong."""
    by_lower: dict[str, str] = {}
    for candidate in units:
        by_lower.setdefault(candidate.lower(), candidate)
    if unit.lower() not in by_lower:
        return f"unknown unit {unit!r}; units are {', '.join(units)}"
    suggestion = re.sub(r"[A-Za-z]+", lambda m: by_lower.get(m[0].lower(), m[0]), text)
    return f"did you mean {suggestion!r}? units are case-sensitive"


def _as_field(
    parse: Callable[[Any], Any], *, keyword: str | None = None, no_limit_hint: str = ""
) -> Callable[[Any], Any]:
    """Wrap a parser for use in a pydantic field, with an optional "no limit" keyword."""

    def validate(value: Any) -> Any:
        if keyword is not None and value == keyword:
            return None
        try:
            return parse(value)
        except UnitError as exc:
            expected = f"{exc.expected}, or {keyword!r}" if keyword else exc.expected
            # Kafka spells "no limit" as -1; say what the project file calls it.
            hint = no_limit_hint if keyword and value in (-1, "-1") else exc.hint
            raise invalid(expected, hint=hint) from None

    return validate


def size_at_least(minimum: int) -> AfterValidator:
    """A field check that a size is at least ``minimum`` bytes (Kafka's lower bounds)."""

    def check(value: int) -> int:
        if value < minimum:
            raise invalid(f"a size of at least {format_size(minimum)}")
        return value

    return AfterValidator(check)


#: A duration, held as milliseconds; written back as text (``7d``) when dumped.
Duration = Annotated[
    int,
    BeforeValidator(_as_field(parse_duration)),
    PlainSerializer(format_duration),
    TypeDoc("duration", format_duration),
]
#: A duration or ``forever`` (held as ``None``).
DurationOrForever = Annotated[
    int | None,
    BeforeValidator(
        _as_field(parse_duration, keyword="forever", no_limit_hint="use 'forever' for no limit")
    ),
    PlainSerializer(format_duration),
    TypeDoc("duration | 'forever'", format_duration),
]
#: A size, held as bytes; written back as text (``1GiB``) when dumped.
Size = Annotated[
    int,
    BeforeValidator(_as_field(parse_size)),
    PlainSerializer(format_size),
    TypeDoc("size", format_size),
]
#: A size or ``unlimited`` (held as ``None``).
SizeOrUnlimited = Annotated[
    int | None,
    BeforeValidator(
        _as_field(parse_size, keyword="unlimited", no_limit_hint="use 'unlimited' for no limit")
    ),
    PlainSerializer(format_size),
    TypeDoc("size | 'unlimited'", format_size),
]
