"""``trunkline perf contracts``: the cost of enforcing a data contract, baseline in the same run.

Workloads, on order records of about 200 bytes of JSON (9 fields; one in a thousand breaks a
rule, so the careful decoding path is not measured):

* validation: a contract with 10 rules (required x2, unique, pattern x2, range x2, accepted
  values x2, a row-level SQL condition) checks ``records`` values in one call;
  ``validation_records_per_s``;
* produce: the same values produced in batches of ``batch`` records to a topic with that
  contract (``dead_letter`` policy, so the odd bad record is dead-lettered) and to a topic
  without one, on one embedded hub (ack ``fsync``). After a warm-up, the two alternate
  ``repeats`` times; medians are reported. ``contract_overhead`` = time with the contract /
  time without (goal: <= 1.5).
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from trunkline.contracts import ContractValidator, parse_contract

CONTRACT = """\
apiVersion: v3.0.2
kind: DataContract
id: perf-orders
version: 1.0.0
status: active
team: [{username: perf, role: owner}]
schema:
  - name: orders
    properties:
      - name: order_id
        logicalType: string
        required: true
        unique: true
        logicalTypeOptions: {pattern: "^o-[0-9]+$"}
      - {name: customer, logicalType: string}
      - name: email
        logicalType: string
        classification: pii
        description: The customer's email.
        logicalTypeOptions: {pattern: "^[^@]+@[^@]+$"}
      - name: amount
        logicalType: number
        required: true
        logicalTypeOptions: {minimum: 0, maximum: 100000}
      - name: quantity
        logicalType: integer
        logicalTypeOptions: {minimum: 1, maximum: 1000}
      - name: status
        logicalType: string
        quality:
          - metric: invalidValues
            arguments: {validValues: [placed, paid, shipped, refunded]}
      - name: currency
        logicalType: string
        quality:
          - metric: invalidValues
            arguments: {validValues: [EUR, USD, GBP]}
      - {name: created_at, logicalType: timestamp}
      - {name: country, logicalType: string}
    quality:
      - type: sql
        name: refunds_have_amount
        query: status <> 'refunded' or amount > 0
"""


def sample_values(records: int) -> pa.Array:
    """``records`` JSON order values, made in DuckDB (one in 1,000 has a negative amount)."""
    records = int(records)
    query = f"""
        SELECT to_json(struct_pack(
            order_id := 'o-' || i,
            customer := 'c-' || (i * 7919 % 10000),
            email := 'user' || i || '@example.com',
            amount := CASE WHEN i % 1000 = 999 THEN -1.0 ELSE round((i * 37 % 50000) / 100.0, 2)
                      END,
            quantity := 1 + i % 9,
            status := ['placed', 'paid', 'shipped', 'refunded'][1 + i % 4],
            currency := 'EUR',
            created_at := '2026-11-25T10:' || lpad((i % 60)::VARCHAR, 2, '0') || ':00Z',
            country := 'DE'))::BLOB AS v
        FROM range({records}) t(i)
    """  # noqa: S608
    values = duckdb.sql(query).to_arrow_table().column("v").combine_chunks()
    return values.cast(pa.binary())


def validation_throughput(values: pa.Array, repeats: int) -> tuple[float, int]:
    validator = ContractValidator(parse_contract(CONTRACT))
    validator.validate(values.slice(0, 10_000))  # warm-up: compile kernels
    times = []
    failed = 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = validator.validate(values)
        times.append(time.perf_counter() - start)
        failed = result.failed_count
    return len(values) / statistics.median(times), failed


def _project(root: Path, ack: str) -> None:
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "orders.yaml").write_text(CONTRACT)
    (root / "trunkline.yaml").write_text(
        f"hub: {{path: hub, ack: {ack}}}\n"
        "meta: sqlite:///meta.db\n"
        "topics:\n"
        "  contracted: {contract: contracts/orders.yaml, on_violation: dead_letter}\n"
        "  plain: {}\n"
    )


def _produce(hub: Any, topic: str, values: pa.Array, batch: int) -> float:
    start = time.perf_counter()
    for first in range(0, len(values), batch):
        hub.produce(topic, pa.table({"value": values.slice(first, batch)}))
    return time.perf_counter() - start


def run(
    directory: Path | None = None,
    *,
    records: int = 1_000_000,
    batch: int = 10_000,
    repeats: int = 3,
    ack: str = "fsync",
) -> dict[str, Any]:
    """Measure; returns the figures (see the module docstring)."""
    from trunkline.project import Project

    values = sample_values(records)
    rate, failed = validation_throughput(values, repeats)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        _project(root, ack)
        with Project.open(root) as project:
            project.apply_topics()
            hub = project.hub
            warm = values.slice(0, min(len(values), 5 * batch))
            _produce(hub, "contracted", warm, batch)
            _produce(hub, "plain", warm, batch)
            with_contract, without = [], []
            for _ in range(repeats):
                without.append(_produce(hub, "plain", values, batch))
                with_contract.append(_produce(hub, "contracted", values, batch))
            dead = sum(hub.end_offsets("contracted.dlq").values())
    t_with, t_without = statistics.median(with_contract), statistics.median(without)
    return {
        "benchmark": "contracts",
        "records": records,
        "rules": 10,
        "value_bytes_avg": round(values.nbytes / max(1, records)),
        "validation_records_per_s": round(rate),
        "validation_failed_records": failed,
        "batch": batch,
        "ack": ack,
        "produce_records_per_s_with_contract": round(records / t_with),
        "produce_records_per_s_without_contract": round(records / t_without),
        "contract_overhead": round(t_with / t_without, 3),
        "dead_lettered": dead,
        "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
