"""Schema migrations of the metadata store: Alembic, driven from code, no alembic.ini.

Opening a store upgrades its database to the newest revision inside one transaction, so a
crash half-way leaves the previous schema. Concurrent openers take turns: SQLite through the
write lock (``BEGIN IMMEDIATE``), PostgreSQL through a transaction-scoped advisory lock.

Revisions live in ``migrations/versions`` and are numbered ``0001``, ``0002``... To start a
new one from the template::

    python -c "from alembic import command; from trunkline.meta._migrate import alembic_config; \
command.revision(alembic_config(), 'add column_stats', rev_id='0002')"

then write its ``upgrade()`` by hand, change ``_schema.py`` to match, and run the unit tests:
one of them fails while the two disagree.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from trunkline.errors import MetaError

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
#: Not Alembic's default ``alembic_version``: the store may share a PostgreSQL database with
#: an application that has its own Alembic history.
VERSION_TABLE = "trunkline_meta_version"
# Any constant works; this is "trunklin" in ASCII, unlikely to collide with other users.
_ADVISORY_LOCK_KEY = 0x7472756E6B6C696E


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic config for the store's migrations, running on ``connection``."""
    config = Config()
    # ConfigParser would read "%" in the path as interpolation.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of trunkline knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations found in {MIGRATIONS}"
    return str(head)


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    revision = context.get_current_revision()
    return None if revision is None else str(revision)


def upgrade(connection: sa.Connection, *, where: str) -> None:
    """Upgrade the database to head inside the caller's (write) transaction.

    Args:
        connection: a connection inside a write transaction; the caller commits.
        where: the store's URL as it may be shown (password hidden), for messages.

    Raises:
        MetaError: the database was migrated by a newer trunkline.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
    config = alembic_config(connection)
    scripts = ScriptDirectory.from_config(config)
    current = current_revision(connection)
    if current == scripts.get_current_head():
        return
    if current is not None and current not in {rev.revision for rev in scripts.walk_revisions()}:
        raise MetaError(
            f"metadata store {where}: its schema is at revision {current!r}, which this "
            f"trunkline does not know (newest here: {scripts.get_current_head()!r}); it was "
            "written by a newer trunkline: upgrade trunkline to use it"
        )
    command.upgrade(config, "head")
