"""Schema registry: subjects, versions, global ids, Avro and JSON Schema, compatibility levels.

Confluent Schema Registry's model and rules, with its state in the metadata store. The
HTTP API that Confluent clients talk to is in :mod:`trunkline.api`.

Example:
    >>> from trunkline.meta import MetaStore
    >>> with MetaStore.open("sqlite://") as store:
    ...     registry = SchemaRegistry(store)
    ...     v1 = registry.register("orders-value", {"type": "record", "name": "Order",
    ...         "fields": [{"name": "id", "type": "long"}]})
    ...     report = registry.check("orders-value", {"type": "record", "name": "Order",
    ...         "fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "double"}]})
    ...     report.compatible
    False
    >>> print(report.messages[0])  # doctest: +ELLIPSIS
    READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1: the reader's field 'amount' ...
"""

from __future__ import annotations

from trunkline.schemas._compat import FORMATS, check_compatibility
from trunkline.schemas._format import ParsedSchema, ResolvedReference, SchemaFormat
from trunkline.schemas._types import (
    Compatibility,
    CompatibilityReport,
    Incompatibility,
    JsonPolicy,
    RegisteredSchema,
    RegistryConfig,
    Schema,
    SchemaId,
    SchemaReference,
    SchemaType,
    SubjectName,
    SubjectVersion,
)
from trunkline.schemas.diff import Change, diff
from trunkline.schemas.registry import LATEST, SchemaRegistry, parse_version

__all__ = [
    "FORMATS",
    "LATEST",
    "Change",
    "Compatibility",
    "CompatibilityReport",
    "Incompatibility",
    "JsonPolicy",
    "ParsedSchema",
    "RegisteredSchema",
    "RegistryConfig",
    "ResolvedReference",
    "Schema",
    "SchemaFormat",
    "SchemaId",
    "SchemaReference",
    "SchemaRegistry",
    "SchemaType",
    "SubjectName",
    "SubjectVersion",
    "check_compatibility",
    "diff",
    "parse_version",
]
