"""The metadata store: the catalog of systems and datasets, their stats, and lineage."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy import exc

from trunkline.errors import ConfigError, MetaError
from trunkline.meta import _lineage, _lookup, _stats
from trunkline.meta import _validation as check
from trunkline.meta._engine import WRITE_OPTION, StoreUrl, create_engine, parse_url, translate
from trunkline.meta._migrate import upgrade
from trunkline.meta._schema import datasets, systems
from trunkline.meta._types import (
    KEEP,
    Column,
    ColumnStats,
    Dataset,
    DatasetKind,
    DatasetLike,
    Direction,
    Keep,
    LineageEdge,
    SchemaRef,
    System,
)

log = logging.getLogger("trunkline.meta")


class MetaStore:
    """The catalog: systems, their datasets, owners, schemas, stats and lineage edges.

    Backed by SQLite (one file that several processes share) or PostgreSQL (a team's shared
    catalog). Opening a store upgrades its schema. Every method is one transaction; a
    store is safe to share between threads. Database failures raise
    :class:`~trunkline.errors.MetaError` (:class:`~trunkline.errors.MetaUnavailable` when
    retrying may help) with the URL's password hidden; bad arguments raise
    :class:`~trunkline.errors.ConfigError` before anything is written.

    Example:
        >>> with MetaStore.open("sqlite://") as store:  # in memory
        ...     _ = store.upsert_system("pg", "postgres", "postgresql://app:s3cret@db/shop")
        ...     _ = store.upsert_dataset("pg", "public.orders", "table", owner="sales")
        ...     print(store.resolve("orders").qualified_name)
        ...     print(store.get_system("pg").location)
        pg.public.orders
        postgresql://app@db/shop
    """

    def __init__(self, engine: sa.Engine, target: StoreUrl) -> None:
        """Use :meth:`open`; this takes an engine that is already set up and migrated."""
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._target = target
        self._closed = False

    @classmethod
    def open(cls, url: str | sa.URL) -> MetaStore:
        """Open the store at ``url`` and upgrade its schema to this version's.

        Args:
            url: ``sqlite:///path/to/meta.db`` (folders are created; ``sqlite://`` is in
                memory, one connection, for one thread: examples and tests) or
                ``postgresql://user@host:port/db`` (needs ``trunkline[postgres]``).

        Raises:
            ConfigError: the URL is malformed or of another database.
            MissingDependency: a PostgreSQL URL without psycopg installed.
            MetaError: the database cannot be reached or migrated.
        """
        target = parse_url(url)
        store = cls(create_engine(target), target)
        try:
            with store._write() as conn:
                upgrade(conn, where=target.display)
        except BaseException:
            store.close()
            raise
        return store

    @property
    def url(self) -> str:
        """The store's URL with the password hidden."""
        return self._target.display

    @property
    def backend(self) -> str:
        """``sqlite`` (one machine) or ``postgresql`` (shared by several machines)."""
        return self._target.backend

    def __repr__(self) -> str:
        return f"MetaStore({self.url!r})"

    def close(self) -> None:
        """Close the store's connections. Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> MetaStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Transactions: the one place driver errors become MetaError ----------------------------

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        if self._closed:
            raise MetaError(f"metadata store {self.url} is closed")
        try:
            yield
        except (exc.SQLAlchemyError, CommandError) as error:
            raise translate(error, self._target) from error

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._translated(), self._writer.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        # A transaction for reads too, so that a method's several queries see one snapshot.
        with self._translated(), self._engine.begin() as conn:
            yield conn

    def transaction(
        self, *, write: bool = False
    ) -> contextlib.AbstractContextManager[sa.Connection]:
        """One transaction on the store's database, for packages that keep tables here.

        The schema registry (``trunkline.schemas``) keeps its tables in this database and
        runs its own queries through this. It commits when the block ends and rolls back if
        it raises; driver errors leave it as :class:`~trunkline.errors.MetaError`.

        Args:
            write: take the write lock when the transaction starts (SQLite's
                ``BEGIN IMMEDIATE``), so that a read-then-write block cannot fail half-way
                on another process's lock.
        """
        return self._write() if write else self._read()

    # Systems -------------------------------------------------------------------------------

    def upsert_system(
        self,
        name: str,
        kind: str,
        location: str,
        options: Mapping[str, Any] | Keep | None = KEEP,
    ) -> System:
        """Create a system or update it; ``updated_at`` moves only if something changed.

        Args:
            name: letters, digits, ``_`` and ``-``; no dots (``system.dataset`` is how
                datasets are named across systems).
            kind: what it is: ``hub``, ``postgres``, ``duckdb``, ``parquet``, ``iceberg``...
            location: where it is (DSN, path, bootstrap servers). A password in it is
                dropped before it is stored: secrets come from the environment.
            options: JSON settings; left as stored if not given, ``None`` empties them.
                Keys that name secrets (``password``, ``token``...) are refused.

        Example:
            >>> with MetaStore.open("sqlite://") as store:
            ...     store.upsert_system("lake", "parquet", "/data/lake").kind
            'parquet'
        """
        name = check.system_name(name)
        wanted: dict[str, Any] = {"kind": check.kind("system kind", kind)}
        wanted["location"], stripped = check.location(location)
        if stripped:
            log.warning(
                "system %r: its location held a secret, which was not stored "
                "(secrets come from the environment)",
                name,
            )
        if options is not KEEP:
            wanted["options"] = check.options(name, options or {})
        with self._write() as conn:
            stamp = _lookup.now()
            fresh = {"options": {}, **wanted, "name": name}
            fresh |= {"created_at": stamp, "updated_at": stamp}
            if not _lookup.insert_new(conn, systems, ("name",), fresh):
                row = _lookup.system_row(conn, name, lock=True)
                changes = _lookup.changed(row, wanted)
                if changes:
                    conn.execute(
                        sa.update(systems)
                        .where(systems.c.id == row.id)
                        .values(**changes, updated_at=stamp)
                    )
            return _lookup.to_system(_lookup.system_row(conn, name))

    def get_system(self, name: str) -> System:
        """The system called ``name``. Raises NotFound (with a "did you mean")."""
        with self._read() as conn:
            return _lookup.to_system(_lookup.system_row(conn, name))

    def list_systems(self) -> list[System]:
        """All systems, by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(systems).order_by(systems.c.name))
            return [_lookup.to_system(row) for row in rows]

    def delete_system(self, name: str) -> None:
        """Delete a system with its datasets and their lineage. Raises NotFound."""
        with self._write() as conn:
            row = _lookup.system_row(conn, name, lock=True)
            conn.execute(sa.delete(systems).where(systems.c.id == row.id))

    # Datasets ------------------------------------------------------------------------------

    def upsert_dataset(
        self,
        system: str,
        name: str,
        kind: str | DatasetKind,
        *,
        owner: str | Keep | None = KEEP,
        description: str | Keep | None = KEEP,
        tags: Iterable[str] | Keep = KEEP,
        schema_ref: SchemaRef | Keep | None = KEEP,
        columns: Sequence[Column] | Keep | None = KEEP,
    ) -> Dataset:
        """Create a dataset in ``system`` or update it.

        Arguments left out keep what is stored (a new dataset starts with them empty), so
        a connector that registers its topics at every start does not wipe the owner a
        data contract set. ``None`` (``()`` for tags) clears a field. ``kind`` is always
        written. ``updated_at`` moves only if something changed.

        Args:
            system: an existing system (NotFound otherwise).
            name: the name inside the system, e.g. ``public.orders`` or a topic name.
            kind: ``topic``, ``table``, ``view`` or ``fileset``.
            owner: the team or person answering for the data.
            description: free text.
            tags: labels; repeats are dropped, order is kept.
            schema_ref: the registered schema (subject and version) the data follows.
            columns: the columns as the system types them.

        Example:
            >>> with MetaStore.open("sqlite://") as store:
            ...     _ = store.upsert_system("hub", "hub", ".trunkline/hub")
            ...     _ = store.upsert_dataset("hub", "orders", "topic", owner="sales")
            ...     store.upsert_dataset("hub", "orders", "topic", tags=["pii"]).owner
            'sales'
        """
        wanted: dict[str, Any] = {"kind": check.dataset_kind(kind).value}
        name = check.dataset_name(name)
        if owner is not KEEP:
            wanted["owner"] = None if owner is None else check.text("owner", owner)
        if description is not KEEP:
            if description is not None and not isinstance(description, str):
                raise ConfigError(f"description must be text or None, not {description!r}")
            wanted["description"] = description
        if tags is not KEEP:
            wanted["tags"] = check.tags(tags)
        if schema_ref is not KEEP:
            wanted["schema_subject"], wanted["schema_version"] = check.schema_ref(schema_ref)
        if columns is not KEEP:
            wanted["schema_columns"] = check.columns(columns)
        with self._write() as conn:
            system_id = _lookup.system_row(conn, system).id
            stamp = _lookup.now()
            fresh = {"tags": [], **wanted, "system_id": system_id, "name": name}
            fresh |= {"created_at": stamp, "updated_at": stamp}
            key = (datasets.c.system_id == system_id, datasets.c.name == name)
            if not _lookup.insert_new(conn, datasets, ("system_id", "name"), fresh):
                row = conn.execute(sa.select(datasets).where(*key).with_for_update()).one()
                changes = _lookup.changed(row, wanted)
                if changes:
                    conn.execute(
                        sa.update(datasets)
                        .where(datasets.c.id == row.id)
                        .values(**changes, updated_at=stamp)
                    )
            return _lookup.to_dataset(_lookup.dataset_row(conn, system, name))

    def get_dataset(self, system: str, name: str) -> Dataset:
        """The dataset ``name`` of ``system``. Raises NotFound for either, with suggestions."""
        with self._read() as conn:
            return _lookup.to_dataset(_lookup.dataset_row(conn, system, name))

    def list_datasets(
        self, system: str | None = None, kind: str | DatasetKind | None = None
    ) -> list[Dataset]:
        """Datasets by system and name, optionally of one system (NotFound if unknown) or kind."""
        query = _lookup.DATASET_SELECT.order_by(systems.c.name, datasets.c.name)
        if kind is not None:
            query = query.where(datasets.c.kind == check.dataset_kind(kind).value)
        with self._read() as conn:
            if system is not None:
                query = query.where(datasets.c.system_id == _lookup.system_row(conn, system).id)
            return [_lookup.to_dataset(row) for row in conn.execute(query)]

    def delete_dataset(self, system: str, name: str) -> None:
        """Delete a dataset and its lineage edges. Raises NotFound."""
        with self._write() as conn:
            row = _lookup.dataset_row(conn, system, name)
            conn.execute(sa.delete(datasets).where(datasets.c.id == row.id))

    def resolve(self, name: str) -> Dataset:
        """The dataset a person means by ``name``, as written in SQL or on the command line.

        1. ``system.name`` when that system has that dataset (``pg.public.orders``: the
           system is the part before the first dot, the rest is the dataset's name);
        2. otherwise the one dataset, in any system, whose name is ``name`` or ends with
           ``.name`` (``orders`` finds ``pg.public.orders`` if no other dataset matches).

        Raises:
            NotFound: nothing matches; the message suggests close names.
            AmbiguousName: several datasets match; ``candidates`` lists them.

        Example:
            >>> with MetaStore.open("sqlite://") as store:
            ...     _ = store.upsert_system("pg", "postgres", "postgresql://db/shop")
            ...     _ = store.upsert_dataset("pg", "public.orders", "table")
            ...     store.resolve("public.orders").ref
            DatasetRef(system='pg', name='public.orders')
        """
        with self._read() as conn:
            return _lookup.to_dataset(_lookup.resolve_row(conn, name))

    def set_stats(
        self,
        system: str,
        name: str,
        *,
        rows: int | None,
        size_bytes: int | None,
        source: str | None = None,
    ) -> Dataset:
        """Record a measurement of the dataset's size; None means "not measured".

        Both numbers are replaced together (they describe one measurement) and
        ``stats_updated_at`` is set to now; ``updated_at`` is left alone. ``source`` says
        where they came from (``pg_class.reltuples``, ``analyze``, ``hub offsets``...).
        """
        values = {
            "row_count": check.statistic("row count", rows),
            "byte_count": check.statistic("byte size", size_bytes),
            "stats_source": None if source is None else check.text("stats source", source),
        }
        with self._write() as conn:
            row = _lookup.dataset_row(conn, system, name)
            conn.execute(
                sa.update(datasets)
                .where(datasets.c.id == row.id)
                .values(**values, stats_updated_at=_lookup.now())
            )
            return _lookup.to_dataset(_lookup.dataset_row(conn, system, name))

    # Planner statistics --------------------------------------------------------------------

    def set_column_stats(self, system: str, name: str, stats: Sequence[ColumnStats]) -> None:
        """Replace the per-column statistics of a dataset (``trunkline analyze`` writes them).

        Example:
            >>> with MetaStore.open("sqlite://") as store:
            ...     _ = store.upsert_system("lake", "parquet", "/data/lake")
            ...     _ = store.upsert_dataset("lake", "orders", "fileset")
            ...     store.set_column_stats("lake", "orders", [ColumnStats("id", distinct=10)])
            ...     store.column_stats("lake", "orders")["id"].distinct
            10
        """
        with self._write() as conn:
            _stats.replace_columns(conn, _lookup.dataset_row(conn, system, name).id, stats)

    def column_stats(self, system: str, name: str) -> dict[str, ColumnStats]:
        """The per-column statistics of a dataset, by column name (empty: never analyzed)."""
        with self._read() as conn:
            return _stats.read_columns(conn, _lookup.dataset_row(conn, system, name).id)

    def set_calibration(self, engine: str, factors: Mapping[str, float]) -> None:
        """Store speed factors measured for ``engine`` (``trunkline calibrate``)."""
        with self._write() as conn:
            _stats.write_calibration(conn, engine, factors)

    def calibration(self) -> dict[str, dict[str, float]]:
        """Every stored speed factor: ``{engine: {factor: value}}``."""
        with self._read() as conn:
            return _stats.read_calibration(conn)

    def set_view(self, system: str, name: str, sql: str) -> None:
        """Store the SQL of a dataset of kind ``view`` (a query over other catalog names)."""
        with self._write() as conn:
            _stats.write_view(conn, _lookup.dataset_row(conn, system, name).id, sql)

    def view_sql(self, system: str, name: str) -> str | None:
        """The SQL of a view dataset, None if the dataset has none."""
        with self._read() as conn:
            return _stats.read_view(conn, _lookup.dataset_row(conn, system, name).id)

    # Lineage -------------------------------------------------------------------------------

    def record_lineage(
        self,
        source: DatasetLike,
        target: DatasetLike,
        *,
        job: str,
        job_kind: str,
        run_id: str,
    ) -> LineageEdge:
        """Note that run ``run_id`` of ``job`` moved data from ``source`` to ``target``.

        The first call creates the edge; later ones update ``last_seen`` and add the run.
        Recording the same run twice changes nothing but ``last_seen``. Both datasets must
        exist (names are resolved as :meth:`resolve` does).

        Args:
            source: where the data came from: a Dataset, a DatasetRef or a name.
            target: where it went.
            job: the job's name, e.g. the connector or flow name in trunkline.yaml.
            job_kind: ``connector``, ``flow``, ``migration``...
            run_id: the run's id.

        Example:
            >>> with MetaStore.open("sqlite://") as store:
            ...     _ = store.upsert_system("hub", "hub", ".trunkline/hub")
            ...     _ = store.upsert_system("wh", "duckdb", "warehouse.duckdb")
            ...     _ = store.upsert_dataset("hub", "shop.public.orders", "topic")
            ...     _ = store.upsert_dataset("wh", "main.orders", "table")
            ...     edge = store.record_lineage(
            ...         "hub.shop.public.orders", "wh.main.orders",
            ...         job="warehouse", job_kind="connector", run_id="r1")
            ...     [str(e.source) for e in store.upstream("wh.main.orders")]
            ['hub.shop.public.orders']
        """
        job = check.text("job name", job)
        job_kind = check.kind("job kind", job_kind)
        run_id = check.text("run id", run_id)
        with self._write() as conn:
            source_id = _lookup.dataset_id(conn, source)
            target_id = _lookup.dataset_id(conn, target)
            return _lineage.record(conn, source_id, target_id, job, job_kind, run_id)

    def upstream(self, dataset: DatasetLike) -> list[LineageEdge]:
        """The edges that feed ``dataset`` directly."""
        with self._read() as conn:
            return _lineage.direct(conn, _lookup.dataset_id(conn, dataset), "upstream")

    def downstream(self, dataset: DatasetLike) -> list[LineageEdge]:
        """The edges that ``dataset`` feeds directly."""
        with self._read() as conn:
            return _lineage.direct(conn, _lookup.dataset_id(conn, dataset), "downstream")

    def lineage(
        self,
        dataset: DatasetLike,
        *,
        direction: Direction = "upstream",
        depth: int | None = None,
    ) -> list[LineageEdge]:
        """Edges reachable from ``dataset``, nearest first, up to ``depth`` hops (None: all).

        ``direction="both"`` is the upstream walk plus the downstream one. Cycles are
        followed once.
        """
        if direction not in ("upstream", "downstream", "both"):
            raise ConfigError(
                f"invalid direction {direction!r}: expected 'upstream', 'downstream' or 'both'"
            )
        if depth is not None and (isinstance(depth, bool) or depth < 0):
            raise ConfigError(f"invalid depth {depth!r}: expected None or an integer >= 0")
        with self._read() as conn:
            return _lineage.walk(conn, _lookup.dataset_id(conn, dataset), direction, depth)
