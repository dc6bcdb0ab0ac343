"""Checking a batch of records against a contract: decode, run every rule, summarise."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.contracts._codec import Decoded, Layout, decode
from trunkline.contracts._model import Contract
from trunkline.contracts._rules import Frame, Mask, Rule, RuleKind, compile_rules, evaluate
from trunkline.errors import InvalidContract, InvalidRecord

#: Examples kept per rule in reports and error messages.
EXAMPLES = 3
_VALUE_CHARS = 40
#: Which Arrow columns an object or array property takes (JSON decoding has the same rule).
_NESTED: dict[str, tuple[Callable[[pa.DataType], bool], str]] = {
    "object": (lambda t: pa.types.is_struct(t) or pa.types.is_map(t), "a struct or map"),
    "array": (
        lambda t: (
            pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        ),
        "a list",
    ),
}


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """What one rule found in a batch: how many records broke it and the first of them.

    ``examples`` name records (``record 3``, or ``partition 0 offset 17``) and show the
    offending value, except for fields classified ``pii``, whose values are never shown.
    ``tolerated`` is true when the rule allows that many failures (``mustBeLessThan``).
    """

    rule: str
    kind: str
    field: str | None
    reason: str
    count: int
    examples: tuple[str, ...]
    tolerated: bool = False

    def __str__(self) -> str:
        where = f" (field {self.field!r})" if self.field else ""
        shown = f"; first: {', '.join(self.examples)}" if self.examples else ""
        return f"{self.rule}{where}: {self.count:,} record(s) {self.reason}{shown}"


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The outcome of checking one batch.

    ``failed`` marks the records that broke at least one rule (tolerated rules aside);
    ``failures`` has one entry per rule with failing records; ``outcomes`` has every rule's
    count, passing ones included.
    """

    total: int
    failed: Mask
    failures: tuple[RuleFailure, ...]
    outcomes: tuple[RuleFailure, ...]
    _matrix: Mask  # total x (1 + rules): column 0 is decoding
    _rules: tuple[Rule, ...]
    _decoded: Decoded

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failed_count(self) -> int:
        return int(self.failed.sum())

    def violations(self) -> tuple[npt.NDArray[np.int64], pa.Array, pa.Array, pa.Array]:
        """Every (failed record, rule broken) pair: record positions among the failed
        records, and the rule, field and reason of each pair, in record then rule order."""
        matrix = self._matrix[self.failed]
        rows, cols = np.nonzero(matrix)
        names = pa.array(["schema", *(r.name for r in self._rules)], pa.string())
        fields = pa.array([None, *(r.field for r in self._rules)], pa.string())
        reasons = pa.array(["", *(r.reason for r in self._rules)], pa.string())
        decoded = self._decoded
        # A decoding failure's field and reason are per record.
        position = np.cumsum(decoded.bad) - 1
        failed_at = np.flatnonzero(self.failed)
        index = np.where(cols == 0, len(names) + position[failed_at[rows]], cols)
        take = pa.array(index.astype(np.int64))
        field = pa.concat_arrays([fields, decoded.field.cast(pa.string())]).take(take)
        reason = pa.concat_arrays([reasons, decoded.reason.cast(pa.string())]).take(take)
        return rows.astype(np.int64), names.take(pa.array(cols.astype(np.int64))), field, reason


