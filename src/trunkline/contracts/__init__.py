"""Data contracts (Open Data Contract Standard v3) enforced at the hub.

A topic attaches a contract in trunkline.yaml (``contract: contracts/orders.yaml``). The
contract says who owns the data, what a record holds (its JSON Schema is registered under
``<topic>-value``), the quality rules records must meet, and SLAs (retention, freshness).
:class:`ContractedHub` checks every batch produced to such a topic and either rejects it
(:class:`~trunkline.errors.ContractViolation`) or sends the failing records to
``<topic>.dlq``; the good ones are written in Confluent's wire format.

Example:
    >>> import pyarrow as pa
    >>> contract = parse_contract('''
    ... apiVersion: v3.0.2
    ... kind: DataContract
    ... id: shop-orders
    ... version: 1.0.0
    ... status: active
    ... schema:
    ...   - name: orders
    ...     properties:
    ...       - {name: order_id, logicalType: string, required: true, unique: true}
    ...       - name: status
    ...         logicalType: string
    ...         quality:
    ...           - metric: invalidValues
    ...             arguments: {validValues: [placed, paid, shipped]}
    ... ''')
    >>> result = ContractValidator(contract).validate(pa.array([
    ...     b'{"order_id": "o-1", "status": "paid"}',
    ...     b'{"order_id": "o-1", "status": "lost"}']))
    >>> for failure in result.failures:
    ...     print(failure)
    order_id.unique (field 'order_id'): 2 record(s) is not unique within the batch; first: record 0: order_id='o-1', record 1: order_id='o-1'
    status.accepted_values (field 'status'): 1 record(s) is not one of 'placed', 'paid', 'shipped'; first: record 1: status='lost'
"""  # noqa: E501

from __future__ import annotations

from trunkline.contracts._codec import frame, unframe
from trunkline.contracts._load import LoadedContract, load_contract, parse_contract, read_contract
from trunkline.contracts._model import (
    Contract,
    Property,
    QualityRule,
    SchemaObject,
    SlaProperty,
)
from trunkline.contracts._rules import Rule, RuleKind
from trunkline.contracts._schema import json_schema, subject_for
from trunkline.contracts._validator import ContractValidator, RuleFailure, ValidationResult

__all__ = [
    "Contract",
    "ContractValidator",
    "LoadedContract",
    "Property",
    "QualityRule",
    "Rule",
    "RuleFailure",
    "RuleKind",
    "SchemaObject",
    "SlaProperty",
    "ValidationResult",
    "frame",
    "json_schema",
    "load_contract",
    "parse_contract",
    "read_contract",
    "subject_for",
    "unframe",
]
