"""Quoting names and values for SQL that trunkline writes itself (DuckDB's dialect).

Names from data (JSON keys, topic names) reach SQL only through :func:`quote_identifier`:
a name is wrapped in double quotes and each double quote inside is doubled, the rule of the
SQL standard that DuckDB follows, so any name, however odd, stays one identifier. NUL
characters are refused because DuckDB cannot store them in a name.
"""

from __future__ import annotations

from trunkline.errors import ConfigError

__all__ = ["qualified", "quote_identifier", "quote_literal"]


def quote_identifier(name: str) -> str:
    """``name`` as one quoted SQL identifier.

    Example:
        >>> quote_identifier('a"b')
        '"a""b"'
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigError(f"expected a non-empty name without NUL characters, found {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as one SQL string literal.

    Example:
        >>> quote_literal("it's")
        "'it''s'"
    """
    if "\x00" in value:
        raise ConfigError(f"expected text without NUL characters, found {value!r}")
    return "'" + value.replace("'", "''") + "'"


def qualified(schema: str, table: str) -> str:
    """``schema.table``, each part quoted.

    Example:
        >>> qualified("main", "orders")
        '"main"."orders"'
    """
    return f"{quote_identifier(schema)}.{quote_identifier(table)}"