class ContractValidator:
    """A contract compiled for checking batches; reuse it for every batch of a topic.

    Example:
        >>> from trunkline.contracts import parse_contract
        >>> contract = parse_contract('''
        ... apiVersion: v3.0.2
        ... kind: DataContract
        ... id: orders
        ... version: 1.0.0
        ... status: active
        ... schema:
        ...   - name: orders
        ...     properties:
        ...       - {name: id, logicalType: integer, required: true}
        ...       - {name: amount, logicalType: number, logicalTypeOptions: {minimum: 0}}
        ... ''')
        >>> result = ContractValidator(contract).validate(
        ...     pa.array([b'{"id": 1, "amount": 5}', b'{"id": 2, "amount": -1}']))
        >>> print(result.failures[0])
        amount.range (field 'amount'): 1 record(s) is not >= 0; first: record 1: amount=-1.0
    """

    def __init__(self, contract: Contract) -> None:
        rules, issues = compile_rules(contract)
        if issues:
            raise InvalidContract(
                f"contract {contract.id!r} cannot be enforced: "
                + "; ".join(issue.message for issue in issues)
            )
        self.contract = contract
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.layout = Layout.of(contract)
        self._pii = {p.name for p in contract.object.properties if p.pii}

    def validate(
        self,
        payload: pa.Array,
        *,
        timestamps: npt.NDArray[np.int64] | None = None,
        now_ms: int | None = None,
        labels: Sequence[str] | pa.Array | None = None,
    ) -> ValidationResult:
        """Check JSON values (binary or string, no nulls).

        Args:
            timestamps: each record's timestamp in ms (freshness); default: now.
            now_ms: the time of the check; default: now.
            labels: how examples name each record; default ``record <i>``.
        """
        if payload.null_count:
            raise InvalidRecord("values to check must not be null (tombstones are not checked)")
        decoded = decode(payload.cast(pa.binary()), self.layout)
        return self._check(decoded, timestamps, now_ms, labels)

    def validate_table(
        self,
        table: pa.Table,
        *,
        timestamps: npt.NDArray[np.int64] | None = None,
        now_ms: int | None = None,
        labels: Sequence[str] | pa.Array | None = None,
    ) -> ValidationResult:
        """Check records given as typed columns (one per property; missing ones are null).

        Columns are cast as :meth:`typed_columns` does; no record is a schema failure, since
        the types are checked for the whole column at once.
        """
        typed = self.typed_columns(table)
        n = typed.num_rows
        empty = pa.array([], pa.string())
        decoded = Decoded(typed, np.zeros(n, dtype=np.bool_), empty, empty)
        return self._check(decoded, timestamps, now_ms, labels)

    def typed_columns(self, table: pa.Table) -> pa.Table:
        """Every property as a column of its type: given columns cast, missing ones null.

        Raises:
            InvalidRecord: a column cannot be cast to its property's type (an object or
                array property takes only struct/map or list columns).
        """
        n = table.num_rows
        columns = []
        for target, logical in zip(self.layout.schema, self.layout.logical, strict=True):
            if target.name not in table.column_names:
                columns.append(pa.nulls(n, target.type))
                continue
            column = table.column(target.name)
            if pa.types.is_null(target.type) or column.type == target.type:
                if logical in _NESTED and not (
                    _NESTED[logical][0](column.type) or pa.types.is_null(column.type)
                ):
                    raise InvalidRecord(
                        f"column {target.name!r}: expected {_NESTED[logical][1]} for the "
                        f"contract's {logical} property, found {column.type}"
                    )
                columns.append(column)
                continue
            try:
                columns.append(column.cast(target.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidRecord(
                    f"column {target.name!r}: expected {target.type} for the contract's "
                    f"property, found {column.type} ({exc})"
                ) from None
        return pa.table(columns, names=[f.name for f in self.layout.schema])

    def _check(
        self,
        decoded: Decoded,
        timestamps: npt.NDArray[np.int64] | None,
        now_ms: int | None,
        labels: Sequence[str] | pa.Array | None,
    ) -> ValidationResult:
        n = decoded.table.num_rows
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        masks = evaluate(list(self.rules), Frame(decoded.table, timestamps, now))
        good = ~decoded.bad
        outcomes: list[RuleFailure] = []
        failures: list[RuleFailure] = []
        columns = [decoded.bad]
        if decoded.bad.any():
            failure = self._failure_of_decoding(decoded, labels)
            outcomes.append(failure)
            failures.append(failure)
        else:
            outcomes.append(RuleFailure("schema", "schema", None, "do not fit the schema", 0, ()))
        for rule, mask in zip(self.rules, masks, strict=True):
            mask = mask & good
            count = int(mask.sum())
            tolerated = rule.tolerance.allows(count, n)
            examples = self._examples(rule, mask, decoded.table, labels) if count else ()
            outcome = RuleFailure(
                rule.name, rule.kind.value, rule.field, rule.reason, count, examples, tolerated
            )
            outcomes.append(outcome)
            if count and not tolerated:
                failures.append(outcome)
                columns.append(mask)
            else:
                columns.append(np.zeros(n, dtype=np.bool_))
        matrix = np.column_stack(columns) if n else np.zeros((0, len(columns)), np.bool_)
        failed: Mask = np.asarray(matrix.any(axis=1), dtype=np.bool_)
        return ValidationResult(
            n, failed, tuple(failures), tuple(outcomes), matrix, self.rules, decoded
        )

    def _failure_of_decoding(
        self, decoded: Decoded, labels: Sequence[str] | pa.Array | None
    ) -> RuleFailure:
        rows = np.flatnonzero(decoded.bad)[:EXAMPLES]
        reasons = decoded.reason.slice(0, EXAMPLES).to_pylist()
        examples = tuple(
            f"{_label(labels, int(i))}: {reason}" for i, reason in zip(rows, reasons, strict=True)
        )
        return RuleFailure(
            "schema",
            RuleKind.SCHEMA.value,
            decoded.field[0].as_py() if len(decoded.field) else None,
            "do not fit the schema (not JSON, a wrong type or an unknown field)",
            int(decoded.bad.sum()),
            examples,
        )

    def _examples(
        self, rule: Rule, mask: Mask, table: pa.Table, labels: Sequence[str] | pa.Array | None
    ) -> tuple[str, ...]:
        rows = np.flatnonzero(mask)[:EXAMPLES]
        shown_fields = rule.fields or ((rule.field,) if rule.field else ())
        out = []
        for i in rows:
            parts = []
            for name in shown_fields:
                if name not in table.column_names:
                    continue
                if name in self._pii:
                    parts.append(f"{name}=<pii, hidden>")
                else:
                    parts.append(f"{name}={_short(table.column(name)[int(i)].as_py())}")
            label = _label(labels, int(i))
            out.append(f"{label}: {', '.join(parts)}" if parts else label)
        return tuple(out)


def _label(labels: Sequence[str] | pa.Array | None, i: int) -> str:
    if labels is None:
        return f"record {i}"
    value = labels[i]
    return str(value.as_py() if isinstance(value, pa.Scalar) else value)


def _short(value: object) -> str:
    text = repr(value)
    if hasattr(value, "isoformat"):
        text = value.isoformat()
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def decode_timestamps(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Record timestamps (Arrow timestamps or ints) as ms since the epoch."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
    filled = pc.fill_null(column, 0)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.int64)
