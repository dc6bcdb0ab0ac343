"""The Spark engine: for data that outgrows one machine (``local[2]`` here and in tests).

It reads the lake's Parquet files itself and PostgreSQL tables through Spark's JDBC source
(which prunes columns and pushes filters into the database), takes Arrow inputs from other
engines, and returns its result as Arrow. One SparkSession serves the whole process: its
JVM takes seconds to start, which the cost model knows (``session``) until it runs.

The PostgreSQL JDBC driver is a jar: ``$TRUNKLINE_JDBC_JAR``, else the one
``scripts/services/jdbc fetch`` downloads from Maven Central into
``build/services/jdbc/``, else Debian's ``libpostgresql-jdbc-java``
(``/usr/share/java/postgresql.jar``). Without one, Spark does not declare that it reads
PostgreSQL, and the planner moves those tables through the PostgreSQL engine instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa

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
from trunkline.errors import EngineError, MissingDependency

_REPO = Path(__file__).resolve().parents[3]
JAR_CANDIDATES = (
    _REPO / "build" / "services" / "jdbc" / "postgresql.jar",
    Path("/usr/share/java/postgresql.jar"),
)

CAPABILITIES = Capabilities(
    operators=OPERATORS,  # every relational operator
    functions=None,
    reads=frozenset({"parquet", "postgres"}),
    accepts_arrow=True,
    dialect="spark",
)

_lock = threading.Lock()
_session: Any = None


def jdbc_jar() -> Path | None:
    """The PostgreSQL JDBC driver jar to put on Spark's classpath, if there is one."""
    configured = os.environ.get("TRUNKLINE_JDBC_JAR")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    return next((p for p in JAR_CANDIDATES if p.is_file()), None)


def shared_session(master: str = "local[2]", memory: str = "2g") -> Any:
    """The process's SparkSession, started on first use."""
    global _session
    with _lock:
        if _session is None:
            # Spark would otherwise pick the machine's first interface address.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            try:
                from pyspark.sql import SparkSession
            except ImportError:
                raise MissingDependency("pyspark", extra="spark") from None
            builder = (
                SparkSession.builder.master(master)
                .appName("trunkline")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.shuffle.partitions", "4")
                .config("spark.driver.memory", memory)
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.sql.ansi.enabled", "false")
            )
            jar = jdbc_jar()
            if jar is not None:
                builder = builder.config("spark.jars", str(jar))
            try:
                _session = builder.getOrCreate()
            except Exception as exc:
                raise EngineError(
                    f"spark: the session did not start: {exc}", engine="spark", retryable=True
                ) from exc
            _session.sparkContext.setLogLevel("ERROR")
        return _session


def stop_shared_session() -> None:
    """Stop the process's SparkSession (tests, and the end of a benchmark)."""
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None


def _jdbc(dsn: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    database = parts.path.lstrip("/") or "postgres"
    properties = {"driver": "org.postgresql.Driver", "user": parts.username or "postgres"}
    if parts.password:
        properties["password"] = parts.password
    for key, value in parse_qsl(parts.query):
        if key in ("sslmode",):
            properties[key] = value
    return f"jdbc:postgresql://{host}:{port}/{database}", properties


class SparkEngine:
    """Spark SQL over temporary views: Parquet and JDBC sources, and Arrow inputs."""

    name = "spark"
    kind = "spark"
    system: str | None = None

    def __init__(
        self,
        *,
        postgres: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
        env: Mapping[str, str] | None = None,
        master: str = "local[2]",
        memory: str = "2g",
    ) -> None:
        self._postgres = dict(postgres or {})
        self._env = env
        self._master = master
        self._memory = memory
        reads = {"parquet"} | ({"postgres"} if jdbc_jar() is not None else set())
        self.capabilities = replace(CAPABILITIES, reads=frozenset(reads))

    @property
    def running(self) -> bool:
        """Whether the session is up (the cost model adds its start-up time otherwise)."""
        return _session is not None

    def session(self) -> Any:
        return shared_session(self._master, self._memory)

    def can_run(self, step: Step) -> Verdict:
        verdict = check(self.capabilities, self.system, step)
        if verdict and any(
            s.system_kind == "postgres" and s.system not in self._postgres for s in step.reads
        ):
            return Verdict(False, "has no connection to that PostgreSQL system")
        return verdict

    def close(self) -> None:
        """The session is shared by the process; :func:`stop_shared_session` stops it."""

    def render(self, fragment: Fragment) -> str:
        views = [f"-- {rid}: {self._describe(s)}" for rid, s in sorted(fragment.sources.items())]
        views += [f"-- {name}: Arrow input" for name in sorted(fragment.inputs)]
        return "\n".join([*views, self._sql(fragment)])

    @staticmethod
    def _describe(source: Source) -> str:
        if source.system_kind == "parquet":
            return f"parquet {source.qualified_name}"
        return f"jdbc {source.qualified_name}"

    @staticmethod
    def _sql(fragment: Fragment) -> str:
        # Sources and inputs are temporary views named by their relation ids, so the query
        # (semi-join key sets included: ``IN (SELECT key FROM _k1)``) runs as it is.
        return fragment.query.sql("spark")

    def _register(self, session: Any, rid: str, source: Source) -> None:
        if source.system_kind == "parquet":
            frame = session.read.parquet(*parquet_files(source.location, source.name))
        elif source.system_kind == "postgres":
            from trunkline.engines.postgres import connect_dsn

            location, options = self._postgres[source.system]
            url, properties = _jdbc(connect_dsn(location, options, self._env))
            schema, _, table = source.name.rpartition(".")
            frame = session.read.jdbc(
                url, f'"{schema or "public"}"."{table}"', properties=properties
            )
        else:
            raise EngineError(f"spark cannot read {source.system_kind} datasets", engine="spark")
        frame.createOrReplaceTempView(rid)

    def run(self, fragment: Fragment) -> pa.Table:
        session = self.session()
        try:
            for rid, source in fragment.sources.items():
                self._register(session, rid, source)
            for name, table in fragment.inputs.items():
                frame = session.createDataFrame(_spark_safe(table))
                frame.createOrReplaceTempView(name)
            result = session.sql(self._sql(fragment)).toArrow()
        except EngineError:
            raise
        except Exception as exc:
            message = " ".join(str(exc).split())[:800]
            raise EngineError(f"spark: {message}", engine="spark") from exc
        finally:
            for name in [*fragment.sources, *fragment.inputs]:
                session.catalog.dropTempView(name)
        return result


def _spark_safe(table: pa.Table) -> pa.Table:
    """Arrow types Spark takes: large strings as strings, ms timestamps as us."""
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_large_string(kind):
            kind = pa.string()
        elif pa.types.is_large_binary(kind):
            kind = pa.binary()
        elif pa.types.is_timestamp(kind):
            kind = pa.timestamp("us", tz=kind.tz)
        fields.append(pa.field(field.name, kind))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)
