"""``trunkline contract check``: a topic's contract run over the data the topic holds.

Records are read partition by partition in chunks and checked like a produce would check
them (uniqueness is therefore within each chunk, as within each produced batch). Values in
the wire format are unwrapped first. The report adds what only the whole topic can say: a
retention that disagrees with the contract, and how old the newest record is against the
latency SLA.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.contracts._codec import unframe
from trunkline.contracts._sla import LATENCY, find, retention_mismatch
from trunkline.contracts._validator import EXAMPLES, ContractValidator, decode_timestamps
from trunkline.hub import Hub

CHUNK = 100_000


@dataclass(slots=True)
class RuleReport:
    """One rule over the topic: records checked, passed and failed, first failing ones."""

    rule: str
    kind: str
    field: str | None
    reason: str
    checked: int = 0
    failed: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.checked - self.failed

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "field": self.field,
            "reason": self.reason,
            "checked": self.checked,
            "passed": self.passed,
            "failed": self.failed,
            "examples": self.examples,
        }


@dataclass(slots=True)
class CheckReport:
    """The contract of ``topic`` over its retained records."""

    topic: str
    contract: str
    records: int = 0
    tombstones: int = 0
    rules: dict[str, RuleReport] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)  # topic-level findings

    @property
    def ok(self) -> bool:
        return not self.notes and all(r.failed == 0 for r in self.rules.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "contract": self.contract,
            "records": self.records,
            "tombstones": self.tombstones,
            "ok": self.ok,
            "rules": [r.to_dict() for r in self.rules.values()],
            "notes": self.notes,
        }


def check_topic(
    hub: Hub,
    topic: str,
    validator: ContractValidator,
    *,
    retention_ms: int | None = None,
    max_records: int | None = None,
    now_ms: int | None = None,
) -> CheckReport:
    """Run ``validator`` over the records ``topic`` retains (up to ``max_records``)."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    contract = validator.contract
    report = CheckReport(topic, contract.label)
    for rule in validator.rules:
        report.rules[rule.name] = RuleReport(rule.name, rule.kind.value, rule.field, rule.reason)
    schema = RuleReport("schema", "schema", None, "do not fit the schema")
    report.rules = {"schema": schema, **report.rules}
    newest: int | None = None
    budget = max_records if max_records is not None else 2**62
    starts, ends = hub.start_offsets(topic), hub.end_offsets(topic)
    for partition in sorted(starts):
        offset = starts[partition]
        while offset < ends[partition] and budget > 0:
            batch = hub.fetch(topic, partition, offset, max_records=min(CHUNK, budget))
            offset = batch.next_offset
            records = batch.records
            if records.num_rows == 0:
                continue
            budget -= records.num_rows
            stamps = decode_timestamps(records.column("timestamp"))
            newest = max(newest or 0, int(stamps.max()))
            values = records.column("value").combine_chunks()
            present = values.is_valid()
            report.tombstones += records.num_rows - int(pc.sum(present).as_py() or 0)
            kept = pc.filter(values, present)
            if len(kept) == 0:
                continue
            offsets = pc.filter(records.column("offset").combine_chunks(), present)
            labels = pc.binary_join_element_wise(
                pa.scalar(f"partition {partition} offset "), offsets.cast(pa.string()), ""
            )
            payload, _, _ = unframe(kept)
            keep = np.asarray(present.to_numpy(zero_copy_only=False), dtype=np.bool_)
            result = validator.validate(payload, timestamps=stamps[keep], now_ms=now, labels=labels)
            report.records += result.total
            for outcome in result.outcomes:
                entry = report.rules[outcome.rule]
                entry.checked += result.total
                entry.failed += outcome.count
                room = EXAMPLES - len(entry.examples)
                if room > 0:
                    entry.examples.extend(outcome.examples[:room])
    mismatch = retention_mismatch(contract, retention_ms) if retention_ms != -1 else None
    if mismatch:
        report.notes.append(mismatch)
    try:
        latency = find(contract, LATENCY)
    except ValueError:
        latency = None
    if latency is not None and latency.ms is not None and latency.element is None:
        age = None if newest is None else now - newest
        if age is None or age > latency.ms:
            from trunkline.config import format_duration

            shown = (
                "no record" if age is None else f"the newest record is {format_duration(age)} old"
            )
            report.notes.append(f"latency SLA of {format_duration(latency.ms)} not met: {shown}")
    return report
