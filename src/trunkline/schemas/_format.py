"""The seam between the registry and a schema language: parse, identify, compare.

A format (Avro, JSON Schema; Protobuf may follow) is one object with two methods; the
registry keeps them in a table by :class:`SchemaType` (``trunkline.schemas._compat.FORMATS``)
and never branches on the type itself.

Lifecycle: :meth:`SchemaFormat.parse` is called for every schema the registry stores or
compares, after the schemas its references name have been parsed (dependencies first, each
once); it must reject anything a client could not use, with :class:`InvalidSchema`.
:meth:`SchemaFormat.check` is called with two parsed schemas of its own type and must not
raise for schemas that parsed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trunkline.schemas._types import Incompatibility, JsonPolicy, SchemaReference, SchemaType


@dataclass(frozen=True, slots=True, eq=False)
class ParsedSchema:
    """A schema checked and parsed by its format.

    Attributes:
        schema_type: its language.
        text: the text as given.
        canonical: the form identity is decided on: two texts with the same canonical form
            (and the same references) are one schema with one id.
        document: the format's parsed form (Avro: fastavro's parsed schema; JSON Schema: the
            decoded document).
        named: what the schema can refer to by name: Avro named types (its own and its
            references'), JSON Schema documents by reference name.
        references: the references it was parsed with, resolved.
    """

    schema_type: SchemaType
    text: str
    canonical: str
    document: Any
    named: Mapping[str, Any] = field(default_factory=dict)
    references: tuple[ResolvedReference, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class ResolvedReference:
    """A schema reference together with the parsed schema it points at."""

    reference: SchemaReference
    schema: ParsedSchema


class SchemaFormat(Protocol):
    """One schema language. See the module docstring for when each method is called."""

    schema_type: SchemaType

    def parse(self, text: str, references: Sequence[ResolvedReference]) -> ParsedSchema:
        """Check ``text`` and parse it, with the named types / documents of ``references``.

        Raises:
            InvalidSchema: not valid JSON, not a valid schema, or a name it uses that neither
                it nor its references define. The message says where.
        """
        ...

    def check(
        self, reader: ParsedSchema, writer: ParsedSchema, policy: JsonPolicy
    ) -> list[Incompatibility]:
        """Why ``reader`` cannot read all data written with ``writer`` (empty: it can).

        ``policy`` matters to JSON Schema only.
        """
        ...
