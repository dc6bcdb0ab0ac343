"""Checks on what callers put into the catalog: names, kinds, secrets, JSON.

Everything here raises :class:`~trunkline.errors.ConfigError` before anything is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from trunkline.errors import ConfigError
from trunkline.meta._schema import DATASET_NAME_LENGTH, SHORT_TEXT_LENGTH, SYSTEM_NAME_LENGTH
from trunkline.meta._types import Column, DatasetKind, SchemaRef

# No dots: resolve() splits "system.dataset" at the first dot.
_SYSTEM_NAME = re.compile(rf"^[A-Za-z][A-Za-z0-9_-]{{0,{SYSTEM_NAME_LENGTH - 1}}}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Option keys and URL query parameters that hold secrets (compared in lower case).
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "sslpassword",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "secret_key",
        "private_key",
    }
)
# libpq's key=value form: password='it''s' or password=word.
_CONNINFO_SECRET = re.compile(
    r"(?i)(?:^|\s)(?:password|sslpassword)\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S*)"
)


def system_name(name: str) -> str:
    if not isinstance(name, str) or not _SYSTEM_NAME.match(name):
        raise ConfigError(
            f"invalid system name {name!r}: expected a letter, then up to "
            f"{SYSTEM_NAME_LENGTH - 1} letters, digits, '_' or '-' (no dots: a qualified "
            "dataset name is system.dataset)"
        )
    return name


def kind(what: str, value: str) -> str:
    """An open-ended kind (of system, of job): a lower-case identifier."""
    if not isinstance(value, str) or not _KIND.match(value):
        raise ConfigError(
            f"invalid {what} {value!r}: expected a lower-case identifier "
            "such as 'postgres' or 'connector'"
        )
    return value


def dataset_kind(value: str | DatasetKind) -> DatasetKind:
    try:
        return DatasetKind(value)
    except ValueError:
        choices = ", ".join(repr(k.value) for k in DatasetKind)
        raise ConfigError(f"invalid dataset kind {value!r}: expected one of {choices}") from None


def text(what: str, value: str, *, limit: int = SHORT_TEXT_LENGTH) -> str:
    """A one-line name (dataset, job, run id, owner, tag): non-empty, no control characters."""
    if (
        not isinstance(value, str)
        or not value
        or value != value.strip()
        or len(value) > limit
        or _CONTROL.search(value)
    ):
        raise ConfigError(
            f"invalid {what} {value!r}: expected 1-{limit} characters without control "
            "characters or surrounding spaces"
        )
    return value


def dataset_name(name: str) -> str:
    return text("dataset name", name, limit=DATASET_NAME_LENGTH)


def tags(values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        raise ConfigError(f"tags must be a list of strings, not the string {values!r}")
    # Keep the caller's order; drop repeats so that tags behave as a set.
    return list(dict.fromkeys(text("tag", tag, limit=100) for tag in values))


def schema_ref(ref: SchemaRef | None) -> tuple[str | None, int | None]:
    if ref is None:
        return None, None
    if not isinstance(ref, SchemaRef):
        raise ConfigError(f"schema_ref must be a SchemaRef(subject, version), not {ref!r}")
    subject = text("schema subject", ref.subject, limit=255)
    if isinstance(ref.version, bool) or not isinstance(ref.version, int) or ref.version < 1:
        raise ConfigError(f"invalid schema version {ref.version!r}: expected an integer >= 1")
    return subject, ref.version


def columns(values: Sequence[Column] | None) -> list[dict[str, Any]] | None:
    if values is None:
        return None
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for column in values:
        if not isinstance(column, Column):
            raise ConfigError(f"columns must be Column(name, type, nullable), not {column!r}")
        name = text("column name", column.name, limit=DATASET_NAME_LENGTH)
        if name in seen:
            raise ConfigError(f"column {name!r} appears twice")
        seen.add(name)
        result.append(
            {"name": name, "type": text("column type", column.type), "nullable": column.nullable}
        )
    return result


def statistic(what: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"invalid {what} {value!r}: expected a non-negative integer or None")
    return value


def options(system: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Options as stored: JSON-serialisable, without secrets, normalised by a JSON round trip.

    The round trip makes what we compare (to skip no-op updates) equal to what we read back:
    tuples become lists, and so on.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"options of system {system!r} must be a mapping, not {values!r}")
    found = _secret_keys(values)
    if found:
        raise ConfigError(
            f"options of system {system!r} hold a secret under {found[0]!r}: secrets come "
            "from the environment (${VAR} in trunkline.yaml) and are never stored in the catalog"
        )
    try:
        normalised: dict[str, Any] = json.loads(json.dumps(values, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"options of system {system!r} are not plain JSON: {error}") from None
    return normalised


def _secret_keys(value: Any, path: str = "") -> list[str]:
    if isinstance(value, Mapping):
        found: list[str] = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in SECRET_KEYS:
                found.append(where)
            found.extend(_secret_keys(item, where))
        return found
    if isinstance(value, list | tuple):
        return [
            hit
            for index, item in enumerate(value)
            for hit in _secret_keys(item, f"{path}[{index}]")
        ]
    return []


def location(value: str) -> tuple[str, bool]:
    """The location as stored, without secrets, and whether any had to be removed.

    A location is an address for people and connectors to find the system (a DSN, a path, a
    bootstrap address); the secret to get in comes from the environment. So a password in a
    URL (``postgresql://app:secret@db/shop``), a secret query parameter (``?password=...``)
    or a libpq ``password=...`` entry is dropped rather than stored.
    """
    if not isinstance(value, str) or _CONTROL.search(value) or len(value) > 4000:
        raise ConfigError(
            f"invalid location {_CONNINFO_SECRET.sub(' password=***', str(value))!r}: expected "
            "a DSN, URL or path of at most 4000 characters without control characters"
        )
    if "://" not in value:
        if not _CONNINFO_SECRET.search(value):
            return value, False
        return " ".join(_CONNINFO_SECRET.sub(" ", value).split()), True
    parts = urlsplit(value)
    netloc, removed = parts.netloc, False
    if parts.password is not None:
        user_info, _, host = netloc.rpartition("@")
        netloc = f"{user_info.partition(':')[0]}@{host}"
        removed = True
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(key, item) for key, item in query if key.lower() not in SECRET_KEYS]
    if len(kept) != len(query):
        removed = True
    if not removed:
        return value, False
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(kept))), True
