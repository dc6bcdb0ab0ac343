# ruff: noqa: S608  - SQL here is built from quoted names; values are bound as parameters.
"""Stateless transforms, written in YAML beside a connector's settings, run on whole batches.

Any source or sink takes a ``transforms:`` list; the runtime applies it to every batch a
source returns (before the hub) or a sink receives (before the sink). Each item is one step:

.. code-block:: yaml

    transforms:
      - filter: "amount > 0 AND status <> 'test'"   # a SQL expression (DuckDB)
      - select: [order_id, customer, email, amount, country]
      - rename: {customer: customer_id}
      - cast: {amount: "decimal(12,2)"}            # the type names of `schema:`
      - hash: {columns: [email], salt: "${PII_SALT}"}
      - mask: {columns: pii, keep_last: 4}         # pii: the fields the topic's contract
      - route: {field: country, topics: {DE: orders.de, FR: orders.fr}}   # sources only

Steps work on the fields of the JSON values: a batch is decoded to Arrow once, each step is
one DuckDB query over the whole batch, and the result is encoded back to JSON values (so a
field that only some records of a batch have is written as null in the others). Keys,
timestamps and headers stay as they were. Tombstones (null values) and values that are not
JSON objects pass through untouched (a sink dead-letters the latter as usual); a field a
batch does not have reads as null. A value that does not convert in ``cast`` goes to the
connector's dead-letter topic (stage ``transform``); a converted value is written back as
JSON, so ``cast`` turns text into numbers, booleans or timestamps and rounds decimals, but
a type JSON has no spelling for (decimal, date) reaches the sink as a number or text.
``hash`` is SHA-256 of the salt and the value's text; the salt must come from the
environment (``${VAR}``), so it never sits in the project file. Error messages never show
the values of fields a contract calls pii.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from trunkline.config import ConfigModel
from trunkline.config._base import EnvValue
from trunkline.config._problems import invalid
from trunkline.connectors._json import JsonEncoder, decode_json
from trunkline.connectors._sql import quote_identifier
from trunkline.errors import ConfigError, ConnectorError
from trunkline.hub._types import check_topic_name

__all__ = [
    "CAST_TYPES",
    "SinkStep",
    "SourceStep",
    "Transformed",
    "Transforms",
    "route_topics",
]

#: The type names ``cast`` takes (those of the files source's ``schema:``), as DuckDB types.
CAST_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "text": "VARCHAR",
    "int": "BIGINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "bigint": "BIGINT",
    "float": "DOUBLE",
    "double": "DOUBLE",
    "float32": "FLOAT",
    "bool": "BOOLEAN",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "binary": "BLOB",
}
ROW = "__trunkline_row"
TOPIC = "__trunkline_topic"
_HELPERS = (ROW, TOPIC)
_KINDS = ("filter", "select", "rename", "cast", "hash", "mask", "route")


# Settings ------------------------------------------------------------------------------


def _sql_type(name: str) -> str:
    """The DuckDB type of a ``cast`` type name; KeyError if unknown."""
    text = name.strip().lower()
    if text in CAST_TYPES:
        return CAST_TYPES[text]
    if text.startswith("decimal(") and text.endswith(")"):
        parts = text[len("decimal(") : -1].split(",")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            precision, scale = (int(p) for p in parts)
            if 1 <= precision <= 38 and 0 <= scale <= precision:
                return f"DECIMAL({precision},{scale})"
    raise KeyError(name)


def _check_casts(value: Mapping[str, str]) -> Mapping[str, str]:
    for column, kind in value.items():
        try:
            _sql_type(kind)
        except KeyError:
            close = difflib.get_close_matches(kind.lower(), list(CAST_TYPES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise invalid(
                message=f"unknown type {kind!r} for field {column!r}",
                hint=f"{hint}known: {', '.join([*CAST_TYPES, 'decimal(p,s)'])}",
            ) from None
    return value


def _parse_filter(expression: str) -> tuple[str, ...]:
    """Check a filter expression with DuckDB's own parser; the top-level fields it reads."""
    con = duckdb.connect()
    try:
        row = con.execute(
            "SELECT json_serialize_sql(?)", [f"SELECT * FROM t WHERE ({expression})"]
        ).fetchone()
    finally:
        con.close()
    tree: dict[str, Any] = json.loads(row[0]) if row else {"error": True, "error_message": "?"}
    if tree.get("error"):
        raise invalid(message=f"not a SQL expression: {tree.get('error_message', '')}")
    statements: list[dict[str, Any]] = tree.get("statements") or []
    node: dict[str, Any] = statements[0].get("node", {}) if len(statements) == 1 else {}
    where = node.get("where_clause")
    if node.get("type") != "SELECT_NODE" or where is None or '"SUBQUERY"' in json.dumps(where):
        raise invalid(
            message="expected one expression over the fields of a record (no subqueries)",
            hint="e.g. amount > 0 AND status <> 'test'",
        )
    return tuple(dict.fromkeys(_columns(where)))


