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
  time without (goal: <= 1.5). The dead letters of the warm-up and the repeats are
  ``dead_lettered``;
* typed produce: the same orders as an Arrow table of typed columns (one per property, from
  the same DuckDB query), in batches of ``batch`` rows, to the contracted topic (checked as
  columns, then encoded to JSON once and framed) and to the plain topic, where the producer
  encodes the rows to JSON values itself with the same encoder (DuckDB ``to_json``), as a
  producer without a contract has to. Warm-up, alternation and medians as above;
  ``contract_overhead_typed`` = time with the contract / time without (goal: <= 1.5);
  ``dead_lettered_typed`` counts this workload's dead letters. Typed values are a few bytes
  longer (timestamps carry microseconds);
* the parse floor: Arrow's JSON reader alone on the same values, joined into JSON lines
  beforehand, in the same batches (``json_parse_records_per_s``).
  ``contract_overhead_parse_floor`` = (time without the contract + that parse) / time without:
  what ``contract_overhead`` would be if the rules, the framing and the dead letters cost
  nothing, i.e. the least a check that parses JSON values can reach here.

With ``bootstrap`` the two produce workloads also run on that Kafka cluster, under ``kafka``
(topics named ``perf-contracts-<random>-...``, deleted afterwards; the parse floor there uses
the Kafka produce without a contract).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from trunkline.contracts import ContractValidator, parse_contract
from trunkline.contracts._codec import encode, json_lines, read_lines
from trunkline.errors import TopicNotFound

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


def _orders(records: int) -> str:
    """The order rows, typed: one query for both the JSON and the typed workloads."""
    return f"""
        SELECT
            'o-' || i AS order_id,
            'c-' || (i * 7919 % 10000) AS customer,
            'user' || i || '@example.com' AS email,
            CASE WHEN i % 1000 = 999 THEN -1.0 ELSE round((i * 37 % 50000) / 100.0, 2)
                END AS amount,
            1 + i % 9 AS quantity,
            ['placed', 'paid', 'shipped', 'refunded'][1 + i % 4] AS status,
            'EUR' AS currency,
            TIMESTAMP '2026-11-25 10:00:00' + to_minutes(i % 60) AS created_at,
            'DE' AS country
        FROM range({int(records)}) t(i)
    """  # noqa: S608


def sample_values(records: int) -> pa.Array:
    """``records`` JSON order values, made in DuckDB (one in 1,000 has a negative amount)."""
    query = f"""
        SELECT to_json(struct_pack(
            order_id, customer, email, amount, quantity, status, currency,
            created_at := strftime(created_at, '%Y-%m-%dT%H:%M:%SZ'),
            country))::BLOB AS v
        FROM ({_orders(records)})
    """  # noqa: S608
    values = duckdb.sql(query).to_arrow_table().column("v").combine_chunks()
    return values.cast(pa.binary())


def sample_table(records: int) -> pa.Table:
    """The same orders as :func:`sample_values`, as typed columns (``created_at`` in UTC)."""
    table = duckdb.sql(_orders(records)).to_arrow_table()
    at = table.column_names.index("created_at")
    stamps = table.column(at).cast(pa.timestamp("us", tz="UTC"))
    return table.set_column(at, "created_at", stamps).combine_chunks()


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


