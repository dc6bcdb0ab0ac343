"""The reference data of the planner tests: the same rows in one DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

EVENTS = 3000


def event(i: int) -> dict[str, object]:
    return {
        "id": i,
        "user_id": i % 200,
        "amount": round(i * 0.37, 2),
        "kind": "abc"[i % 3],
        "day": f"2024-01-{1 + i % 28:02d}",
    }


def reference(root: Path) -> duckdb.DuckDBPyConnection:
    """The same data in one DuckDB: what every federated result must equal."""
    con = duckdb.connect()
    events = pa.Table.from_pylist([event(i) for i in range(EVENTS)])
    con.register("events_raw", events)
    con.execute(
        "CREATE TABLE events AS SELECT id, user_id, amount::DECIMAL(12,2) AS amount, kind, "
        "day::DATE AS day FROM events_raw"
    )
    con.execute(f"CREATE VIEW users AS SELECT * FROM '{root / 'lake' / 'users.parquet'}'")
    con.execute(f"ATTACH '{root / 'wh.duckdb'}' AS wh (READ_ONLY)")
    con.execute("CREATE VIEW regions AS SELECT * FROM wh.main.regions")
    return con
