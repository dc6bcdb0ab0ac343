"""``${VAR}`` references in project-file strings, resolved from an environment mapping.

``${VAR}`` is replaced by the variable's value; ``${VAR:-default}`` uses ``default`` when
the variable is unset or empty (as in the shell); ``$${VAR}`` is the literal text ``${VAR}``.
Defaults cannot contain ``{`` or ``}``; a ``$`` not followed by ``{`` is plain text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_REFERENCE = re.compile(r"(?P<escape>\$\$\{)|\$\{(?P<body>[^{}]*)\}|(?P<broken>\$\{)")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Substitution:
    """The result of resolving one string.

    ``secrets`` are the environment values that went into ``text`` (defaults written in the
    file are not secret); ``problems`` are (message, hint) pairs for references that could
    not be resolved, in which case ``text`` must not be used.
    """

    text: str
    variables: tuple[str, ...]
    secrets: tuple[str, ...]
    problems: tuple[tuple[str, str], ...]


def substitute(text: str, env: Mapping[str, str]) -> Substitution:
    """Resolve the ``${VAR}`` references in ``text`` from ``env``.

    Example:
        >>> substitute("postgresql://app:${PW}@db/shop", {"PW": "s3cret"}).text
        'postgresql://app:s3cret@db/shop'
    """
    variables: list[str] = []
    secrets: list[str] = []
    problems: list[tuple[str, str]] = []

    def resolve(match: re.Match[str]) -> str:
        if match["escape"]:
            return "${"
        if match["broken"]:
            problems.append(
                (
                    "unclosed variable reference '${'",
                    "write ${NAME} or ${NAME:-default}, or $${ for a literal '${'",
                )
            )
            return ""
        body = _BODY.fullmatch(match["body"])
        if body is None:
            problems.append(
                (
                    f"invalid variable reference {match[0]!r}",
                    "names are letters, digits and '_', not starting with a digit",
                )
            )
            return ""
        name, default = body["name"], body["default"]
        variables.append(name)
        value = env.get(name)
        if value:
            secrets.append(value)
            return value
        if default is not None:
            return default
        if value is None:
            problems.append(
                (
                    f"environment variable {name!r} is not set",
                    f"set it, or give a default with ${{{name}:-default}}",
                )
            )
        return ""

    result = _REFERENCE.sub(resolve, text)
    return Substitution(
        text=result,
        variables=tuple(dict.fromkeys(variables)),
        secrets=tuple(dict.fromkeys(secrets)),
        problems=tuple(problems),
    )
