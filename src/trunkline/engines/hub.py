"""The hub engine: scans a topic as Arrow, applying filters and projections while reading.

It runs one kind of fragment: ``SELECT columns FROM topic WHERE predicate`` (the predicate
made of comparisons, ``AND``/``OR``/``NOT``, ``IN``, ``BETWEEN``, ``IS NULL``, ``LIKE`` and
arithmetic, plus ``col IN (SELECT key FROM keyset)`` for semi-join reduction). Each
partition is fetched from its start offset (or from the first offset at or after a
``_timestamp >=`` bound) up to the end offsets seen when the scan began, so a scan is a
consistent snapshot even while producers append. Only the fields a query needs are decoded.

``state(topic)`` reads a Debezium-envelope topic as the current state of its table: the
newest event per key wins; deletes and tombstones remove the key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from trunkline.engines._topics import RECORD_COLUMNS, LayoutLookup, decode
from trunkline.engines.base import Capabilities, Fragment, Source, Step, Verdict, check
from trunkline.errors import EngineError, HubError
from trunkline.hub import Hub

#: Expression kinds the scan evaluates in Arrow (sqlglot's keys, upper case).
HUB_FUNCTIONS = frozenset(
    {
        "EQ",
        "NEQ",
        "GT",
        "GTE",
        "LT",
        "LTE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "BETWEEN",
        "IS",
        "LIKE",
        "ILIKE",
        "CAST",
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "NEG",
    }
)

CAPABILITIES = Capabilities(
    operators=frozenset({"scan", "filter", "project", "semi_join_keys"}),
    functions=HUB_FUNCTIONS,
    reads=frozenset({"hub"}),
    accepts_arrow=False,
    dialect=None,
)

_FETCH_RECORDS = 1_000_000
_FETCH_BYTES = 256 * 1024 * 1024


class _Unsupported(Exception):
    pass


class HubEngine:
    """Reads topics of one hub. ``layouts`` says what a topic's values hold."""

    name = "hub"
    kind = "hub"
    system: str | None = None
    capabilities = CAPABILITIES

    def __init__(self, hub: Hub, layouts: LayoutLookup) -> None:
        self._hub = hub
        self._layouts = layouts

    def can_run(self, step: Step) -> Verdict:
        return check(self.capabilities, self.system, step)

    def close(self) -> None:
        """The hub belongs to the project; nothing to release here."""

    # -- the fragment's parts ------------------------------------------------------------

    @staticmethod
    def _parts(fragment: Fragment) -> tuple[Source, exp.Select]:
        query = fragment.query
        if not isinstance(query, exp.Select) or query.args.get("joins"):
            raise EngineError("the hub engine scans one topic per step", engine="hub")
        table = query.args["from_"].this
        source = fragment.sources.get(table.name)
        if source is None:
            raise EngineError(f"the hub engine has no topic for {table.name!r}", engine="hub")
        return source, query

    def render(self, fragment: Fragment) -> str:
        source, query = self._parts(fragment)
        what = "state of topic" if source.state_of else "topic"
        if source.options.get("offsets"):
            what = f"offsets {dict(source.options['offsets'])} of topic"
        columns = ", ".join(p.sql("duckdb") for p in query.expressions)
        text = f"scan {what} {source.name!r} [{columns}]"
        where = query.args.get("where")
        if where is not None:
            text += f" where {where.this.sql('duckdb')}"
        return text

    def run(self, fragment: Fragment) -> pa.Table:
        source, query = self._parts(fragment)
        where = query.args.get("where")
        predicate = where.this if where is not None else None
        needed = _columns(query)
        layout = self._layouts(source.name)
        try:
            if source.state_of:
                table = self._state(source.name, layout.envelope)
            else:
                table = self._read(
                    source.name,
                    layout.fields,
                    needed,
                    _time_from(predicate),
                    source.options.get("offsets"),
                )
            if predicate is not None:
                table = table.filter(_Arrow(table.schema, fragment.inputs).expr(predicate))
            return _project(table, query)
        except _Unsupported as exc:
            raise EngineError(f"the hub engine cannot evaluate {exc}", engine="hub") from None
        except HubError as exc:
            raise EngineError(f"hub: reading {source.name!r} failed: {exc}", engine="hub") from exc

    # -- reading -------------------------------------------------------------------------

    def _records(
        self, topic: str, time_from: int | None, ranges: Mapping[str, Any] | None = None
    ) -> pa.Table:
        ends = self._hub.end_offsets(topic)
        starts = self._hub.start_offsets(topic)
        if ranges:
            # An increment of a continuous flow: exactly these offsets of each partition.
            starts = {p: max(starts[p], int(ranges[str(p)][0])) for p in ends if str(p) in ranges}
            ends = {p: min(ends[p], int(ranges[str(p)][1])) for p in starts}
        if time_from is not None:
            found = self._hub.offsets_for_time(topic, time_from)
            starts = {p: ends[p] if found.get(p) is None else int(found[p] or 0) for p in ends}
        tables: list[pa.Table] = []
        for partition in sorted(ends):
            offset, end = starts.get(partition, 0), ends[partition]
            while offset < end:
                batch = self._hub.fetch(
                    topic, partition, offset, max_records=_FETCH_RECORDS, max_bytes=_FETCH_BYTES
                )
                records = batch.records
                if records.num_rows == 0:
                    break
                last = records.column("offset")[-1].as_py()
                if last >= end:
                    records = records.filter(pc.less(records.column("offset"), end))
                tables.append(
                    records.append_column(
                        "partition", pa.repeat(pa.scalar(partition, pa.int32()), records.num_rows)
                    )
                )
                offset = batch.next_offset
        if not tables:
            return pa.schema(
                [
                    ("offset", pa.int64()),
                    ("timestamp", pa.timestamp("ms", tz="UTC")),
                    ("key", pa.binary()),
                    ("value", pa.binary()),
                    ("partition", pa.int32()),
                ]
            ).empty_table()
        names = ["offset", "timestamp", "key", "value", "partition"]
        return pa.concat_tables([t.select(names) for t in tables]).combine_chunks()

    def _read(
        self,
        topic: str,
        fields: tuple[tuple[str, pa.DataType], ...],
        needed: set[str] | None,
        time_from: int | None,
        ranges: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        records = self._records(topic, time_from, ranges)
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        if fields:
            wanted = [(n, t) for n, t in fields if needed is None or n in needed]
            present = pc.is_valid(records.column("value"))
            if not pc.all(present).as_py():
                records = records.filter(present)  # tombstones hold no row
            if wanted:
                values = records.column("value").combine_chunks()
                decoded = decode(values, wanted, topic)
                for name in decoded.column_names:
                    columns[name] = decoded.column(name)
        else:
            columns["value"] = records.column("value")
        columns["_partition"] = records.column("partition")
        columns["_offset"] = records.column("offset")
        columns["_timestamp"] = records.column("timestamp")
        columns["_key"] = records.column("key")
        return pa.table(columns)

    def _state(self, topic: str, envelope: tuple[tuple[str, pa.DataType], ...]) -> pa.Table:
        if not envelope:
            raise EngineError(
                f"state({topic}): the topic's values are not Debezium change events (a "
                "schema with before, after, op and source, 'after' an object)",
                engine="hub",
            )
        records = self._records(topic, None)
        after = pa.struct(list(envelope))
        present = pc.is_valid(records.column("value"))
        events = records.filter(present)
        tombstones = records.filter(pc.invert(present))
        decoded = decode(
            events.column("value").combine_chunks(), [("op", pa.string()), ("after", after)], topic
        )

        def changes(part: pa.Table, op: Any, image: Any) -> pa.Table:
            return pa.table(
                {
                    "k": part.column("key"),
                    "p": part.column("partition"),
                    "o": part.column("offset"),
                    "op": op,
                    "after": image,
                }
            )

        log = pa.concat_tables(
            [
                changes(events, decoded.column("op"), decoded.column("after")),
                changes(
                    tombstones,
                    pa.nulls(tombstones.num_rows, pa.string()),
                    pa.nulls(tombstones.num_rows, after),
                ),
            ]
        )
        names = ", ".join(f'after."{n}" AS "{n}"' for n, _ in envelope)
        with duckdb.connect() as con:
            con.register("changes", log)
            # Newest event per key wins; a delete or a tombstone (op is NULL) removes it.
            latest = con.execute(
                f"SELECT {names} FROM (SELECT *, row_number() OVER "
                "(PARTITION BY k ORDER BY p DESC, o DESC) AS n FROM changes) "
                "WHERE n = 1 AND op IS NOT NULL AND op <> 'd'"
            ).to_arrow_table()
        return pa.Table.from_arrays(
            [latest.column(i).cast(t) for i, (_, t) in enumerate(envelope)],
            names=[n for n, _ in envelope],
        )


def _columns(query: exp.Select) -> set[str] | None:
    """The value fields a query needs (None: all of them)."""
    if any(isinstance(p, exp.Star) for p in query.expressions):
        return None
    return {c.name for c in query.find_all(exp.Column)}


def _time_from(predicate: exp.Expression | None) -> int | None:
    """Milliseconds of a ``_timestamp >= / >`` bound among the predicate's conjuncts."""
    if predicate is None:
        return None
    bounds = []
    for part in predicate.flatten() if isinstance(predicate, exp.And) else [predicate]:
        if (
            isinstance(part, exp.GTE | exp.GT)
            and isinstance(part.this, exp.Column)
            and part.this.name == "_timestamp"
        ):
            value = _constant(part.expression, pa.timestamp("ms", tz="UTC"))
            if isinstance(value, dt.datetime):
                stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
                bounds.append(int(stamp.timestamp() * 1000))
    return max(bounds) if bounds else None


def _project(table: pa.Table, query: exp.Select) -> pa.Table:
    arrays, names = [], []
    for item in query.expressions:
        if isinstance(item, exp.Star):
            visible = [n for n in table.column_names if n not in dict(RECORD_COLUMNS)]
            arrays += [table.column(n) for n in visible]
            names += visible
            continue
        inner = item.this if isinstance(item, exp.Alias) else item
        if not isinstance(inner, exp.Column):
            raise _Unsupported(f"projection {item.sql('duckdb')}")
        arrays.append(table.column(inner.name))
        names.append(item.alias_or_name)
    return pa.Table.from_arrays(arrays, names=names)


def _constant(node: exp.Expression, hint: pa.DataType | None) -> Any:
    """A literal's Python value, typed after the column it is compared with."""
    if isinstance(node, exp.Paren):
        return _constant(node.this, hint)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return node.this
    if isinstance(node, exp.Neg):
        value = _constant(node.this, hint)
        return -value
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        target = node.to.this
        text = node.this.name
        if target == exp.DataType.Type.DATE:
            return dt.date.fromisoformat(text)
        if target in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ):
            return dt.datetime.fromisoformat(text)
        return _constant(node.this, hint)
    if isinstance(node, exp.Literal):
        if node.is_string:
            if hint is not None and pa.types.is_date(hint):
                return dt.date.fromisoformat(node.name)
            return node.name
        text = node.name
        if hint is not None and pa.types.is_floating(hint):
            return float(text)
        if hint is not None and pa.types.is_decimal(hint):
            try:
                exact = Decimal(text).normalize()
                step = Decimal(1).scaleb(-hint.scale)
                if exact == exact.quantize(step):
                    # The column's own type: Arrow compares decimals of one type only.
                    return pa.scalar(exact.quantize(step), type=hint)
            except InvalidOperation:
                pass
            return float(text)
        if "." in text or "e" in text.lower():
            try:
                return Decimal(text)
            except InvalidOperation:
                return float(text)
        return int(text)
    raise _Unsupported(node.sql("duckdb"))


