"""Realistic sample data for the demo: customers, orders and a clickstream.

Generated in code from a fixed seed (no downloads), column by column with numpy, and encoded
to JSON values by DuckDB, so a few hundred thousand records take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
COUNTRIES = ["DE", "FR", "GB", "NL", "ES", "IT", "PL", "SE", "US", "BR"]
COUNTRY_WEIGHTS = [0.18, 0.14, 0.14, 0.08, 0.09, 0.09, 0.06, 0.04, 0.13, 0.05]
STATUSES = ["placed", "paid", "shipped", "delivered", "cancelled"]
STATUS_WEIGHTS = [0.10, 0.15, 0.20, 0.50, 0.05]
PAGES = ["/", "/search", "/product", "/cart", "/checkout", "/account", "/help"]
PAGE_WEIGHTS = [0.22, 0.25, 0.30, 0.10, 0.05, 0.05, 0.03]

#: 2026-11-01T00:00:00Z; the demo's month of activity starts here.
EPOCH_MS = 1_793_491_200_000
MONTH_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class SampleData:
    """Each dataset as an Arrow table of ``key``, ``value`` (JSON) and ``timestamp`` columns."""

    customers: pa.Table
    orders: pa.Table
    clicks: pa.Table


def _pick(rng: np.random.Generator, choices: list[str], weights: list[float], n: int) -> pa.Array:
    index = rng.choice(len(choices), size=n, p=np.asarray(weights) / sum(weights))
    return pa.array(choices, pa.string()).take(pa.array(index))


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    padded = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=6, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")


def generate(customers: int = 10_000, orders: int = 200_000, clicks: int = 400_000) -> SampleData:
    """Build the three datasets; the same arguments always give the same records."""
    rng = np.random.default_rng(20261125)
    customer_no = np.arange(1, customers + 1)
    customer_table = pa.table(
        {
            "customer_id": _ids("c-", customer_no),
            "name": pc.binary_join_element_wise(
                pa.array(FIRST).take(pa.array(rng.integers(0, len(FIRST), customers))),
                pa.array(LAST).take(pa.array(rng.integers(0, len(LAST), customers))),
                " ",
            ),
            "country": _pick(rng, COUNTRIES, COUNTRY_WEIGHTS, customers),
            "signed_up": pa.array(
                EPOCH_MS - rng.integers(0, 3 * 365 * 24 * 3600 * 1000, customers)
            ).cast(pa.timestamp("ms", tz="UTC")),
        }
    )
    # A few customers order a lot: a Zipf-like draw over customer numbers.
    buyer = np.minimum(rng.zipf(1.3, orders), customers) - 1
    order_ts = np.sort(EPOCH_MS + rng.integers(0, MONTH_MS, orders))
    order_table = pa.table(
        {
            "order_id": _ids("o-", np.arange(1, orders + 1)),
            "customer_id": customer_table.column("customer_id").take(pa.array(buyer)),
            "amount": pa.array(np.round(rng.lognormal(3.5, 0.8, orders), 2)),
            "currency": pa.array(["EUR"] * orders, pa.string()),
            "status": _pick(rng, STATUSES, STATUS_WEIGHTS, orders),
            "ts": pa.array(order_ts).cast(pa.timestamp("ms", tz="UTC")),
        }
    )
    visitor = rng.integers(0, customers * 2, clicks)  # half the visitors are anonymous
    known = pa.array(visitor < customers)
    visitor_id = customer_table.column("customer_id").take(pa.array(visitor % customers))
    click_ts = np.sort(EPOCH_MS + rng.integers(0, MONTH_MS, clicks))
    click_table = pa.table(
        {
            "session_id": _ids("s-", rng.integers(1, clicks // 4, clicks)),
            "customer_id": pc.if_else(known, visitor_id, pa.scalar(None, pa.string())),
            "page": _pick(rng, PAGES, PAGE_WEIGHTS, clicks),
            "ts": pa.array(click_ts).cast(pa.timestamp("ms", tz="UTC")),
        }
    )
    return SampleData(
        customers=_records(customer_table, "customer_id", "signed_up"),
        orders=_records(order_table, "customer_id", "ts"),
        clicks=_records(click_table, None, "ts"),
    )


def _records(table: pa.Table, key: str | None, stamp: str) -> pa.Table:
    """JSON-encode each row as a record value, keyed by ``key`` and stamped by ``stamp``."""
    con = duckdb.connect()
    try:
        con.register("rows", table)
        # DuckDB keeps insertion order for a plain projection, so values line up with rows.
        values = con.sql("SELECT to_json(rows) AS value FROM rows").to_arrow_table()
    finally:
        con.close()
    n = len(table)
    return pa.table(
        {
            "key": table.column(key) if key else pa.nulls(n, pa.string()),
            "value": values.column("value"),
            "timestamp": table.column(stamp),
        }
    )
