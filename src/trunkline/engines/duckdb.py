"""The DuckDB engine: joins and aggregates across sources over Arrow; reads Parquet itself.

It coordinates: fragments computed by other engines arrive as Arrow tables and are
registered under their relation ids; Parquet datasets are read in place with
``read_parquet`` (so DuckDB prunes columns and row groups itself); DuckDB database files of
the catalog are attached read-only under their system's name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import duckdb
import pyarrow as pa
from sqlglot import exp

from trunkline.engines._files import parquet_files
from trunkline.engines.base import (
    OPERATORS,
    Capabilities,
    Fragment,
    Source,
    Step,
    Verdict,
    check,
)
from trunkline.errors import EngineError

CAPABILITIES = Capabilities(
    operators=OPERATORS,  # every relational operator
    functions=None,
    reads=frozenset({"parquet", "duckdb"}),
    accepts_arrow=True,
    dialect="duckdb",
    # Filled per connection from duckdb_functions(): every function DuckDB knows.
    extra_functions=frozenset(),
)


class DuckDBEngine:
    """An in-process DuckDB database used as the plan's coordinator.

    Example:
        >>> import sqlglot
        >>> engine = DuckDBEngine()
        >>> query = sqlglot.parse_one("SELECT sum(x) AS s FROM t", read="duckdb")
        >>> engine.run(Fragment(query, inputs={"t": pa.table({"x": [1, 2]})})).to_pylist()
        [{'s': 2}]
    """

    name = "duckdb"
    kind = "duckdb"
    system: str | None = None

    def __init__(self, *, threads: int | None = None) -> None:
        self._con = duckdb.connect(config={"threads": threads} if threads else {})
        self._attached: set[str] = set()
        self._lock = threading.Lock()
        known = self._con.execute("SELECT DISTINCT function_name FROM duckdb_functions()")
        self.capabilities = replace(
            CAPABILITIES, extra_functions=frozenset(row[0].lower() for row in known.fetchall())
        )

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The engine's connection (for analysis queries of the same process)."""
        return self._con

    def can_run(self, step: Step) -> Verdict:
        return check(self.capabilities, self.system, step)

    def close(self) -> None:
        self._con.close()

    def render(self, fragment: Fragment) -> str:
        return self._rendered(fragment).sql("duckdb")

    def _rendered(self, fragment: Fragment) -> exp.Expression:
        sources = fragment.sources

        def replace(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and node.name in sources and not node.args.get("db"):
                return _table_for(sources[node.name], node)
            return node

        return fragment.query.copy().transform(replace)

    def run(self, fragment: Fragment) -> pa.Table:
        query = self._rendered(fragment)
        with self._lock:
            for source in fragment.sources.values():
                self._attach(source)
            sql = query.sql("duckdb")
            try:
                return run_over_arrow(self._con, sql, fragment.inputs)
            except duckdb.Error as exc:
                raise EngineError(f"duckdb: {exc}", engine=self.name) from exc

    def _attach(self, source: Source) -> None:
        if source.system_kind != "duckdb" or source.system in self._attached:
            return
        try:
            self._con.execute(
                f"ATTACH '{_quote_text(source.location)}' AS \"{source.system}\" (READ_ONLY)"
            )
        except duckdb.Error as exc:
            raise EngineError(
                f"duckdb: cannot open {source.location} of system {source.system!r}: {exc}",
                engine="duckdb",
                retryable=True,
            ) from exc
        self._attached.add(source.system)

    def query(self, sql: str, inputs: Mapping[str, pa.Table] | None = None) -> pa.Table:
        """Run DuckDB SQL directly (analysis, calibration), with optional Arrow inputs."""
        with self._lock:
            try:
                for name, table in (inputs or {}).items():
                    self._con.register(name, table)
                return self._con.execute(sql).to_arrow_table()
            except duckdb.Error as exc:
                raise EngineError(f"duckdb: {exc}", engine=self.name) from exc
            finally:
                for name in inputs or {}:
                    self._con.unregister(name)


def run_over_arrow(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    inputs: Mapping[str, pa.Table],
    prelude: Sequence[str] = (),
    after: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> pa.Table:
    """Run ``sql`` over ``inputs``, each copied into a temporary table of that name first.

    Copying is cheap (columnar, parallel) and pays: DuckDB plans joins over its own tables
    with their statistics, and measured on TPC-H Q5 at scale factor 1 the same join ran in
    0.26 s over temporary tables and 3.7 s over Arrow registered as views (DuckDB 1.5 also
    refuses some join filters pushed into Arrow scans: "Pushdown Filter Type BLOOM_FILTER
    is not currently supported in PyArrow Scans").
    """
    copies = []
    try:
        for name, table in inputs.items():
            con.register("_arrow_input", table)
            try:
                con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM _arrow_input')
            finally:
                con.unregister("_arrow_input")
            copies.append(name)
        for statement in prelude:  # e.g. views over the copies
            con.execute(statement)
        result = con.execute(sql).to_arrow_table()
        if after is not None:
            after(con)  # before the clean-up statements: e.g. read the query's profile
        return result
    finally:
        for name in copies:
            con.execute(f'DROP TABLE IF EXISTS temp."{name}"')


def _quote_text(text: str) -> str:
    return text.replace("'", "''")


def _table_for(source: Source, node: exp.Table) -> exp.Expression:
    """The DuckDB table expression that reads ``source``, keeping the reference's alias."""
    alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name))
    if source.system_kind == "parquet":
        files = exp.Array(
            expressions=[exp.Literal.string(f) for f in parquet_files(source.location, source.name)]
        )
        reader = exp.Anonymous(this="read_parquet", expressions=[files])
        return exp.Table(this=reader, alias=alias)
    if source.system_kind == "duckdb":
        schema, _, table = source.name.rpartition(".")
        return exp.Table(
            this=exp.to_identifier(table, quoted=True),
            db=exp.to_identifier(schema or "main", quoted=True),
            catalog=exp.to_identifier(source.system, quoted=True),
            alias=alias,
        )
    raise EngineError(
        f"duckdb cannot read {source.system_kind} dataset {source.qualified_name}",
        engine="duckdb",
    )
