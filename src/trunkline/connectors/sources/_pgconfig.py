"""Settings of the ``postgres_cdc`` source."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from trunkline.config import Duration
from trunkline.connectors.base import SourceSettings, settings_error

__all__ = ["PostgresCdcConfig", "default_name", "split_table"]

_SLOT = re.compile(r"^[a-z0-9_]{1,63}$")
_TABLE = re.compile(r'^(?:("(?:[^"]|"")+"|[^."]+)\.)?("(?:[^"]|"")+"|[^."]+)$')


def _as_tuple(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


def split_table(name: str) -> tuple[str, str]:
    """``schema.table`` (``public`` when left out; quoted parts keep case and dots).

    Example:
        >>> split_table('sales."Order.Lines"')
        ('sales', 'Order.Lines')
    """
    match = _TABLE.match(name.strip())
    if not match:
        raise ValueError(name)
    schema, table = match.group(1) or "public", match.group(2)

    def unquote(part: str) -> str:
        return part[1:-1].replace('""', '"') if part.startswith('"') else part

    return unquote(schema), unquote(table)


class PostgresCdcConfig(SourceSettings):
    """Settings of the ``postgres_cdc`` source."""

    dsn: SecretStr = Field(
        description="The database, as a libpq URL or key=value string "
        "(postgresql://user:password@host:5432/db); use ${VAR} for the password."
    )
    tables: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = Field(
        min_length=1,
        description="The tables to capture, as schema.table (public when left out). A table "
        "added later is snapshotted alone at the next start.",
    )
    topic_prefix: str | None = Field(
        None,
        min_length=1,
        description="Topics are <topic_prefix>.<schema>.<table>; by default the prefix is "
        "the source's name.",
    )
    slot: str | None = Field(
        None,
        description="The replication slot (lower-case letters, digits, _); by default "
        "trunkline_<source name>. One source owns it.",
    )
    publication: str | None = Field(
        None, description="The publication; by default trunkline_<source name>."
    )
    create_publication: bool = Field(
        True,
        description="Create the publication, or add missing tables to it. With false, a "
        "missing publication or table is an error that says what to run.",
    )
    snapshot: Literal["initial", "never"] = Field(
        "initial",
        description="initial: read the tables whole before streaming their changes; "
        "never: stream changes only, from when the slot is created.",
    )
    snapshot_chunk_rows: int = Field(
        100_000,
        ge=1,
        description="Rows per snapshot chunk (one query, one batch, a unit of progress).",
    )
    max_batch_rows: int = Field(
        50_000, ge=1, description="At most this many streamed changes per batch."
    )
    heartbeat_interval: Duration = Field(
        10_000,
        description="How often an idle stream writes a heartbeat into the WAL and confirms "
        "its position, so that idle tables do not hold WAL back; 0 to turn off.",
    )
    status_interval: Duration = Field(
        10_000,
        description="How often the source reports its position to the server (the server "
        "drops a replication connection silent for wal_sender_timeout, 60s by default).",
    )
    tombstones: bool = Field(
        True,
        description="Follow each delete event with a tombstone (same key, null value), so "
        "that compacted topics forget deleted rows.",
    )
    connect_timeout: Duration = Field(10_000, description="How long to wait for a connection.")

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            try:
                split_table(name)
            except ValueError:
                raise ValueError(f"expected schema.table (or table), found {name!r}") from None
        return value

    @field_validator("slot")
    @classmethod
    def _slot(cls, value: str | None) -> str | None:
        if value is not None and not _SLOT.match(value):
            raise ValueError(
                f"a slot name is 1-63 lower-case letters, digits or '_'; found {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [split_table(t) for t in self.tables]
        if len(set(names)) < len(names):
            twice = next(t for t in self.tables if names.count(split_table(t)) > 1)
            raise settings_error(type(self), "tables", twice, f"{twice!r} is listed twice")
        return self


def default_name(prefix: str, name: str) -> str:
    return (prefix + re.sub(r"[^a-z0-9_]", "_", name.lower()))[:63]
