"""Alembic environment of the metadata store: online only, on the connection it is given.

trunkline runs migrations itself (``trunkline.meta._migrate.upgrade``), inside a transaction
it owns; there is no alembic.ini and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

from trunkline.meta._migrate import VERSION_TABLE
from trunkline.meta._schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "trunkline's metadata migrations run through trunkline.meta (MetaStore.open), "
        "which passes its connection in config.attributes['connection']"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite cannot ALTER most things; batch mode rebuilds tables, and works on PostgreSQL too.
    render_as_batch=True,
)

# The caller has begun the transaction already; this joins it instead of committing early.
with context.begin_transaction():
    context.run_migrations()
