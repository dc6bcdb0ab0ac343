"""Values of the schema registry: schema types, compatibility levels, schemas and versions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NewType

from trunkline.errors import InvalidCompatibility, InvalidSchema

#: A global schema id: the 4 bytes after the magic byte in Confluent's wire format.
SchemaId = NewType("SchemaId", int)
#: A subject: the name versions are registered under (``<topic>-value`` by convention).
SubjectName = NewType("SubjectName", str)


class SchemaType(enum.StrEnum):
    """The schema languages the registry understands, as Confluent names them."""

    AVRO = "AVRO"
    JSON = "JSON"

    @classmethod
    def parse(cls, value: str | SchemaType | None) -> SchemaType:
        """``AVRO`` when None (Confluent's default); case-insensitive; ``avsc`` too."""
        if value is None:
            return cls.AVRO
        if isinstance(value, SchemaType):
            return value
        spelled = str(value).strip().upper()
        spelled = {"AVSC": "AVRO", "JSONSCHEMA": "JSON", "JSON_SCHEMA": "JSON"}.get(
            spelled, spelled
        )
        try:
            return cls(spelled)
        except ValueError:
            known = ", ".join(member.value for member in cls)
            raise InvalidSchema(
                f"unknown schema type {value!r}: expected one of {known} "
                "(PROTOBUF is not supported yet)"
            ) from None


class Compatibility(enum.StrEnum):
    """Compatibility levels, as Confluent's ``/config`` spells them.

    Which registered versions a new schema is compared with, and in which direction:
    BACKWARD reads the latest version's data with the new schema; FORWARD reads the new
    schema's data with the latest version; FULL both. ``*_TRANSITIVE`` compare with every
    live version instead of the latest. NONE compares nothing.
    """

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @classmethod
    def parse(cls, value: str | Compatibility) -> Compatibility:
        """Case-insensitive; raises InvalidCompatibility (42203) naming the valid levels."""
        if isinstance(value, Compatibility):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            known = ", ".join(member.value for member in cls)
            raise InvalidCompatibility(
                f"invalid compatibility level {value!r}: expected one of {known}"
            ) from None

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """New schema reads old data (BACKWARD*, FULL*)."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Old schemas read new data (FORWARD*, FULL*)."""
        return self.value.startswith(("FORWARD", "FULL"))


class JsonPolicy(enum.StrEnum):
    """How JSON Schema compatibility treats properties added to an open content model.

    STRICT (the default) is Confluent's: a typed property added where
    ``additionalProperties`` is open breaks BACKWARD, since old data may hold that name with
    another type. LENIENT trusts readers to ignore unknown fields: optional properties may be
    added to open models, closed models may lose properties, and ``additionalProperties``
    may be narrowed. A trunkline extension, set with ``jsonCompatibilityPolicy`` in
    ``/config``.
    """

    STRICT = "STRICT"
    LENIENT = "LENIENT"

    @classmethod
    def parse(cls, value: str | JsonPolicy) -> JsonPolicy:
        if isinstance(value, JsonPolicy):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            raise InvalidCompatibility(
                f"invalid JSON compatibility policy {value!r}: expected STRICT or LENIENT"
            ) from None


@dataclass(frozen=True, slots=True)
class SchemaReference:
    """A reference from one schema to a registered version of another.

    ``name`` is how the referring schema names it: the full name of an Avro type the
    referenced schema defines, or the URI a JSON Schema ``$ref`` uses.
    """

    name: str
    subject: str
    version: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True, slots=True)
class Schema:
    """A schema's text with its type and references, as registered or to register."""

    text: str
    schema_type: SchemaType = SchemaType.AVRO
    references: tuple[SchemaReference, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A version of a subject: which schema (id and text) it is, and whether it is deleted."""

    subject: str
    version: int
    id: SchemaId
    schema: Schema
    deleted: bool = False

    @property
    def text(self) -> str:
        return self.schema.text

    @property
    def schema_type(self) -> SchemaType:
        return self.schema.schema_type

    @property
    def references(self) -> tuple[SchemaReference, ...]:
        return self.schema.references


@dataclass(frozen=True, slots=True)
class SubjectVersion:
    """Where a schema id is registered: one (subject, version) pair."""

    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Compatibility settings of one subject (or of the registry, ``subject=None``).

    A field left None is not set at this level: the subject follows the global setting,
    and the global one follows the default (BACKWARD, STRICT).
    """

    subject: str | None = None
    compatibility: Compatibility | None = None
    json_policy: JsonPolicy | None = None


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason a schema cannot read (or be read by) another.

    ``path`` points into the schema being checked: ``/fields/2/type`` for Avro (the reader
    schema's path, as Avro's own checker reports it), ``#/properties/amount`` for JSON
    Schema. ``rule`` is the rule broken, in the names of Avro's checker and of Confluent's
    JSON Schema diff (``READER_FIELD_MISSING_DEFAULT_VALUE``,
    ``PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL``...).
    """

    rule: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule} at {self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class CompatibilityReport:
    """The result of comparing a schema with a subject's versions.

    ``messages`` has one line per incompatibility found, naming the path, the rule, the
    direction and the version it was compared with.
    """

    compatible: bool
    compatibility: Compatibility
    messages: tuple[str, ...] = field(default=())
