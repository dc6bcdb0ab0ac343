"""The enforcement seam: a Hub that checks every produce to a topic with a contract.

:class:`ContractedHub` implements the :class:`~trunkline.hub.Hub` protocol by delegating to
the backend (embedded or Kafka). Only :meth:`ContractedHub.produce` differs, and only for
topics whose contract :class:`~trunkline.contracts._attach.TopicContracts` finds:

1. Input is normalised as the hub does it. Arrow tables whose columns are the contract's
   properties (no ``value`` column) are checked as typed columns, without a JSON round
   trip: each column is cast to its property's type (one that cannot be is an
   :class:`~trunkline.errors.InvalidRecord`), the rules run on them (step 3), then the
   cast columns are encoded to JSON once, in DuckDB, and framed (step 5). The outcome is
   that of producing those JSON values: same topic bytes, same dead letters and headers,
   same ContractViolation.
2. Values already in Confluent's wire format are unwrapped; their schema id must be a
   version of ``<topic>-value``. Tombstones (null values) are not checked.
3. The batch is checked (:class:`~trunkline.contracts.ContractValidator`): decoding,
   types, unknown fields, then every rule on whole columns.
4. ``reject``: any failing record fails the whole produce with
   :class:`~trunkline.errors.ContractViolation`; nothing is written.
   ``dead_letter``: failing records go to ``<topic>.dlq`` first (original bytes, original
   headers, plus ``trunkline.rule`` / ``trunkline.field`` / ``trunkline.reason`` for each
   rule broken and ``trunkline.error`` / ``.stage`` / ``.contract`` / ``.topic`` /
   ``.time``), then the good ones go to the topic.
5. Values written to the topic are framed: magic byte 0 + the 4-byte schema id + the JSON.

Every other method, and every attribute the protocol does not name (``path``,
``maintain``...), is the backend's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.contracts._attach import Enforcement, TopicContracts, dead_letter_topic
from trunkline.contracts._codec import encode, frame, unframe
from trunkline.contracts._validator import RuleFailure, ValidationResult, decode_timestamps
from trunkline.errors import ContractViolation, InvalidRecord, TopicExists, TopicNotFound
from trunkline.hub import (
    Consumer,
    FetchedBatch,
    GroupDescription,
    Hub,
    ProduceResult,
    TopicConfig,
    TopicDescription,
    TopicPartition,
)
from trunkline.hub._records import to_table
from trunkline.hub._types import HEADER_TYPE
from trunkline.hub.protocol import AutoOffsetReset, Producible, ResetTarget

_RESERVED = ("key", "timestamp", "headers", "partition")
#: Dead-letter topics keep their records until someone deletes them.
_DLQ_CONFIG = TopicConfig(retention_ms=None)


@dataclass(frozen=True, slots=True)
class ContractedProduceResult(ProduceResult):
    """A produce to a contracted topic. Dead-lettered records have partition and offset -1;
    ``failures`` says which rules they broke."""

    dead_lettered: int = 0
    dead_letter_topic: str | None = None
    failures: tuple[RuleFailure, ...] = ()


class ContractedHub:
    """A :class:`~trunkline.hub.Hub` that enforces topic contracts at produce.

    ``Project.hub`` returns one when any topic of the project has a contract, so the CLI,
    the Python API and the connectors runtime all produce through it.

    Example:
        >>> with trunkline.open_project("shop") as project:  # doctest: +SKIP
        ...     project.hub.produce("orders", [Record(b'{"order_id": "o-1"}')])
    """

    def __init__(self, inner: Hub, contracts: TopicContracts) -> None:
        self.inner = inner
        self.contracts = contracts
        self.backend = inner.backend
        self._letters = DeadLetters(inner)

    def __getattr__(self, name: str) -> Any:
        # Backend extras (the embedded hub's path, maintain(), partition_log()...).
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"ContractedHub({self.inner!r})"

    # Records -------------------------------------------------------------------------

    def produce(
        self, topic: str, records: Producible, *, partition: int | None = None
    ) -> ProduceResult:
        enforcement = self.contracts.enforcement(topic)
        if enforcement is None:
            return self.inner.produce(topic, records, partition=partition)
        return _Produce(self.inner, enforcement, self._letters).run(records, partition)

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
        timeout: float = 0.0,
    ) -> FetchedBatch:
        return self.inner.fetch(
            topic, partition, offset, max_records=max_records, max_bytes=max_bytes,
            timeout=timeout,
        )  # fmt: skip

    def start_offsets(self, topic: str) -> dict[int, int]:
        return self.inner.start_offsets(topic)

    def end_offsets(self, topic: str) -> dict[int, int]:
        return self.inner.end_offsets(topic)

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int | None]:
        return self.inner.offsets_for_time(topic, timestamp_ms)

    # Topics --------------------------------------------------------------------------

    def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicDescription:
        return self.inner.create_topic(name, config)

    def delete_topic(self, name: str) -> None:
        self._letters.forget(name)
        self.inner.delete_topic(name)

    def list_topics(self) -> list[str]:
        return self.inner.list_topics()

    def describe_topic(self, name: str) -> TopicDescription:
        return self.inner.describe_topic(name)

    def alter_topic(self, name: str, changes: Mapping[str, Any]) -> TopicDescription:
        return self.inner.alter_topic(name, changes)

    # Groups --------------------------------------------------------------------------

    def consumer(
        self,
        group: str,
        topics: Iterable[str],
        *,
        auto_offset_reset: AutoOffsetReset = "earliest",
        client: str = "",
    ) -> Consumer:
        return self.inner.consumer(
            group, topics, auto_offset_reset=auto_offset_reset, client=client
        )

    def list_groups(self) -> list[str]:
        return self.inner.list_groups()

    def describe_group(self, group: str) -> GroupDescription:
        return self.inner.describe_group(group)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self.inner.committed(group, topic)

    def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        self.inner.commit_offsets(group, offsets)

    def reset_group(
        self, group: str, topic: str, to: ResetTarget, *, by_time: bool = False
    ) -> dict[int, int]:
        return self.inner.reset_group(group, topic, to, by_time=by_time)

    def delete_group(self, group: str) -> None:
        self.inner.delete_group(group)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> ContractedHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Produce:
    """One produce to a contracted topic."""

    def __init__(self, hub: Hub, enforcement: Enforcement, letters: DeadLetters) -> None:
        self.hub = hub
        self.enforcement = enforcement
        self.letters = letters
        self.topic = enforcement.topic
        self.now = time.time_ns() // 1_000_000

    def run(self, records: Producible, partition: int | None) -> ProduceResult:
        if isinstance(records, pa.RecordBatch):
            records = pa.Table.from_batches([records])
        if isinstance(records, pa.Table) and _is_typed(records):
            return self._typed(records, partition)
        table = to_table(records, self.now)
        n = table.num_rows
        if n == 0:
            return self.hub.produce(self.topic, table, partition=partition)
        values = table.column("value").combine_chunks()
        stamps = decode_timestamps(table.column("timestamp"))
        if values.null_count:
            present = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), np.bool_)
            where = np.flatnonzero(present)
            checked = values.filter(pa.array(present))
            stamps = stamps[where]
        else:  # no tombstones: every record is checked, in place
            where = np.arange(n)
            checked = values
        payload, framed, ids = unframe(checked)
        if len(ids):
            self._check_ids(ids, where[framed])
        result = self.enforcement.validator.validate(payload, timestamps=stamps, now_ms=self.now)
        wire = frame(values, self.enforcement.schema_id)
        if len(ids):  # values already in the wire format are written as they came
            already = np.zeros(n, dtype=np.bool_)
            already[where[framed]] = True
            wire = pc.if_else(pa.array(already), values, wire)
        table = table.set_column(table.column_names.index("value"), "value", wire)
        if result.ok:
            return self.hub.produce(self.topic, table, partition=partition)
        failed = np.zeros(n, dtype=np.bool_)
        failed[where[result.failed]] = True
        if self.enforcement.policy == "reject":
            raise self._violation(result)
        bad = np.flatnonzero(failed)
        return self._dead_letter(table, values.take(pa.array(bad)), failed, result, partition)

    def _typed(self, records: pa.Table, partition: int | None) -> ProduceResult:
        """Typed columns (one per property) are checked as they are, then encoded once.

        What is written is the JSON of the columns cast to the properties' types, so the
        topic holds what was checked; dead letters carry the same JSON, unframed.
        """
        validator = self.enforcement.validator
        layout = validator.layout
        data = [c for c in records.column_names if c not in _RESERVED or c in layout.names]
        unknown = [c for c in data if c not in layout.names]
        if unknown:
            raise InvalidRecord(
                f"column(s) {', '.join(map(repr, unknown))} are not properties of contract "
                f"{self.enforcement.contract_label} (properties: {', '.join(layout.names)})"
            )
        typed = validator.typed_columns(records.select(data))
        n = records.num_rows
        kept = {c: records.column(c) for c in records.column_names if c not in data}
        # The value is filled in once the batch has passed (reject encodes nothing).
        table = to_table(pa.table({**kept, "value": pa.nulls(n, pa.binary())}), self.now)
        if n == 0:
            return self.hub.produce(self.topic, table, partition=partition)
        stamps = decode_timestamps(table.column("timestamp"))
        result = validator.validate_table(typed, timestamps=stamps, now_ms=self.now)
        if not result.ok and self.enforcement.policy == "reject":
            raise self._violation(result)
        # Framing in the same DuckDB expression measured no faster than frame() after it.
        values = encode(typed.select(data), layout)
        wire = frame(values, self.enforcement.schema_id)
        table = table.set_column(table.column_names.index("value"), "value", wire)
        if result.ok:
            return self.hub.produce(self.topic, table, partition=partition)
        bad = values.take(pa.array(np.flatnonzero(result.failed)))
        return self._dead_letter(table, bad, result.failed, result, partition)

    def _check_ids(self, ids: np.ndarray, rows: npt.NDArray[np.int64]) -> None:
        unknown = self.enforcement.unknown_ids(ids)
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            raise InvalidRecord(
                f"record {int(rows[first])}: its value is in the wire format with schema id "
                f"{int(ids[first])}, which is not a version of subject '{self.topic}-value'"
            )

    def _violation(self, result: ValidationResult) -> ContractViolation:
        lines = "\n".join(f"  - {failure}" for failure in result.failures)
        return ContractViolation(
            f"topic {self.topic!r}: {result.failed_count:,} of {result.total:,} record(s) break "
            f"contract {self.enforcement.contract_label}; the batch was rejected and nothing "
            f"was written:\n{lines}",
            topic=self.topic,
            failures=result.failures,
            records=result.failed_count,
            total=result.total,
        )

    def _dead_letter(
        self,
        table: pa.Table,
        original: pa.Array,
        failed: npt.NDArray[np.bool_],
        result: ValidationResult,
        partition: int | None,
    ) -> ProduceResult:
        """``original``: the values the failing records came with, in record order."""
        bad = np.flatnonzero(failed)
        letters = table.take(pa.array(bad))
        letters = letters.set_column(letters.column_names.index("value"), "value", original)
        letters = letters.set_column(
            letters.column_names.index("headers"),
            "headers",
            self._headers(letters.column("headers").combine_chunks(), result),
        )
        letters = letters.drop_columns(["partition"])
        target = dead_letter_topic(self.topic)
        self.letters.produce(target, letters)
        n = table.num_rows
        partitions = np.full(n, -1, dtype=np.int32)
        offsets = np.full(n, -1, dtype=np.int64)
        if len(bad) < n:
            # A mask keeps the good rows in one pass; the bad ones are few or none.
            written = self.hub.produce(
                self.topic, table.filter(pa.array(~failed)), partition=partition
            )
            partitions[~failed] = written.partitions.to_numpy(zero_copy_only=False)
            offsets[~failed] = written.offsets.to_numpy(zero_copy_only=False)
        return ContractedProduceResult(
            pa.array(partitions),
            pa.array(offsets),
            dead_lettered=len(bad),
            dead_letter_topic=target,
            failures=result.failures,
        )

    def _headers(self, existing: pa.ListArray, result: ValidationResult) -> pa.ListArray:
        rows, rules, fields, reasons = result.violations()
        m = len(existing)
        first = np.unique(rows, return_index=True)[1]
        first_rule = rules.take(pa.array(first))
        first_reason = reasons.take(pa.array(first))
        error = pc.binary_join_element_wise(first_rule, first_reason, ": ")
        constants = {
            "trunkline.stage": "contract",
            "trunkline.contract": self.enforcement.contract_label,
            "trunkline.topic": self.topic,
            "trunkline.time": str(self.now),
        }
        every = np.arange(m, dtype=np.int64)
        groups: list[tuple[npt.NDArray[np.int64], pa.Array, pa.Array]] = [
            (every, _repeat("trunkline.error", m), error)
        ]
        for key, column in (
            ("trunkline.rule", rules),
            ("trunkline.field", pc.fill_null(fields, "")),
            ("trunkline.reason", reasons),
        ):
            groups.append((rows, _repeat(key, len(rows)), column))
        for key, text in constants.items():
            groups.append((every, _repeat(key, m), _repeat(text, m)))
        # Entries of one record in this order: error, then rule/field/reason per rule
        # broken (in rule order), then the constants.
        entry_rows = np.concatenate([g[0] for g in groups])
        group_of = np.concatenate([np.full(len(g[0]), i) for i, g in enumerate(groups)])
        within = np.concatenate([np.arange(len(g[0])) for g in groups])
        triple = np.where((group_of >= 1) & (group_of <= 3), within * 3 + group_of, 0)
        rank = np.where(group_of == 0, 0, np.where(group_of <= 3, triple, 10**12 + group_of))
        order = np.lexsort((rank, entry_rows))
        keys = pa.concat_arrays([g[1] for g in groups]).take(pa.array(order))
        values = pa.concat_arrays([g[2].cast(pa.binary()) for g in groups]).take(pa.array(order))
        return append_headers(existing, entry_rows[order], keys, values)


def _repeat(text: str, n: int) -> pa.Array:
    return pa.array(np.full(n, text, dtype=object), pa.string())


def _is_typed(table: pa.Table) -> bool:
    """Contract columns rather than hub records: no binary/string ``value`` column."""
    if "value" not in table.column_names:
        return True
    kind = table.schema.field("value").type
    textual = (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_null(kind)
    )
    return not textual


def append_headers(
    existing: pa.ListArray,
    rows: npt.NDArray[np.int64],
    keys: pa.Array,
    values: pa.Array,
) -> pa.ListArray:
    """``existing`` header lists with entries appended: entry i goes to record ``rows[i]``
    (``rows`` sorted; entries of one record keep their order), after its own headers."""
    n = len(existing)
    existing = existing.cast(HEADER_TYPE)
    old_lengths = np.asarray(
        pc.fill_null(pc.list_value_length(existing), 0).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    flat = existing.flatten()
    added = np.bincount(rows, minlength=n).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(old_lengths + added)]).astype(np.int64)
    old_first = np.concatenate([[0], np.cumsum(old_lengths)])[:-1]
    old_rows = np.repeat(np.arange(n), old_lengths)
    old_at = starts[old_rows] + (np.arange(len(flat)) - old_first[old_rows])
    new_first = np.concatenate([[0], np.cumsum(added)])[:-1]
    new_at = starts[rows] + old_lengths[rows] + (np.arange(len(rows)) - new_first[rows])
    order = np.empty(len(flat) + len(rows), dtype=np.int64)
    order[old_at] = np.arange(len(flat))
    order[new_at] = len(flat) + np.arange(len(rows))
    entries = pa.StructArray.from_arrays(
        [keys.cast(pa.string()), values.cast(pa.binary())], fields=list(HEADER_TYPE.value_type)
    )
    child = pa.concat_arrays([flat, entries]).take(pa.array(order))
    return pa.ListArray.from_arrays(pa.array(starts.astype(np.int32)), child, type=HEADER_TYPE)


class DeadLetters:
    """Writes dead letters, creating ``<topic>.dlq`` when it does not exist.

    Which dead-letter topics exist is remembered rather than asked before every batch: a
    produce to a topic that has been deleted since fails with TopicNotFound (the embedded
    hub checks the topic's file on every produce, Kafka's client on delivery), and then the
    topic is created again and the produce retried once.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._known: set[str] = set()

    def produce(self, topic: str, letters: pa.Table) -> ProduceResult:
        if topic not in self._known:
            self._ensure(topic)
        try:
            return self.hub.produce(topic, letters)
        except TopicNotFound:
            self._known.discard(topic)
            self._ensure(topic)
            return self.hub.produce(topic, letters)

    def forget(self, topic: str) -> None:
        self._known.discard(topic)

    def _ensure(self, topic: str) -> None:
        try:
            self.hub.describe_topic(topic)
        except TopicNotFound:
            with contextlib.suppress(TopicExists):
                self.hub.create_topic(topic, _DLQ_CONFIG)
        self._known.add(topic)
