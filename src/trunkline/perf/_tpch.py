"""TPC-H across a hub, a lake and PostgreSQL: the planner benchmark's data and queries.

Layout (the issue's): customer, orders, nation and region in PostgreSQL (primary keys,
ANALYZEd); lineitem's history, part, partsupp and supplier as Parquet in the lake; the newest
~10 % of lineitem (by ship date) in the hub topic ``lineitem_recent`` as JSON records typed by
a data contract; the catalog view ``lineitem`` = lake ``UNION ALL`` topic.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa

PG_TABLES = ("customer", "orders", "nation", "region")
LAKE_TABLES = ("part", "partsupp", "supplier")
TOPIC = "lineitem_recent"

PG_DDL = {
    "region": "r_regionkey bigint primary key, r_name text, r_comment text",
    "nation": "n_nationkey bigint primary key, n_name text, n_regionkey bigint, n_comment text",
    "customer": "c_custkey bigint primary key, c_name text, c_address text, c_nationkey bigint, "
    "c_phone text, c_acctbal numeric(15,2), c_mktsegment text, c_comment text",
    "orders": "o_orderkey bigint primary key, o_custkey bigint, o_orderstatus text, "
    "o_totalprice numeric(15,2), o_orderdate date, o_orderpriority text, o_clerk text, "
    "o_shippriority integer, o_comment text",
}
PG_INDEXES = ("CREATE INDEX ON orders (o_custkey)", "CREATE INDEX ON orders (o_orderdate)")

CONTRACT = """apiVersion: v3.0.2
kind: DataContract
id: tpch-lineitem-recent
version: 1.0.0
status: active
schema:
  - name: lineitem
    properties:
      - {name: l_orderkey, logicalType: integer, physicalType: bigint, required: true}
      - {name: l_partkey, logicalType: integer, physicalType: bigint}
      - {name: l_suppkey, logicalType: integer, physicalType: bigint}
      - {name: l_linenumber, logicalType: integer, physicalType: integer}
      - {name: l_quantity, logicalType: number, physicalType: "decimal(15,2)"}
      - {name: l_extendedprice, logicalType: number, physicalType: "decimal(15,2)"}
      - {name: l_discount, logicalType: number, physicalType: "decimal(15,2)"}
      - {name: l_tax, logicalType: number, physicalType: "decimal(15,2)"}
      - {name: l_returnflag, logicalType: string}
      - {name: l_linestatus, logicalType: string}
      - {name: l_shipdate, logicalType: date}
      - {name: l_commitdate, logicalType: date}
      - {name: l_receiptdate, logicalType: date}
      - {name: l_shipinstruct, logicalType: string}
      - {name: l_shipmode, logicalType: string}
      - {name: l_comment, logicalType: string}
"""

LINEITEM_VIEW = "SELECT * FROM lake.lineitem_history UNION ALL SELECT * FROM hub.lineitem_recent"

#: The queries, with TPC-H's validation parameters, over the catalog's names.
QUERIES: dict[str, str] = {
    "q1": """
select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty,
  sum(l_extendedprice) as sum_base_price,
  sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
  sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
  avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc,
  count(*) as count_order
from lineitem
where l_shipdate <= date '1998-12-01' - interval '90' day
group by l_returnflag, l_linestatus
order by l_returnflag, l_linestatus""",
    "q3": """
select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate,
  o_shippriority
from customer, orders, lineitem
where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey
  and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15'
group by l_orderkey, o_orderdate, o_shippriority
order by revenue desc, o_orderdate, l_orderkey
limit 10""",
    "q5": """
select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue
from customer, orders, lineitem, supplier, nation, region
where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey
  and c_nationkey = s_nationkey and s_nationkey = n_nationkey and n_regionkey = r_regionkey
  and r_name = 'ASIA' and o_orderdate >= date '1994-01-01'
  and o_orderdate < date '1994-01-01' + interval '1' year
group by n_name
order by revenue desc""",
    "q6": """
select sum(l_extendedprice * l_discount) as revenue
from lineitem
where l_shipdate >= date '1994-01-01' and l_shipdate < date '1994-01-01' + interval '1' year
  and l_discount between 0.06 - 0.01 and 0.06 + 0.01 and l_quantity < 24""",
    "q10": """
select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue, c_acctbal,
  n_name, c_address, c_phone, c_comment
from customer, orders, lineitem, nation
where c_custkey = o_custkey and l_orderkey = o_orderkey
  and o_orderdate >= date '1993-10-01' and o_orderdate < date '1993-10-01' + interval '3' month
  and l_returnflag = 'R' and c_nationkey = n_nationkey
group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
order by revenue desc, c_custkey
limit 20""",
    "q12": """
select l_shipmode,
  sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' then 1 else 0 end)
    as high_line_count,
  sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH' then 1 else 0 end)
    as low_line_count
from orders, lineitem
where o_orderkey = l_orderkey and l_shipmode in ('MAIL', 'SHIP')
  and l_commitdate < l_receiptdate and l_shipdate < l_commitdate
  and l_receiptdate >= date '1994-01-01' and l_receiptdate < date '1994-01-01' + interval '1' year
