"""Store URLs, engines and the translation of driver errors: the store's database boundary.

Two backends: ``sqlite:///path`` (the default; several processes may share the file) and
``postgresql://`` through psycopg 3 (shared deployments). Every database error leaves this
package as a :class:`~trunkline.errors.MetaError` whose message shows the URL with its
password hidden.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.pool import StaticPool

from trunkline.errors import ConfigError, MetaError, MetaUnavailable, MissingDependency

#: How long a SQLite writer waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: How long a PostgreSQL connection attempt may take (unless the URL sets connect_timeout).
PG_CONNECT_TIMEOUT_S = 10

#: An execution option that marks a transaction as a writer (see ``_sqlite_begin``).
WRITE_OPTION = "trunkline_write"

_POSTGRES_DRIVERS = {"postgresql", "postgresql+psycopg", "postgres"}
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A validated store URL and what the store may show of it."""

    url: sa.URL

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    @property
    def display(self) -> str:
        """The URL with its password masked: the only form that goes into messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @property
    def in_memory(self) -> bool:
        return self.backend == "sqlite" and self.url.database in (None, "", ":memory:")


def parse_url(url: str | sa.URL) -> StoreUrl:
    """Check a store URL and pick its driver.

    Raises:
        ConfigError: not a URL, or a scheme other than sqlite / postgresql.
        MissingDependency: a PostgreSQL URL without psycopg installed.
    """
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError:
        shown = _mask_password(str(url))
        raise ConfigError(
            f"invalid metadata store URL {shown!r}: expected sqlite:///path/to/meta.db "
            "or postgresql://user@host:5432/database"
        ) from None
    drivername = parsed.drivername
    if drivername in _SQLITE_DRIVERS:
        return StoreUrl(parsed.set(drivername="sqlite"))
    if drivername in _POSTGRES_DRIVERS:
        if importlib.util.find_spec("psycopg") is None:
            raise MissingDependency("psycopg", extra="postgres")
        return StoreUrl(parsed.set(drivername="postgresql+psycopg"))
    shown = parsed.render_as_string(hide_password=True)
    raise ConfigError(
        f"unsupported metadata store URL {shown!r} (scheme {drivername!r}): expected "
        "sqlite:///path/to/meta.db or postgresql://user@host:5432/database "
        "(the psycopg 3 driver is used for PostgreSQL)"
    )


def _mask_password(text: str) -> str:
    # For strings SQLAlchemy could not parse, so we cannot tell the password apart: hide all
    # that comes before the last "@" (user and password), keeping the scheme.
    scheme, separator, rest = text.rpartition("://")
    if "@" not in rest:
        return text
    return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"


def create_engine(target: StoreUrl) -> sa.Engine:
    """An engine for ``target``, set up for several processes sharing one database."""
    if target.backend == "sqlite":
        return _sqlite_engine(target)
    return _postgres_engine(target)


def _sqlite_engine(target: StoreUrl) -> sa.Engine:
    connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    if target.in_memory:
        # One connection for the life of the engine: every new connection to :memory: would
        # be a new, empty database.
        engine = sa.create_engine(
            target.url,
            poolclass=StaticPool,
            connect_args={**connect_args, "check_same_thread": False},
        )
    else:
        path = Path(target.url.database or "")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MetaError(
                f"metadata store {target.display}: cannot create folder {path.parent}: {error}"
            ) from error
        engine = sa.create_engine(target.url, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Python's sqlite3 only opens transactions before DML, so SELECTs and DDL would run
    # outside them; take over BEGIN ourselves (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        # WAL: readers in other processes keep reading while one process writes.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # A writer takes the write lock when its transaction starts. A deferred transaction
    # that reads first and writes later cannot wait for the lock when another process holds
    # it: SQLite fails it at once with "database is locked", ignoring the busy timeout.
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgres_engine(target: StoreUrl) -> sa.Engine:
    query = target.url.query
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    if "application_name" not in query:
        connect_args["application_name"] = "trunkline-meta"
    # pre_ping: a shared server restarts or drops idle connections; check before reuse.
    return sa.create_engine(target.url, connect_args=connect_args, pool_pre_ping=True)


def translate(error: Exception, target: StoreUrl) -> MetaError:
    """The MetaError to raise (``from error``) for a database or migration failure."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        detail = str(error.orig)
    else:
        detail = str(error)
    # Driver messages are multi-line (hints, SQL); one line is enough beside the chained cause.
    detail = " ".join(detail.split())[:500]
    password = target.url.password
    if password:
        # Belt and braces: no driver is known to echo it, but nothing may ever show it.
        detail = detail.replace(str(password), "***")
    message = f"metadata store {target.display}: {detail}"
    if _unavailable(error, target):
        return MetaUnavailable(message)
    return MetaError(message)


def _unavailable(error: Exception, target: StoreUrl) -> bool:
    if isinstance(error, exc.TimeoutError):  # the connection pool stayed exhausted
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    if target.backend == "sqlite":
        # Other SQLite operational errors (disk I/O, unable to open file) do not heal alone.
        text = str(error.orig).lower()
        return "locked" in text or "busy" in text
    return True