def parse_floor(values: pa.Array, batch: int, repeats: int) -> float:
    """Seconds Arrow's JSON reader alone takes to read ``values`` in batches of ``batch``.

    The values are joined into JSON lines beforehand and read as the validator's decoding
    reads them (its :func:`~trunkline.contracts._codec.read_lines`): the least any check of
    JSON values has to pay with the fastest parser available here (see BENCHMARKS.md).
    """
    layout = ContractValidator(parse_contract(CONTRACT)).layout
    joined = [json_lines(values.slice(first, batch)) for first in range(0, len(values), batch)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for data, longest in joined:
            read_lines(data, longest, layout)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _project(root: Path, hub: str, prefix: str) -> None:
    (root / "contracts").mkdir(parents=True)
    (root / "contracts" / "orders.yaml").write_text(CONTRACT)
    (root / "trunkline.yaml").write_text(
        f"hub: {hub}\n"
        "meta: sqlite:///meta.db\n"
        "topics:\n"
        f"  {prefix}contracted: {{contract: contracts/orders.yaml, on_violation: dead_letter}}\n"
        f"  {prefix}plain: {{}}\n"
    )


def _produce(hub: Any, topic: str, values: pa.Array, batch: int) -> float:
    start = time.perf_counter()
    for first in range(0, len(values), batch):
        hub.produce(topic, pa.table({"value": values.slice(first, batch)}))
    return time.perf_counter() - start


def _produce_typed(hub: Any, topic: str, rows: pa.Table, batch: int, layout: Any) -> float:
    """Typed batches; with ``layout`` the producer encodes them to JSON values itself."""
    start = time.perf_counter()
    for first in range(0, rows.num_rows, batch):
        part = rows.slice(first, batch)
        hub.produce(topic, part if layout is None else pa.table({"value": encode(part, layout)}))
    return time.perf_counter() - start


def produce_workloads(
    hub: Any,
    prefix: str,
    values: pa.Array,
    rows: pa.Table,
    *,
    batch: int,
    repeats: int,
    parse_s: float,
) -> dict[str, Any]:
    """The JSON and typed produce workloads on topics ``<prefix>contracted`` / ``plain``;
    ``parse_s`` is :func:`parse_floor`'s time for the floor."""
    contracted, plain, dlq = f"{prefix}contracted", f"{prefix}plain", f"{prefix}contracted.dlq"
    layout = ContractValidator(parse_contract(CONTRACT)).layout
    warm = values.slice(0, min(len(values), 5 * batch))
    _produce(hub, contracted, warm, batch)
    _produce(hub, plain, warm, batch)
    with_contract, without = [], []
    for _ in range(repeats):
        without.append(_produce(hub, plain, values, batch))
        with_contract.append(_produce(hub, contracted, values, batch))
    dead = sum(hub.end_offsets(dlq).values())
    warm_rows = rows.slice(0, min(rows.num_rows, 5 * batch))
    _produce_typed(hub, contracted, warm_rows, batch, None)
    _produce_typed(hub, plain, warm_rows, batch, layout)
    typed_with, typed_without = [], []
    for _ in range(repeats):
        typed_without.append(_produce_typed(hub, plain, rows, batch, layout))
        typed_with.append(_produce_typed(hub, contracted, rows, batch, None))
    dead_typed = sum(hub.end_offsets(dlq).values()) - dead
    t_with, t_without = statistics.median(with_contract), statistics.median(without)
    typed_t_with, typed_t_without = statistics.median(typed_with), statistics.median(typed_without)
    records = len(values)
    return {
        "produce_records_per_s_with_contract": round(records / t_with),
        "produce_records_per_s_without_contract": round(records / t_without),
        "contract_overhead": round(t_with / t_without, 3),
        "contract_overhead_parse_floor": round((t_without + parse_s) / t_without, 3),
        "dead_lettered": dead,
        "produce_typed_records_per_s_with_contract": round(records / typed_t_with),
        "produce_typed_records_per_s_without_contract": round(records / typed_t_without),
        "contract_overhead_typed": round(typed_t_with / typed_t_without, 3),
        "dead_lettered_typed": dead_typed,
    }


def run(
    directory: Path | None = None,
    *,
    records: int = 1_000_000,
    batch: int = 10_000,
    repeats: int = 3,
    ack: str = "fsync",
    bootstrap: str | None = None,
) -> dict[str, Any]:
    """Measure; returns the figures (see the module docstring). With ``bootstrap``, the
    produce workloads also run on that Kafka cluster (``kafka``; its topics are deleted)."""
    from trunkline.project import Project

    values = sample_values(records)
    rows = sample_table(records)
    rate, failed = validation_throughput(values, repeats)
    sizes: dict[str, Any] = {
        "batch": batch,
        "repeats": repeats,
        "parse_s": parse_floor(values, batch, repeats),
    }
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp) / "embedded"
        _project(root, f"{{path: hub, ack: {ack}}}", "")
        with Project.open(root) as project:
            project.apply_topics()
            embedded = produce_workloads(project.hub, "", values, rows, **sizes)
        kafka = None
        if bootstrap is not None:
            kafka = _on_kafka(Path(tmp) / "kafka", bootstrap, values, rows, sizes)
    figures: dict[str, Any] = {
        "benchmark": "contracts",
        "records": records,
        "rules": 10,
        "value_bytes_avg": round(values.nbytes / max(1, records)),
        "validation_records_per_s": round(rate),
        "validation_failed_records": failed,
        "json_parse_records_per_s": round(records / sizes["parse_s"]),
        "batch": batch,
        "ack": ack,
    }
    figures.update(embedded)
    if kafka is not None:
        figures["kafka"] = kafka
    figures["repeats"] = repeats
    figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    return figures


def _on_kafka(
    root: Path, bootstrap: str, values: pa.Array, rows: pa.Table, sizes: dict[str, Any]
) -> dict[str, Any]:
    from trunkline.project import Project

    prefix = f"perf-contracts-{uuid.uuid4().hex[:8]}-"
    _project(root, json.dumps({"backend": "kafka", "bootstrap": bootstrap}), prefix)
    with Project.open(root) as project:
        project.apply_topics()
        hub = project.hub
        try:
            return produce_workloads(hub, prefix, values, rows, **sizes)
        finally:
            for topic in ("contracted", "plain", "contracted.dlq"):
                with contextlib.suppress(TopicNotFound):
                    hub.delete_topic(prefix + topic)