group by l_shipmode
order by l_shipmode""",
    "q14": """
select 100.00 * sum(case when p_type like 'PROMO%' then l_extendedprice * (1 - l_discount)
  else 0 end) / sum(l_extendedprice * (1 - l_discount)) as promo_revenue
from lineitem, part
where l_partkey = p_partkey and l_shipdate >= date '1995-09-01'
  and l_shipdate < date '1995-09-01' + interval '1' month""",
    "q18": """
select c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity) as total_qty
from customer, orders, lineitem
where o_orderkey in (select l_orderkey from lineitem group by l_orderkey
                     having sum(l_quantity) > 300)
  and c_custkey = o_custkey and o_orderkey = l_orderkey
group by c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice
order by o_totalprice desc, o_orderdate, o_orderkey
limit 100""",
}


def generate(scale: float, folder: Path) -> Path:
    """TPC-H tables at ``scale`` as Parquet files in ``folder/raw`` (tpchgen-cli)."""
    raw = folder / "raw"
    if raw.is_dir() and (raw / "lineitem.parquet").is_file():
        return raw
    tool = shutil.which("tpchgen-cli") or str(Path(sys.executable).with_name("tpchgen-cli"))
    subprocess.run(
        [tool, "parquet", "-s", f"{scale:g}", f"--output-dir={raw}"],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return raw


def _read(con: duckdb.DuckDBPyConnection, raw: Path, table: str) -> str:
    # Plain VARCHARs: the generator writes string_view columns, which not every engine reads.
    return f"SELECT * FROM read_parquet('{raw / table}.parquet')"


def build_lake(raw: Path, lake: Path) -> tuple[str, pa.Table]:
    """Write the lake's Parquet files; return the cut-off ship date and the recent lineitems."""
    lake.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        cutoff = con.execute(
            f"SELECT quantile_disc(l_shipdate, 0.9) FROM ({_read(con, raw, 'lineitem')})"
        ).fetchone()
        assert cutoff is not None
        day = cutoff[0].isoformat()
        con.execute(
            f"COPY (SELECT * FROM ({_read(con, raw, 'lineitem')}) "
            f"WHERE l_shipdate < DATE '{day}') TO '{lake / 'lineitem_history.parquet'}' "
            "(FORMAT parquet)"
        )
        for table in LAKE_TABLES:
            con.execute(
                f"COPY ({_read(con, raw, table)}) TO '{lake / table}.parquet' (FORMAT parquet)"
            )
        recent = con.execute(
            f"SELECT to_json(t)::VARCHAR AS value FROM ({_read(con, raw, 'lineitem')}) t "
            f"WHERE l_shipdate >= DATE '{day}' ORDER BY l_shipdate, l_orderkey, l_linenumber"
        ).to_arrow_table()
    return day, recent


def load_postgres(raw: Path, dsn: str) -> None:
    """Create and fill the PostgreSQL tables (COPY through ADBC), with keys, then ANALYZE."""
    import adbc_driver_postgresql.dbapi as adbc

    with duckdb.connect() as con, adbc.connect(dsn) as conn:
        cursor = conn.cursor()
        for table in PG_TABLES:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TABLE {table} ({PG_DDL[table]})")
            data = con.execute(_read(con, raw, table)).to_arrow_table()
            data = data.cast(
                pa.schema(
                    [
                        pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type)
                        for f in data.schema
                    ]
                )
            )
            cursor.adbc_ingest(table, data, mode="append")
        for statement in PG_INDEXES:
            cursor.execute(statement)
        conn.commit()
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as plain:
        for table in PG_TABLES:
            plain.execute(f"ANALYZE {table}")


def setup_project(folder: Path, scale: float, dsn: str) -> Path:
    """A trunkline project over TPC-H at ``scale`` in ``folder``, cataloged and analyzed.

    PostgreSQL ``dsn`` receives the four tables (it should be a database of its own).
    """
    from trunkline.federation.catalog import add_system, add_view, analyze_all
    from trunkline.project import Project

    raw = generate(scale, folder)
    root = folder / "project"
    if root.exists():
        shutil.rmtree(root)
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "lineitem.yaml").write_text(CONTRACT)
    (root / "trunkline.yaml").write_text(
        "hub: {backend: embedded, ack: written}\n"
        f"topics:\n  {TOPIC}: {{partitions: 2, retention: forever, "
        "contract: contracts/lineitem.yaml}\n"
    )
    _, recent = build_lake(raw, root / "lake")
    load_postgres(raw, dsn)
    with Project.open(root) as project:
        project.apply_topics()
        values = recent.column("value").cast(pa.binary())
        step = 50_000
        for start in range(0, len(values), step):
            chunk = values.slice(start, step)
            project.hub.produce(TOPIC, pa.table({"value": chunk}))
        add_system(project, "parquet", "lake", str(root / "lake"))
        add_system(project, "postgres", "tpch", dsn)
        analyze_all(project)
        add_view(project, "lineitem", LINEITEM_VIEW)
    return root
