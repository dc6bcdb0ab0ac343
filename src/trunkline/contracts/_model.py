"""What a data contract file may contain: the Open Data Contract Standard v3, strictly.

Keys are ODCS's own (camelCase), so a contract written for other ODCS tools loads here, and
an unknown key is an error with a "did you mean". Parts of the standard that trunkline does
not act on (servers, pricing, roles, support channels) are accepted as written and kept.

trunkline reads: the fundamentals (``id``, ``version``, ``status``, ``team``), one schema
object with its properties (``logicalType``, ``required``, ``unique``, ``primaryKey``,
``classification``, ``logicalTypeOptions``, ``enum``), ``quality`` rules at both levels,
the ``retention`` and ``latency`` (freshness) SLA properties, and the ``onViolation``
custom property.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from trunkline.config import ConfigModel
from trunkline.config._problems import invalid

__all__ = [
    "LOGICAL_TYPES",
    "Contract",
    "ContractDescription",
    "CustomProperty",
    "EnumValue",
    "Items",
    "LogicalTypeOptions",
    "Property",
    "QualityRule",
    "SchemaObject",
    "SlaProperty",
    "Team",
    "TeamMember",
]

LogicalType = Literal[
    "string", "date", "timestamp", "time", "number", "integer", "boolean", "object", "array"
]
LOGICAL_TYPES: tuple[str, ...] = LogicalType.__args__  # type: ignore[attr-defined]

_API_VERSION = re.compile(r"v3\.\d+\.\d+")
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
)


def _check_api_version(value: Any) -> Any:
    if not isinstance(value, str) or not _API_VERSION.fullmatch(value):
        raise invalid("an ODCS v3 version such as 'v3.0.2'")
    return value


def _check_semver(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # `version: 1.0` reads as a number
    if not isinstance(value, str) or not _SEMVER.fullmatch(value):
        raise invalid("a semantic version such as '1.2.0'")
    return value


def _non_empty(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise invalid("a non-empty string")
    return value


NonEmpty = Annotated[str, BeforeValidator(_non_empty)]
Opaque = tuple[dict[str, Any], ...]


class CustomProperty(ConfigModel):
    """A key/value pair outside the standard (ODCS ``customProperties``)."""

    property: str = Field(description="The property's name.")
    value: Any = Field(None, description="Its value.")
    description: str | None = Field(None, description="What it means, for people.")
    id: str | None = Field(None, description="An id to refer to this entry.")


class AuthoritativeDefinition(ConfigModel):
    """A link to where something is defined (ODCS ``authoritativeDefinitions``)."""

    url: str = Field(description="Where the definition is.")
    type: str = Field(description="What kind of definition: businessDefinition, ...")
    description: str | None = Field(None, description="What the link holds.")
    id: str | None = Field(None, description="An id to refer to this entry.")


class LogicalTypeOptions(ConfigModel):
    """Constraints on a property's values, by logical type (ODCS ``logicalTypeOptions``).

    trunkline enforces the range (``minimum``, ``maximum`` and their exclusive forms, on
    numbers, dates and timestamps), the length (``minLength``, ``maxLength``) and the
    ``pattern`` of strings at produce; the others are documentation.
    """

    minimum: int | float | str | None = Field(None, description="Smallest value allowed.")
    maximum: int | float | str | None = Field(None, description="Largest value allowed.")
    exclusive_minimum: int | float | str | None = Field(
        None, alias="exclusiveMinimum", description="Values must be greater than this."
    )
    exclusive_maximum: int | float | str | None = Field(
        None, alias="exclusiveMaximum", description="Values must be less than this."
    )
    multiple_of: float | None = Field(
        None, alias="multipleOf", description="Values must be multiples of this."
    )
    min_length: int | None = Field(None, alias="minLength", ge=0, description="Shortest string.")
    max_length: int | None = Field(None, alias="maxLength", ge=0, description="Longest string.")
    pattern: str | None = Field(
        None,
        description="A regular expression strings must match somewhere (RE2 syntax, as JSON "
        "Schema's 'pattern': anchor it with ^...$ to match the whole value).",
    )
    format: str | None = Field(None, description="Format of the value (email, uuid, ...).")
    timezone: bool | None = Field(None, description="Whether timestamps carry a time zone.")
    default_timezone: str | None = Field(
        None, alias="defaultTimezone", description="Time zone of timestamps without one."
    )
    min_items: int | None = Field(None, alias="minItems", ge=0, description="Fewest items.")
    max_items: int | None = Field(None, alias="maxItems", ge=0, description="Most items.")
    unique_items: bool | None = Field(None, alias="uniqueItems", description="Items unique.")
    min_properties: int | None = Field(
        None, alias="minProperties", ge=0, description="Fewest properties of an object."
    )
    max_properties: int | None = Field(
        None, alias="maxProperties", ge=0, description="Most properties of an object."
    )
    required: tuple[str, ...] = Field((), description="Properties an object must have.")


#: The ODCS operators that compare a rule's metric; trunkline's metrics count failing records.
OPERATORS = (
    "mustBe",
    "mustBeLessThan",
    "mustBeLessOrEqualTo",
    "mustNotBe",
    "mustBeGreaterThan",
    "mustBeGreaterOrEqualTo",
    "mustBeBetween",
    "mustNotBeBetween",
)


class QualityRule(ConfigModel):
    """A data quality rule (ODCS ``quality``), on a property or on the whole object.

    Evaluated by trunkline (at produce, and by ``trunkline contract check``):

    * ``metric: nullValues`` - the property is not null;
    * ``metric: missingValues`` - the property is none of ``arguments.missingValues``;
    * ``metric: invalidValues`` - the property is one of ``arguments.validValues`` and/or
      matches ``arguments.pattern`` and/or lies within ``arguments.minimum`` ... ``maximum``;
    * ``metric: duplicateValues`` - the property (or, on the object, the combination of
      ``arguments.properties``) is unique within a produced batch;
    * ``type: sql`` - ``query`` is a row-level SQL condition (DuckDB) every record must meet,
      such as ``amount >= 0 or status = 'refunded'``; NULL counts as met, as in a CHECK.

    The metric counts failing records; ``mustBe: 0`` (the default) allows none,
    ``mustBeLessThan`` / ``mustBeLessOrEqualTo`` tolerate some per batch (``unit: rows`` or
    ``percent``). ``type: text`` and ``type: custom`` rules are documentation.
    """

    type: Literal["library", "sql", "text", "custom"] = Field(
        "library",
        description="library (a metric), sql (a row-level condition), text or custom "
        "(documentation only).",
    )
    metric: str | None = Field(
        None,
        description="For library rules: nullValues, missingValues, invalidValues or "
        "duplicateValues.",
    )
    rule: str | None = Field(None, description="Deprecated name of 'metric' (ODCS v3.0).")
    name: str | None = Field(None, description="A short name, used in reports and headers.")
    id: str | None = Field(None, description="An id to refer to this rule.")
    description: str | None = Field(None, description="What the rule checks, for people.")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="The metric's arguments (see the rule types)."
    )
    query: str | None = Field(None, description="For sql rules: the condition.")
    engine: str | None = Field(None, description="For custom rules: the third-party engine.")
    implementation: Any = Field(None, description="For custom rules: the engine's rule.")
    dimension: str | None = Field(None, description="Quality dimension (accuracy, ...).")
    severity: str | None = Field(None, description="How bad a failure is.")
    business_impact: str | None = Field(
        None, alias="businessImpact", description="What a failure costs."
    )
    method: str | None = Field(None, description="How the rule is checked.")
    unit: Literal["rows", "percent"] = Field(
        "rows", description="What the operator's number counts: rows or percent of a batch."
    )
    must_be: float | None = Field(None, alias="mustBe", description="Failing count must be.")
    must_be_less_than: float | None = Field(
        None, alias="mustBeLessThan", description="Failing count must be less than."
    )
    must_be_less_or_equal_to: float | None = Field(
        None, alias="mustBeLessOrEqualTo", description="Failing count must be at most."
    )
    must_not_be: float | None = Field(None, alias="mustNotBe", description="Not enforced.")
    must_be_greater_than: float | None = Field(
        None, alias="mustBeGreaterThan", description="Not enforced."
    )
    must_be_greater_or_equal_to: float | None = Field(
        None, alias="mustBeGreaterOrEqualTo", description="Not enforced."
    )
    must_be_between: tuple[float, float] | None = Field(
        None, alias="mustBeBetween", description="Not enforced."
    )
    must_not_be_between: tuple[float, float] | None = Field(
        None, alias="mustNotBeBetween", description="Not enforced."
    )
    scheduler: str | None = Field(None, description="Scheduler of batch checks.")
    schedule: str | None = Field(None, description="Schedule of batch checks.")
    tags: tuple[str, ...] = Field((), description="Labels.")
    authoritative_definitions: tuple[AuthoritativeDefinition, ...] = Field(
        (), alias="authoritativeDefinitions", description="Links to definitions."
    )
    custom_properties: tuple[CustomProperty, ...] = Field(
        (), alias="customProperties", description="Properties outside the standard."
    )

    @property
    def metric_name(self) -> str | None:
        return self.metric or self.rule

    @property
    def enforced(self) -> bool:
        """Whether trunkline evaluates this rule (text and custom rules are documentation)."""
        return self.type in ("library", "sql")


class EnumValue(ConfigModel):
    """One allowed value of a property (ODCS v3.2 ``enum``)."""

    value: str | int | float | bool = Field(description="The allowed value.")
    label: str | None = Field(None, description="How people see it.")
    id: str | None = Field(None, description="An id to refer to this value.")
    description: str | None = Field(None, description="What it means.")
    tags: tuple[str, ...] = Field((), description="Labels.")


class _Element(ConfigModel):
    """What properties and array items share."""

    logical_type: LogicalType | None = Field(
        None,
        alias="logicalType",
        description="string, date, timestamp, time, number, integer, boolean, object or "
        "array; records are checked against it. Omit to accept any JSON value.",
    )
    physical_type: str | None = Field(
        None, alias="physicalType", description="The type in the data source (documentation)."
    )
    physical_name: str | None = Field(None, alias="physicalName", description="Physical name.")
    business_name: str | None = Field(None, alias="businessName", description="Business name.")
    description: str | None = Field(None, description="What the value means, for people.")
    id: str | None = Field(None, description="An id to refer to this element.")
    logical_type_options: LogicalTypeOptions | None = Field(
        None, alias="logicalTypeOptions", description="Constraints by logical type."
    )
    properties: tuple[Property, ...] = Field(
        (), description="Nested properties of an object (kept in the registered schema)."
    )
    items: Items | None = Field(None, description="What an array holds.")
    tags: tuple[str, ...] = Field((), description="Labels.")
    examples: tuple[Any, ...] = Field((), description="Sample values.")
    authoritative_definitions: tuple[AuthoritativeDefinition, ...] = Field(
        (), alias="authoritativeDefinitions", description="Links to definitions."
    )
    custom_properties: tuple[CustomProperty, ...] = Field(
        (), alias="customProperties", description="Properties outside the standard."
    )
    deprecated: bool = Field(False, description="Whether new producers should stop using it.")


class Property(_Element):
    """A field of the records (ODCS schema property)."""

    name: NonEmpty = Field(description="The field's name in the JSON value.")
    required: bool = Field(False, description="The field must be present and not null.")
    unique: bool = Field(False, description="No two records of a produced batch share a value.")
    primary_key: bool = Field(
        False, alias="primaryKey", description="Part of the key: implies required and unique."
    )
    primary_key_position: int | None = Field(
        None, alias="primaryKeyPosition", description="Position in a composite key."
    )
    classification: str | None = Field(
        None,
        description="Sensitivity, such as public, internal, confidential or pii; values of "
        "pii fields never appear in error messages.",
    )
    critical_data_element: bool = Field(
        False, alias="criticalDataElement", description="A critical data element."
    )
    partitioned: bool = Field(False, description="Whether the data is partitioned by it.")
    partition_key_position: int | None = Field(
        None, alias="partitionKeyPosition", description="Position among partition keys."
    )
    encrypted_name: str | None = Field(
        None, alias="encryptedName", description="The field holding its encrypted value."
    )
    transform_source_objects: tuple[str, ...] = Field(
        (), alias="transformSourceObjects", description="Where it is computed from."
    )
    transform_logic: str | None = Field(
        None, alias="transformLogic", description="How it is computed."
    )
    transform_description: str | None = Field(
        None, alias="transformDescription", description="How it is computed, for people."
    )
    enum: tuple[EnumValue, ...] = Field(
        (), description="The values allowed (ODCS v3.2); enforced like invalidValues."
    )
    quality: tuple[QualityRule, ...] = Field((), description="Rules on this field.")

    @property
    def pii(self) -> bool:
        return (self.classification or "").strip().lower() == "pii"

    @property
    def not_null(self) -> bool:
        return self.required or self.primary_key


class Items(_Element):
    """What an array property holds (a property without a name)."""

    name: str | None = Field(None, description="Unused for items.")


class SchemaObject(ConfigModel):
    """The records of a topic (ODCS schema object): their properties and object-level rules."""

    name: NonEmpty = Field(description="The object's name, usually the topic's.")
    logical_type: Literal["object"] = Field(
        "object", alias="logicalType", description="Always 'object' for a topic's records."
    )
    physical_type: str | None = Field(
        None, alias="physicalType", description="table, view, topic, file..."
    )
    physical_name: str | None = Field(None, alias="physicalName", description="Physical name.")
    business_name: str | None = Field(None, alias="businessName", description="Business name.")
    description: str | None = Field(None, description="What a record is, for people.")
    id: str | None = Field(None, description="An id to refer to this object.")
    data_granularity_description: str | None = Field(
        None, alias="dataGranularityDescription", description="What one record stands for."
    )
    properties: tuple[Property, ...] = Field(description="The fields of a record.")
    quality: tuple[QualityRule, ...] = Field((), description="Rules on whole records.")
    tags: tuple[str, ...] = Field((), description="Labels.")
    authoritative_definitions: tuple[AuthoritativeDefinition, ...] = Field(
        (), alias="authoritativeDefinitions", description="Links to definitions."
    )
    custom_properties: tuple[CustomProperty, ...] = Field(
        (), alias="customProperties", description="Properties outside the standard."
    )

    def field(self, name: str) -> Property | None:
        return next((p for p in self.properties if p.name == name), None)


class SlaProperty(ConfigModel):
    """A service-level property (ODCS ``slaProperties``).

    trunkline reads ``retention`` (compared with the topic's retention) and ``latency``
    (synonym ``freshness``): with an ``element`` naming a timestamp property, a record whose
    event time is older than this when it reaches the hub breaks the contract.
    """

    property: NonEmpty = Field(description="retention, latency, frequency, availability, ...")
    value: Any = Field(description="The agreed value: a number with 'unit', or '7d'.")
    value_ext: Any = Field(None, alias="valueExt", description="Extended value.")
    unit: str | None = Field(None, description="d, h, m, s, ms, w, y (and their long forms).")
    element: str | None = Field(
        None, description="The property it applies to: 'object.property' or 'property'."
    )
    driver: str | None = Field(None, description="regulatory, analytics or operational.")
    description: str | None = Field(None, description="What it means, for people.")
    id: str | None = Field(None, description="An id to refer to this entry.")
    scheduler: str | None = Field(None, description="Scheduler of the check.")
    schedule: str | None = Field(None, description="Schedule of the check.")


class TeamMember(ConfigModel):
    """Someone answering for the contract; ``role: owner`` makes them its owner."""

    username: NonEmpty = Field(description="Username or email.")
    name: str | None = Field(None, description="Full name.")
    description: str | None = Field(None, description="About them.")
    role: str | None = Field(None, description="owner, data steward, ...")
    date_in: str | None = Field(None, alias="dateIn", description="When they joined.")
    date_out: str | None = Field(None, alias="dateOut", description="When they left.")
    replaced_by_username: str | None = Field(
        None, alias="replacedByUsername", description="Who replaced them."
    )
    id: str | None = Field(None, description="An id to refer to this member.")
    tags: tuple[str, ...] = Field((), description="Labels.")
    custom_properties: tuple[CustomProperty, ...] = Field(
        (), alias="customProperties", description="Properties outside the standard."
    )
    authoritative_definitions: tuple[AuthoritativeDefinition, ...] = Field(
        (), alias="authoritativeDefinitions", description="Links to definitions."
    )


def _team_shape(value: Any) -> Any:
    # ODCS v3.0 writes the team as a list of members; v3.1 as {name, members}.
    if isinstance(value, list):
        return {"members": value}
    return value


class Team(ConfigModel):
    """Who answers for the contract (ODCS ``team``, either shape)."""

    name: str | None = Field(None, description="The team's name.")
    description: str | None = Field(None, description="About the team.")
    members: tuple[TeamMember, ...] = Field((), description="Its members.")
    tags: tuple[str, ...] = Field((), description="Labels.")
    custom_properties: tuple[CustomProperty, ...] = Field(
        (), alias="customProperties", description="Properties outside the standard."
    )
    authoritative_definitions: tuple[AuthoritativeDefinition, ...] = Field(
        (), alias="authoritativeDefinitions", description="Links to definitions."
    )


def _description_shape(value: Any) -> Any:
    if isinstance(value, str):
        return {"purpose": value}
    return value


class ContractDescription(ConfigModel):
    """What the data is for (ODCS ``description``); a plain string is its purpose."""

    purpose: str | None = Field(None, description="Intended purpose of the data.")
    limitations: str | None = Field(None, description="Technical, compliance, legal limits.")
    usage: str | None = Field(None, description="Recommended usage.")
    authoritative_definitions: tuple[AuthoritativeDefinition, ...] = Field(
        (), alias="authoritativeDefinitions", description="Links to definitions."
    )
    custom_properties: tuple[CustomProperty, ...] = Field(
        (), alias="customProperties", description="Properties outside the standard."
    )


class Contract(ConfigModel):
    """A data contract (ODCS v3): who owns a topic's data, its shape, quality and SLAs.

    Load one with :func:`trunkline.contracts.load_contract`, which reports problems with
    file, line and column.
    """

    api_version: Annotated[str, BeforeValidator(_check_api_version)] = Field(
        alias="apiVersion", description="The ODCS version the file follows: v3.0.x or v3.1.x."
    )
    kind: Literal["DataContract"] = Field(description="Always 'DataContract'.")
    id: NonEmpty = Field(description="The contract's unique id (a UUID or a stable name).")
    name: str | None = Field(None, description="The contract's name.")
    version: Annotated[str, BeforeValidator(_check_semver)] = Field(
        description="The contract's own version (semver); `contract diff` says which bump a "
        "change needs."
    )
    status: NonEmpty = Field(description="proposed, draft, active, deprecated or retired.")
    tenant: str | None = Field(None, description="Who the data belongs to.")
    domain: str | None = Field(None, description="The data domain.")
    data_product: str | None = Field(None, alias="dataProduct", description="The data product.")
    description: Annotated[ContractDescription | None, BeforeValidator(_description_shape)] = Field(
        None, description="Purpose, limitations and usage of the data."
    )
    tags: tuple[str, ...] = Field((), description="Labels.")
    team: Annotated[Team | None, BeforeValidator(_team_shape)] = Field(
        None, description="Who answers for the data; a member with role 'owner' owns it."
    )
    objects: tuple[SchemaObject, ...] = Field(
        alias="schema", description="The records' schema: one object for a topic."
    )
    sla_default_element: str | None = Field(
        None, alias="slaDefaultElement", description="Deprecated default SLA element."
    )
    sla_properties: tuple[SlaProperty, ...] = Field(
        (), alias="slaProperties", description="Retention, latency (freshness) and others."
    )
    roles: Opaque = Field((), description="Access roles (kept, not acted on).")
    servers: Opaque = Field((), description="Where the data is served (kept, not acted on).")
    support: Opaque = Field((), description="Support channels (kept, not acted on).")
    price: dict[str, Any] | None = Field(None, description="Pricing (kept, not acted on).")
    authoritative_definitions: tuple[AuthoritativeDefinition, ...] = Field(
        (), alias="authoritativeDefinitions", description="Links to definitions."
    )
    custom_properties: tuple[CustomProperty, ...] = Field(
        (),
        alias="customProperties",
        description="Properties outside the standard; trunkline reads 'onViolation' "
        "(reject or dead_letter).",
    )
    contract_created_ts: str | None = Field(
        None, alias="contractCreatedTs", description="When the contract was created."
    )

    @model_validator(mode="after")
    def _one_object(self) -> Contract:
        if not self.objects:
            raise invalid(message="the contract's 'schema' has no object; a topic needs one")
        return self

    @property
    def object(self) -> SchemaObject:
        """The schema object describing the records (the first; lint warns about others)."""
        return self.objects[0]

    @property
    def owner(self) -> str | None:
        """The member with role owner, else the team's name."""
        if self.team is None:
            return None
        for member in self.team.members:
            if (member.role or "").strip().lower() == "owner" and not member.date_out:
                return member.username
        return self.team.name

    def custom(self, name: str) -> Any:
        """The value of custom property ``name`` (None when absent)."""
        found = next((c for c in self.custom_properties if c.property == name), None)
        return None if found is None else found.value

    @property
    def label(self) -> str:
        """``id`` and version, for messages and headers: ``shop-orders@1.2.0``."""
        return f"{self.id}@{self.version}"


_Element.model_rebuild()
Property.model_rebuild()
Items.model_rebuild()