def _columns(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("class") == "COLUMN_REF" and node.get("column_names"):
            found.append(str(node["column_names"][0]))
        for value in node.values():
            found += _columns(value)
    elif isinstance(node, list):
        for value in node:
            found += _columns(value)
    return found


def _check_filter(value: str) -> str:
    if not value.strip():
        raise invalid("a SQL expression such as amount > 0")
    _parse_filter(value)
    return value


def _columns_or_pii(value: Any) -> Any:
    if isinstance(value, str) and value != "pii":
        return (value,)
    return value


Columns = Annotated[
    Literal["pii"] | tuple[str, ...],
    BeforeValidator(_columns_or_pii),
]


class MaskSettings(ConfigModel):
    """``mask``: replace values with ``****`` (and their last characters, if asked)."""

    columns: Columns = Field(
        description="The fields to mask, or 'pii' for the fields the topic's contract "
        "classifies as pii."
    )
    keep_last: int = Field(
        0, ge=0, le=16, description="Show this many last characters after the stars."
    )


def _from_environment(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, EnvValue):
        raise invalid(
            message="the salt must come from the environment, not the project file",
            hint='write salt: "${PII_SALT}" and set PII_SALT where trunkline runs',
        )
    return value


class HashSettings(ConfigModel):
    """``hash``: replace values with the SHA-256 (hex) of a secret salt and their text."""

    columns: Columns = Field(
        description="The fields to hash, or 'pii' for the fields the topic's contract "
        "classifies as pii."
    )
    salt: Annotated[SecretStr, BeforeValidator(_from_environment)] = Field(
        description="The secret salt, from the environment: '${VAR}'. The same salt gives "
        "the same hash, so hashed fields still join."
    )


def _check_topic(value: str) -> str:
    try:
        return check_topic_name(value)
    except ConfigError:
        raise invalid("a topic name of 1-249 letters, digits, '.', '_' or '-'") from None


class RouteSettings(ConfigModel):
    """``route``: send each record to a topic chosen by the value of one field."""

    field: str = Field(min_length=1, description="The field whose value (as text) decides.")
    topics: dict[str, Annotated[str, AfterValidator(_check_topic)]] = Field(
        min_length=1, description="Topic per value, e.g. {DE: orders.de, FR: orders.fr}."
    )
    default: Annotated[str, AfterValidator(_check_topic)] | None = Field(
        None,
        description="Where records with another value (or none) go; by default the topic "
        "the source writes them to.",
    )


def _one_key(data: Any, allowed: Sequence[str]) -> Any:
    if not isinstance(data, Mapping):
        return data
    given = [k for k in data if k in _KINDS]
    if len(given) > 1:
        raise invalid(
            message=f"one step per list item: found {' and '.join(map(repr, given))}",
            hint="write each as its own '- ' item; they run in list order",
        )
    if not data:
        raise invalid(message=f"an empty step: expected one of {', '.join(allowed)}")
    return data


class SinkStep(ConfigModel):
    """One transform step of a sink: exactly one of the keys below."""

    filter: Annotated[str, AfterValidator(_check_filter)] | None = Field(
        None,
        description="Keep the records for which this SQL expression (DuckDB) is true, e.g. "
        "\"amount > 0 AND country IN ('DE', 'FR')\"; fields of nested objects: after.amount.",
    )
    select: tuple[str, ...] | None = Field(
        None, min_length=1, description="Keep only these fields, in this order."
    )
    rename: dict[str, str] | None = Field(
        None, min_length=1, description="New names for fields: {old: new}."
    )
    cast: Annotated[dict[str, str], AfterValidator(_check_casts)] | None = Field(
        None,
        min_length=1,
        description="Convert fields to types: {amount: 'decimal(12,2)', ts: timestamptz}. "
        "Types: " + ", ".join([*CAST_TYPES, "decimal(p,s)"]) + ". Records whose value does "
        "not convert go to the dead-letter topic.",
    )
    hash: HashSettings | None = Field(
        None, description="Replace fields by a salted SHA-256 (for pii: still joinable)."
    )
    mask: MaskSettings | None = Field(None, description="Replace fields by '****'.")

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "route" in data and "route" not in cls.model_fields:
            raise invalid(
                message="'route' applies to sources only: a sink writes the topics it reads",
                hint="route in the source that writes the topic, or filter in this sink",
            )
        return _one_key(data, [k for k in _KINDS if k in cls.model_fields])

    @property
    def kind(self) -> str:
        return next(k for k in _KINDS if getattr(self, k, None) is not None)


class SourceStep(SinkStep):
    """One transform step of a source: exactly one of the keys below."""

    route: RouteSettings | None = Field(
        None,
        description="Send each record to a topic chosen by one field's value: "
        "{field: country, topics: {DE: orders.de}, default: orders.other}.",
    )


def route_topics(steps: Sequence[SinkStep]) -> tuple[str, ...]:
    """Every topic a ``route`` step of ``steps`` may send records to."""
    topics: list[str] = []
    for step in steps:
        route = getattr(step, "route", None)
        if route is not None:
            topics += [*route.topics.values(), *([route.default] if route.default else [])]
    return tuple(dict.fromkeys(topics))


# Running -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transformed:
    """A batch after the transforms.

    ``rows`` are the input positions kept, in input order; ``values`` their new values
    (aligned with ``rows``); ``topics`` the topic of each (None: no ``route``, every
    record stays in its topic). ``dead`` lists input positions dropped as dead letters,
    with why; ``filtered`` counts records a ``filter`` dropped.
    """

    rows: np.ndarray
    values: pa.Array
    topics: pa.Array | None
    dead: list[tuple[int, str]]
    filtered: int


class Transforms:
    """Compiled transform steps of one connector; one per thread (it owns DuckDB).

    Args:
        steps: The validated steps.
        connector: The connector's name, for messages.
        pii: Per topic, the fields its contract classifies as pii (for ``columns: pii``, and
            so that their values never appear in messages).

    Example:
        >>> steps = [SinkStep(filter="amount > 1"), SinkStep(select=("id",))]
        >>> out = Transforms(steps).apply(pa.array([b'{"id": 1, "amount": 5}',
        ...                                         b'{"id": 2, "amount": 0}']), "orders")
        >>> out.rows.tolist(), out.values.to_pylist()
        ([0], [b'{"id":1}'])
    """

    def __init__(
        self,
        steps: Sequence[SinkStep],
        *,
        connector: str = "",
        pii: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.steps = tuple(steps)
        self.connector = connector
        self.pii = dict(pii or {})
        self._filters = {
            i: _parse_filter(s.filter) for i, s in enumerate(self.steps) if s.filter is not None
        }
        self._con: duckdb.DuckDBPyConnection | None = None
        self._encoder: JsonEncoder | None = None

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def routes(self) -> bool:
        return any(getattr(s, "route", None) is not None for s in self.steps)

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None
        if self._con is not None:
            self._con.close()
            self._con = None

    def apply(self, values: pa.Array | pa.ChunkedArray, topic: str) -> Transformed:
        """Run the steps over a batch's value column (records of ``topic``)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        n = len(values)
        decoded = decode_json(values)
        table = decoded.table.append_column(ROW, pa.array(decoded.rows, pa.int64()))
        dead: list[tuple[int, str]] = []
        filtered = 0
        for i, step in enumerate(self.steps):
            rows_before = table.num_rows
            table, letters = self._step(i, step, table, topic)
            dead += letters
            if step.filter is not None:
                filtered += rows_before - table.num_rows
        if self._encoder is None:
            self._encoder = JsonEncoder()
        data = table.drop_columns([c for c in _HELPERS if c in table.column_names])
        if data.num_columns:
            encoded = self._encoder.encode(data).column("value").combine_chunks()
        else:
            encoded = pa.array([b"{}"] * table.num_rows, pa.binary())
        transformed = np.asarray(table.column(ROW).to_numpy(), dtype=np.int64)
        untouched = np.ones(n, dtype=bool)
        untouched[decoded.rows] = False  # tombstones and values that are not JSON objects
        passed = np.flatnonzero(untouched)
        rows = np.concatenate([passed, transformed])
        # Records keep their input order (offsets, and the order of a key's changes).
        order = pa.array(np.argsort(rows, kind="stable"))
        originals = values.take(pa.array(passed)).cast(pa.binary())
        out_values = pa.concat_arrays([originals, encoded]).take(order)
        topics = None
        if self.routes:
            routed = (
                table.column(TOPIC).combine_chunks().cast(pa.string())
                if TOPIC in table.column_names
                else pa.nulls(table.num_rows, pa.string())
            )
            own = pa.repeat(pa.scalar(topic, pa.string()), len(passed))
            topics = pc.fill_null(pa.concat_arrays([own, routed]), topic).take(order)
        return Transformed(rows[order.to_numpy()], out_values, topics, sorted(dead), filtered)

    # -- steps ------------------------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = duckdb.connect()
        return self._con

    def _query(self, table: pa.Table, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        con = self._connection()
        con.register("__t", table)
        try:
            return con.execute(sql, list(params)).to_arrow_table()
        finally:
            con.unregister("__t")

    def _fail(self, i: int, step: SinkStep, exc: Exception) -> ConnectorError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ConnectorError(
            f"transform {i + 1} ({step.kind}) of {self.connector or 'this connector'} "
            f"failed: {text}",
            retryable=False,
        )

    def _step(
        self, i: int, step: SinkStep, table: pa.Table, topic: str
    ) -> tuple[pa.Table, list[tuple[int, str]]]:
        try:
            if step.filter is not None:
                absent = [c for c in self._filters[i] if c not in table.column_names]
                table = _with_columns(table, absent)
                kept = self._query(table, f"SELECT * FROM __t WHERE ({step.filter})")
                return kept.drop_columns(absent), []
            if step.select is not None:
                helpers = [c for c in _HELPERS if c in table.column_names]
                picked = [
                    quote_identifier(c)
                    if c in table.column_names
                    else f"NULL AS {quote_identifier(c)}"
                    for c in step.select
                ]
                return self._query(table, f"SELECT {', '.join([*helpers, *picked])} FROM __t"), []
            if step.rename is not None:
                names = [step.rename.get(c, c) for c in table.column_names]
                duplicated = sorted({n for n in names if names.count(n) > 1})
                if duplicated:
                    raise ValueError(f"renaming makes two fields named {duplicated[0]!r}")
                return table.rename_columns(names), []
            if step.cast is not None:
                return self._cast(step.cast, table, topic)
            if step.hash is not None:
                return self._hash(step.hash, table, topic), []
            if step.mask is not None:
                return self._mask(step.mask, table, topic), []
            route = getattr(step, "route", None)
            if route is not None:
                return self._route(route, table, topic), []
        except duckdb.Error as exc:
            raise self._fail(i, step, exc) from exc
        except ValueError as exc:
            raise self._fail(i, step, exc) from exc
        raise AssertionError(f"unknown step {step!r}")

    def _selected(self, columns: Literal["pii"] | tuple[str, ...], topic: str) -> list[str]:
        return list(self.pii.get(topic, ())) if columns == "pii" else list(columns)

    def _cast(
        self, casts: Mapping[str, str], table: pa.Table, topic: str
    ) -> tuple[pa.Table, list[tuple[int, str]]]:
        present = {c: _sql_type(t) for c, t in casts.items() if c in table.column_names}
        if not present:
            return table, []
        q = quote_identifier
        fails = [
            f"({q(c)} IS NOT NULL AND TRY_CAST({q(c)} AS {t}) IS NULL)" for c, t in present.items()
        ]
        flags = ", ".join(f"{f} AS __f{i}" for i, f in enumerate(fails))
        texts = ", ".join(f"CAST({q(c)} AS VARCHAR) AS __v{i}" for i, c in enumerate(present))
        bad = self._query(
            table, f"SELECT {q(ROW)}, {flags}, {texts} FROM __t WHERE {' OR '.join(fails)}"
        )
        letters: list[tuple[int, str]] = []
        if bad.num_rows:
            hidden = set(self.pii.get(topic, ()))
            for row in bad.to_pylist():
                reasons = []
                for i, (c, t) in enumerate(present.items()):
                    if row[f"__f{i}"]:
                        shown = "a value" if c in hidden else repr(row[f"__v{i}"][:40])
                        reasons.append(f"field {c!r}: {shown} is not a {t}")
                letters.append((int(row[ROW]), "cast: " + "; ".join(reasons)))
            keep = pc.invert(pc.is_in(table.column(ROW), bad.column(ROW)))
            table = table.filter(keep)
        replaced = ", ".join(f"TRY_CAST({q(c)} AS {t}) AS {q(c)}" for c, t in present.items())
        return self._query(table, f"SELECT * REPLACE ({replaced}) FROM __t"), letters

    def _hash(self, settings: HashSettings, table: pa.Table, topic: str) -> pa.Table:
        columns = [c for c in self._selected(settings.columns, topic) if c in table.column_names]
        if not columns:
            return table
        q = quote_identifier
        # The salt is a bound parameter: it never becomes part of the SQL text.
        replaced = ", ".join(
            f"CASE WHEN {q(c)} IS NULL THEN NULL ELSE sha256($salt || CAST({q(c)} AS VARCHAR)) "
            f"END AS {q(c)}"
            for c in columns
        )
        con = self._connection()
        con.register("__t", table)
        try:
            return con.execute(
                f"SELECT * REPLACE ({replaced}) FROM __t",
                {"salt": settings.salt.get_secret_value()},
            ).to_arrow_table()
        finally:
            con.unregister("__t")

    def _mask(self, settings: MaskSettings, table: pa.Table, topic: str) -> pa.Table:
        columns = [c for c in self._selected(settings.columns, topic) if c in table.column_names]
        if not columns:
            return table
        q = quote_identifier
        k = settings.keep_last
        parts = []
        for c in columns:
            text = f"CAST({q(c)} AS VARCHAR)"
            shown = f"'****' || right({text}, {k})" if k else "'****'"
            parts.append(
                f"CASE WHEN {q(c)} IS NULL THEN NULL WHEN length({text}) <= {k} THEN '****' "
                f"ELSE {shown} END AS {q(c)}"
            )
        return self._query(table, f"SELECT * REPLACE ({', '.join(parts)}) FROM __t")

    def _route(self, route: RouteSettings, table: pa.Table, topic: str) -> pa.Table:
        if route.field not in table.column_names:
            return _set(table, TOPIC, pa.repeat(pa.scalar(route.default or topic), table.num_rows))
        keys = pa.array(list(route.topics), pa.string())
        targets = pa.array(list(route.topics.values()), pa.string())
        field = table.column(route.field)
        if not pa.types.is_string(field.type):
            field = self._query(
                table, f"SELECT CAST({quote_identifier(route.field)} AS VARCHAR) FROM __t"
            ).column(0)
        index = pc.index_in(field, value_set=keys)
        chosen = pc.fill_null(pc.take(targets, index), route.default or topic)
        return _set(table, TOPIC, chosen)


def _set(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


def _with_columns(table: pa.Table, names: Sequence[str]) -> pa.Table:
    """``table`` with a null column for each of ``names`` it lacks (fields absent in a batch)."""
    for name in names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table
