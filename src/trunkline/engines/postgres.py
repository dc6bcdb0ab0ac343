"""The PostgreSQL engine: runs whole sub-plans over its own tables, results back in bulk.

Fragments are rendered to PostgreSQL SQL by sqlglot and run through ADBC's PostgreSQL
driver, which fetches results with ``COPY ... TO STDOUT (FORMAT binary)`` straight into Arrow
(no row-by-row Python). A semi-join key set arrives as one array parameter:
``col = ANY($1)``. Discovery and statistics use psycopg, with identifiers composed by
``psycopg.sql``.

The password never enters the catalog: a DSN written with ``${VAR}`` is stored with a
reference to ``VAR`` (``password_env``) and the password is read from the environment when
a connection opens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pyarrow as pa
from sqlglot import exp

from trunkline.engines._types import decode_numeric
from trunkline.engines.base import (
    OPERATORS,
    Capabilities,
    Fragment,
    Source,
    Step,
    Verdict,
    check,
)
from trunkline.errors import ConfigError, EngineError, MissingDependency

CAPABILITIES = Capabilities(
    operators=OPERATORS,  # every relational operator
    functions=None,
    # DuckDB-only constructs sqlglot cannot write for PostgreSQL.
    excluded_functions=frozenset({"LIST", "STRUCT", "UNNEST", "ARRAYAGG", "QUALIFY"}),
    reads=frozenset({"postgres"}),
    own_system_only=True,
    accepts_arrow=False,
    dialect="postgres",
)

_VAR = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def split_dsn(dsn: str) -> tuple[str, dict[str, str]]:
    """A DSN as the catalog keeps it: without its password, plus where the password is.

    ``postgresql://app:${SHOP_PW}@db/shop`` becomes ``postgresql://app@db/shop`` with
    ``{"password_env": "SHOP_PW"}``. A literal password is refused: it would end up in the
    shell history and the catalog.

    Raises:
        ConfigError: the DSN holds a literal password, or is not a postgresql:// URL.
    """
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            "expected a DSN such as postgresql://user:${PASSWORD_VAR}@host:5432/database"
        )
    options: dict[str, str] = {}
    netloc = parts.netloc
    if parts.password is not None:
        match = _VAR.match(parts.password)
        if match is None:
            raise ConfigError(
                "the DSN holds a password; write it as ${VAR} (single-quoted in the shell) "
                "and set VAR in the environment: passwords are never stored"
            )
        options["password_env"] = match.group(1)
        user_info, _, host = netloc.rpartition("@")
        netloc = f"{user_info.partition(':')[0]}@{host}"
    return urlunsplit(parts._replace(netloc=netloc)), options


def connect_dsn(
    location: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> str:
    """The DSN to connect with: the stored one plus the password from the environment.

    Raises:
        ConfigError: the variable holding the password is not set.
    """
    variable = options.get("password_env")
    if not variable:
        return location
    environment = os.environ if env is None else env
    if variable not in environment:
        raise ConfigError(
            f"the password of {redact(location)} comes from ${{{variable}}}, which is not set"
        )
    parts = urlsplit(location)
    user, _, host = parts.netloc.rpartition("@")
    secret = quote(environment[variable], safe="")
    return urlunsplit(parts._replace(netloc=f"{user}:{secret}@{host}"))


def redact(dsn: str) -> str:
    """The DSN with any password hidden, for messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


class PostgresEngine:
    """Runs fragments on one PostgreSQL database of the catalog (system ``name``)."""

    capabilities = CAPABILITIES
    kind = "postgres"

    def __init__(
        self,
        name: str,
        location: str,
        options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.system: str | None = name
        self._location = location
        self._options = dict(options or {})
        self._env = env
        self._dsn = location  # with its password once connecting needs it
        self._connection: Any = None

    def can_run(self, step: Step) -> Verdict:
        return check(self.capabilities, self.system, step)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _connect(self) -> Any:
        if self._connection is None:
            try:
                import adbc_driver_postgresql.dbapi as adbc
            except ImportError:
                raise MissingDependency("adbc-driver-postgresql", extra="postgres") from None
            self._dsn = connect_dsn(self._location, self._options, self._env)
            try:
                self._connection = adbc.connect(self._dsn)
            except Exception as exc:
                raise EngineError(
                    f"postgres {self.name}: cannot connect: {_message(exc, self._dsn)}",
                    engine=self.name,
                    retryable=True,
                ) from exc
        return self._connection

    def render(self, fragment: Fragment) -> str:
        return self._rendered(fragment)[0]

    def _rendered(self, fragment: Fragment) -> tuple[str, list[list[Any]]]:
        parameters: list[list[Any]] = []

        def replace(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and node.name in fragment.sources:
                return _table_for(fragment.sources[node.name], node)
            keys = _keyset(node, fragment)
            if keys is not None:
                column, table = keys
                parameters.append(table.column(0).to_pylist())
                placeholder = exp.var(f"${len(parameters)}")
                return exp.EQ(
                    this=column, expression=exp.Anonymous(this="ANY", expressions=[placeholder])
                )
            return node

        rendered = fragment.query.copy().transform(replace)
        return rendered.sql("postgres"), parameters

    def run(self, fragment: Fragment) -> pa.Table:
        sql, parameters = self._rendered(fragment)
        connection = self._connect()
        try:
            cursor = connection.cursor()
            try:
                if parameters:
                    cursor.execute(sql, parameters=tuple(parameters))
                else:
                    cursor.execute(sql)
                table = cursor.fetch_arrow_table()
            finally:
                cursor.close()
            connection.rollback()
        except Exception as exc:
            self.close()
            raise EngineError(
                f"postgres {self.name}: {_message(exc, self._dsn)}", engine=self.name
            ) from exc
        return decode_numeric(table)


def _message(exc: Exception, dsn: str) -> str:
    text = " ".join(str(exc).split())[:500]
    password = urlsplit(dsn).password
    return text.replace(password, "***") if password else text


def _keyset(node: exp.Expression, fragment: Fragment) -> tuple[exp.Expression, pa.Table] | None:
    """``(column, keys)`` of a semi-join filter ``column IN (SELECT key FROM keyset)``."""
    if not isinstance(node, exp.In) or node.args.get("query") is None:
        return None
    query = node.args["query"]
    select = query.this if isinstance(query, exp.Subquery) else query
    if not isinstance(select, exp.Select) or select.args.get("from_") is None:
        return None
    name = select.args["from_"].this.name
    table = fragment.inputs.get(name)
    return None if table is None else (node.this, table)


def _table_for(source: Source, node: exp.Table) -> exp.Table:
    schema, _, table = source.name.rpartition(".")
    return exp.Table(
        this=exp.to_identifier(table, quoted=True),
        db=exp.to_identifier(schema or "public", quoted=True),
        alias=node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name)),
    )
