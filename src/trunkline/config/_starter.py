"""The starter project ``trunkline init`` writes: a commented ``trunkline.yaml``."""

from __future__ import annotations

from pathlib import Path

from trunkline.config._load import PROJECT_FILE
from trunkline.errors import ConfigError

#: What `trunkline init` writes. A test loads it, so it cannot drift from the model.
STARTER = """\
# trunkline project file. Every key is checked: a misspelt key is an error, not a default.
# `trunkline config explain` lists every key with its type, default and meaning.
#
# Durations: 500ms, 30s, 15m, 36h, 7d, 2w, or combined: 1h30m.
# Sizes: 4096 (bytes), 512KiB, 64MiB, 1GiB (powers of 1024) or 10KB, 5MB, 1GB (of 1000).
# Secrets never go in this file: write ${VAR} and trunkline reads the environment variable
# (${VAR:-fallback} if it may be unset; $${VAR} for a literal "${VAR}").

# The hub: the log every source writes to and every sink reads from.
hub:
  backend: embedded      # a durable log in local files; Apache Kafka is the other backend to come
  path: .trunkline/hub   # where the log lives, relative to this file
  ack: fsync             # fsync: a write survives power loss; written: survives a crash only

# The metadata store (catalog, lineage, schemas): a SQLAlchemy URL. SQLite for one machine;
# postgresql://user:${DB_PASSWORD}@host/db to share it.
meta: sqlite:///.trunkline/meta.db

# Topics, by name. Their settings mean what they mean in Apache Kafka.
topics:
  orders:
    description: Orders placed in the shop, one event per change.
    owner: shop-team
    tags: [sales]
    partitions: 3             # parallelism; records with the same key stay in order
    retention: 7d             # how long records are kept ('forever' for no limit)
    retention_bytes: unlimited  # size cap per partition; the oldest segments go first
    cleanup: delete           # delete: by retention; compact: keep the latest record per key
    compression: zstd         # batches on disk: none, lz4 or zstd
    # contract: contracts/orders.yaml   # the topic's data contract (schema, owner, rules)
    # Rarely changed (shown with their defaults):
    # segment_bytes: 1GiB       # a partition's log is split into segment files of this size
    # segment_age: 7d           # a segment is also closed after this long
    # max_message_bytes: 64MiB  # largest batch a producer may write

  customers:
    description: The current state of every customer, keyed by customer id.
    owner: crm-team
    cleanup: compact          # keep the latest record of each key, forever
    retention: forever        # compaction, not age, removes old records
    delete_retention: 24h     # how long a deletion (tombstone) stays visible to late readers
    min_compaction_lag: 1h    # records younger than this are never compacted away

# Sources, sinks and flows arrive with the connectors (sources postgres_cdc, files, http;
# sinks duckdb, postgres, iceberg, parquet). Each entry names its connector with `type:`;
# the other keys are the connector's own. They will look like this:
#
# sources:
#   shop_db:
#     type: postgres_cdc
#     dsn: ${SHOP_DSN}
#     tables: [public.orders]
#
# sinks:
#   warehouse:
#     type: duckdb
#     path: warehouse.duckdb
#     topics: [orders]
#
# Flows: SQL over catalog names; the planner picks the engine for each step.
# flows:
#   revenue_by_hour:
#     sql: select date_trunc('hour', ts) as hour, sum(amount) from orders group by 1
#     into: warehouse.revenue_by_hour
#     freshness: 1m          # keep it at most a minute old; omit to run on demand
"""

_GITIGNORE_LINE = ".trunkline/"


def write_starter(directory: Path | str) -> Path:
    """Write a starter ``trunkline.yaml`` (and ignore ``.trunkline/`` in ``.gitignore``).

    The directory is created if needed. An existing ``.gitignore`` gets the line appended
    unless it has it already.

    Returns:
        The path of the new project file.

    Raises:
        ConfigError: ``trunkline.yaml`` exists already; it is left untouched.

    Example:
        >>> write_starter(Path("shop"))  # doctest: +SKIP
        PosixPath('shop/trunkline.yaml')
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    project_file = directory / PROJECT_FILE
    try:
        # Exclusive creation: never overwrite a project, even one created a moment ago.
        with project_file.open("x", encoding="utf-8") as out:
            out.write(STARTER)
    except FileExistsError:
        raise ConfigError(
            f"{project_file} exists already; trunkline will not overwrite a project file"
        ) from None
    _ignore_state(directory / ".gitignore")
    return project_file


def _ignore_state(gitignore: Path) -> None:
    existing = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    if _GITIGNORE_LINE in existing.splitlines() or ".trunkline" in existing.splitlines():
        return
    separator = "" if not existing or existing.endswith("\n") else "\n"
    with gitignore.open("a", encoding="utf-8") as out:
        out.write(f"{separator}# trunkline's local state (hub log, metadata)\n{_GITIGNORE_LINE}\n")