class _Arrow:
    """sqlglot predicates as Arrow compute expressions over one table."""

    def __init__(self, schema: pa.Schema, inputs: Mapping[str, pa.Table]) -> None:
        self._schema = schema
        self._inputs = inputs

    def _type(self, node: exp.Expression) -> pa.DataType | None:
        if isinstance(node, exp.Column) and node.name in self._schema.names:
            return self._schema.field(node.name).type
        return None

    def expr(self, node: exp.Expression, hint: pa.DataType | None = None) -> Any:
        handler: Callable[[Any, pa.DataType | None], Any] | None = getattr(
            self, f"_{node.key}", None
        )
        if handler is not None:
            return handler(node, hint)
        return pc.scalar(_constant(node, hint))

    def _pair(self, node: exp.Binary) -> tuple[Any, Any]:
        left_type, right_type = self._type(node.this), self._type(node.expression)
        return self.expr(node.this, right_type), self.expr(node.expression, left_type)

    def _column(self, node: exp.Column, _: pa.DataType | None) -> Any:
        if node.name not in self._schema.names:
            raise _Unsupported(f"column {node.name!r}")
        return pc.field(node.name)

    def _paren(self, node: exp.Paren, hint: pa.DataType | None) -> Any:
        return self.expr(node.this, hint)

    def _eq(self, node: exp.EQ, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return left == right

    def _neq(self, node: exp.NEQ, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return left != right

    def _gt(self, node: exp.GT, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return left > right

    def _gte(self, node: exp.GTE, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return left >= right

    def _lt(self, node: exp.LT, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return left < right

    def _lte(self, node: exp.LTE, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return left <= right

    def _and(self, node: exp.And, _: pa.DataType | None) -> Any:
        return self.expr(node.this) & self.expr(node.expression)

    def _or(self, node: exp.Or, _: pa.DataType | None) -> Any:
        return self.expr(node.this) | self.expr(node.expression)

    def _not(self, node: exp.Not, _: pa.DataType | None) -> Any:
        return ~self.expr(node.this)

    def _add(self, node: exp.Add, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return pc.add(left, right)

    def _sub(self, node: exp.Sub, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return pc.subtract(left, right)

    def _mul(self, node: exp.Mul, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return pc.multiply(left, right)

    def _div(self, node: exp.Div, _: pa.DataType | None) -> Any:
        left, right = self._pair(node)
        return pc.divide(left, right)

    def _neg(self, node: exp.Neg, hint: pa.DataType | None) -> Any:
        if isinstance(node.this, exp.Literal):
            return pc.scalar(_constant(node, hint))
        return pc.negate(self.expr(node.this))

    def _between(self, node: exp.Between, _: pa.DataType | None) -> Any:
        kind = self._type(node.this)
        value = self.expr(node.this)
        low = self.expr(node.args["low"], kind)
        high = self.expr(node.args["high"], kind)
        return (value >= low) & (value <= high)

    def _is(self, node: exp.Is, _: pa.DataType | None) -> Any:
        if not isinstance(node.expression, exp.Null):
            raise _Unsupported(node.sql("duckdb"))
        return self.expr(node.this).is_null()

    def _like(self, node: exp.Like, _: pa.DataType | None) -> Any:
        pattern = node.expression
        if not isinstance(pattern, exp.Literal) or not pattern.is_string:
            raise _Unsupported(node.sql("duckdb"))
        return pc.match_like(self.expr(node.this), pattern.name)

    def _ilike(self, node: exp.ILike, _: pa.DataType | None) -> Any:
        pattern = node.expression
        if not isinstance(pattern, exp.Literal) or not pattern.is_string:
            raise _Unsupported(node.sql("duckdb"))
        return pc.match_like(self.expr(node.this), pattern.name, ignore_case=True)

    def _in(self, node: exp.In, _: pa.DataType | None) -> Any:
        kind = self._type(node.this)
        query = node.args.get("query")
        if query is not None:
            select = query.this if isinstance(query, exp.Subquery) else query
            source = select.args["from_"].this.name if isinstance(select, exp.Select) else ""
            keys = self._inputs.get(source)
            if keys is None:
                raise _Unsupported(node.sql("duckdb"))
            values = keys.column(0).combine_chunks()
        else:
            items = [_constant(e, kind) for e in node.expressions]
            values = pa.array(items, type=kind) if kind is not None else pa.array(items)
        if kind is not None and values.type != kind:
            values = values.cast(kind)
        return (
            pc.field(node.this.name).isin(values)
            if isinstance(node.this, exp.Column)
            else pc.is_in(self.expr(node.this), value_set=values)
        )

    def _cast(self, node: exp.Cast, hint: pa.DataType | None) -> Any:
        return pc.scalar(_constant(node, hint))
