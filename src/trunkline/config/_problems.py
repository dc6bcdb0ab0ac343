"""What is wrong with a project file, and where: :class:`Problem` and :class:`ProjectFileError`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic_core import PydanticCustomError

from trunkline.errors import ConfigError

#: The pydantic error type of every check trunkline writes itself; its context carries the
#: parts of our message (see :func:`invalid`) so that the translator can place and word it.
ERROR_TYPE = "trunkline"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a project file.

    ``line`` and ``column`` are 1-based, and ``None`` when the problem concerns the whole
    file (it is missing, unreadable or empty).

    Example:
        >>> str(Problem(Path("trunkline.yaml"), 7, 5, "unknown key 'retension'",
        ...             hint="did you mean 'retention'?"))
        "unknown key 'retension' at trunkline.yaml:7:5 - did you mean 'retention'?"
    """

    path: Path
    line: int | None
    column: int | None
    message: str
    hint: str = ""

    @property
    def location(self) -> str:
        """``file:line:column``, or just the file for problems without a position."""
        if self.line is None:
            return str(self.path)
        return f"{self.path}:{self.line}:{self.column}"

    def __str__(self) -> str:
        text = f"{self.message} at {self.location}"
        return f"{text} - {self.hint}" if self.hint else text


class ProjectFileError(ConfigError):
    """A project file could not be loaded; :attr:`problems` holds everything found wrong.

    ``str()`` lists the problems one per line, in file order.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        ordered = sorted(set(problems), key=lambda p: (p.line or 0, p.column or 0, p.message))
        self.problems: tuple[Problem, ...] = tuple(ordered)
        super().__init__("\n".join(str(p) for p in self.problems))


def invalid(
    expected: str | None = None,
    *,
    message: str | None = None,
    found: str | None = None,
    hint: str | None = None,
) -> PydanticCustomError:
    """The error a trunkline validator raises inside pydantic validation.

    Give either ``expected`` (worded as "expected {expected} for 'key', found {value}") or a
    whole ``message``. ``found`` replaces the shown value (for values that must not be
    echoed, such as URLs with passwords). Validators must not put the input into any of these
    texts: the translator adds it, and hides it when it came from the environment.
    """
    context: dict[str, str] = {}
    if expected is not None:
        context["expected"] = expected
    if message is not None:
        context["message"] = message
    if found is not None:
        context["found"] = found
    if hint:
        context["hint"] = hint
    summary = message if message is not None else f"expected {expected}"
    # The template goes through str.format with the context; keep user text out of it.
    context["summary"] = summary
    return PydanticCustomError(ERROR_TYPE, "{summary}", context)
