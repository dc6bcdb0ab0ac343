"""Settings that sinks writing topics into tables share: which table, append or upsert, key."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, model_validator

from trunkline.connectors.base import SinkSettings, settings_error
from trunkline.connectors.sinks._changes import ValueFormat

__all__ = ["TableSinkSettings", "table_name"]


def table_name(topic: str) -> str:
    """The default table of a topic: its name with every character but letters, digits and
    ``_`` replaced by ``_`` (``shop.public.orders`` -> ``shop_public_orders``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", topic)


class TableSinkSettings(SinkSettings):
    """Settings of a sink that writes each topic into a table (``duckdb``, ``iceberg``...)."""

    table: str | None = Field(
        None,
        min_length=1,
        description="The table of the (one) topic; by default the topic's name with '.' and "
        "'-' turned into '_'.",
    )
    tables: dict[str, str] = Field(
        default_factory=dict, description="Table per topic, for sinks that read several topics."
    )
    mode: Literal["append", "upsert"] = Field(
        "append",
        description="append: every record becomes a row. upsert: one row per key, replaced "
        "by newer records and removed by deletes (tombstones, Debezium 'd' events).",
    )
    key: tuple[str, ...] = Field(
        (), description="The primary key columns (upsert mode only); must be in the values."
    )
    format: ValueFormat = Field(
        "auto",
        description="What the values are: json (one row per value), debezium (change "
        "events with before/after/op) or auto (decide by their fields).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode == "upsert" and not self.key:
            raise settings_error(
                type(self),
                "mode",
                self.mode,
                "mode 'upsert' needs the primary key columns in 'key'",
                "add key: [id] (the columns that identify a row)",
            )
        if self.mode == "append" and self.key:
            raise settings_error(
                type(self),
                "key",
                list(self.key),
                "'key' only applies to mode 'upsert'; append mode keeps every record",
                "set mode: upsert, or remove key",
            )
        if self.table is not None and len(self.topics) > 1:
            raise settings_error(
                type(self),
                "table",
                self.table,
                f"'table' names the table of one topic; this sink reads {len(self.topics)}",
                "use tables: {topic: table} instead",
            )
        unknown = sorted(set(self.tables) - set(self.topics))
        if unknown:
            raise settings_error(
                type(self),
                "tables",
                unknown[0],
                f"'tables' names topic {unknown[0]!r}, which is not in 'topics'",
            )
        return self

    def table_for(self, topic: str) -> str:
        if topic in self.tables:
            return self.tables[topic]
        if self.table is not None:
            return self.table
        return table_name(topic)
