"""The schema registry: subjects, versions and global ids, kept in the metadata store."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from trunkline.errors import (
    ConfigNotFound,
    IncompatibleSchema,
    InvalidCompatibility,
    InvalidSchema,
    InvalidSubject,
    InvalidVersion,
    ReferenceExists,
    SchemaNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from trunkline.meta import MetaStore
from trunkline.meta._schema import SUBJECT_LENGTH
from trunkline.schemas import _store
from trunkline.schemas._compat import FORMATS, check_compatibility
from trunkline.schemas._format import ParsedSchema, ResolvedReference
from trunkline.schemas._types import (
    Compatibility,
    CompatibilityReport,
    JsonPolicy,
    RegisteredSchema,
    RegistryConfig,
    Schema,
    SchemaId,
    SchemaReference,
    SchemaType,
    SubjectVersion,
)

#: The version number that means "the newest live version" (``latest`` in URLs).
LATEST = -1
_MAX_VERSION = 2**31 - 1
#: References nest at most this deep (they cannot form cycles; this bounds bad data).
_MAX_REFERENCE_DEPTH = 64
DEFAULT_COMPATIBILITY = Compatibility.BACKWARD
DEFAULT_JSON_POLICY = JsonPolicy.STRICT

SchemaInput = Schema | str | Mapping[str, Any] | Sequence[Any]


class SchemaRegistry:
    """Subjects, versions and global schema ids, with Confluent Schema Registry's rules.

    State lives in the metadata store (SQLite or PostgreSQL); every method is one
    transaction, and a failed registration leaves nothing behind. Registering under one
    subject from several processes at once is safe: each registration gets its own version.

    * A schema is identified by its canonical form (Avro: Parsing Canonical Form extended
      with defaults, aliases and logical types; JSON Schema: sorted keys) plus its
      references. The same schema under any subject has one global id.
    * Registering a schema that is already a live version of the subject returns that
      version, without a compatibility check.
    * Versions count up from 1 and continue after soft deletes; a permanent delete (only of
      what was soft-deleted) frees the numbers above the highest remaining version.
    * Compatibility is checked against live versions only.

    Example:
        >>> with MetaStore.open("sqlite://") as store:
        ...     registry = SchemaRegistry(store)
        ...     first = registry.register("orders-value", '{"type": "record", "name": '
        ...         '"Order", "fields": [{"name": "id", "type": "long"}]}')
        ...     again = registry.register("orders-value", {"type": "record", "name": "Order",
        ...         "fields": [{"name": "id", "type": "long"}]})
        ...     (first.version, again.id == first.id)
        (1, True)
    """

    def __init__(self, store: MetaStore) -> None:
        self._store = store

    @property
    def store(self) -> MetaStore:
        return self._store

    def __repr__(self) -> str:
        return f"SchemaRegistry({self._store.url!r})"

    # Registering and looking up ----------------------------------------------------------

    def register(
        self,
        subject: str,
        schema: SchemaInput,
        *,
        schema_type: SchemaType | str | None = None,
        references: Iterable[SchemaReference] = (),
        normalize: bool = False,
    ) -> RegisteredSchema:
        """Register ``schema`` under ``subject``, or return the live version that has it.

        Args:
            subject: the subject, e.g. ``orders-value``.
            schema: a :class:`Schema`, the schema text, or the decoded schema (dict / list).
            schema_type: AVRO (default) or JSON, when ``schema`` is not a :class:`Schema`.
            references: registered versions the schema uses, when it is not a :class:`Schema`.
            normalize: store (and return) the canonical form instead of the text given.

        Raises:
            InvalidSubject: the subject name is empty or too long.
            InvalidSchema: the schema does not parse, or a reference does not exist.
            IncompatibleSchema: it breaks the subject's compatibility level; ``messages``
                lists each problem with its path and rule.
        """
        subject = check_subject(subject)
        wanted = as_schema(schema, schema_type, references)
        with self._store.transaction(write=True) as conn:
            _store.lock_subject(conn, subject)
            loader = _Loader(conn)
            parsed = loader.parse(wanted)
            refs = tuple(r.reference for r in parsed.references)
            digest = _store.fingerprint(parsed.schema_type, parsed.canonical, refs)
            rows = _store.version_rows(conn, subject)
            for row in reversed(rows):
                if not row.deleted and row.fingerprint == digest:
                    return _registered(conn, subject, row)
            level, policy = _effective(conn, subject)
            live = [(row.version, loader.load(row.schema_id)) for row in rows if not row.deleted]
            messages = check_compatibility(parsed, live, level, policy)
            if messages:
                raise IncompatibleSchema(
                    f"schema being registered is incompatible with an earlier schema for "
                    f"subject {subject!r} (compatibility {level}): " + "; ".join(messages),
                    messages=tuple(messages),
                )
            text = parsed.canonical if normalize else wanted.text
            schema_id = _store.insert_schema(
                conn, parsed.schema_type, text, parsed.canonical, digest, refs
            )
            version = max((row.version for row in rows), default=0) + 1
            if version > _MAX_VERSION:
                raise InvalidVersion(f"subject {subject!r} has used every version number")
            _store.insert_version(conn, subject, version, schema_id)
            stored = _store.schema_row(conn, schema_id)
            assert stored is not None
            return RegisteredSchema(
                subject,
                version,
                SchemaId(schema_id),
                Schema(stored.schema_text, parsed.schema_type, refs),
            )

    def lookup(
        self,
        subject: str,
        schema: SchemaInput,
        *,
        schema_type: SchemaType | str | None = None,
        references: Iterable[SchemaReference] = (),
        deleted: bool = False,
    ) -> RegisteredSchema:
        """The version of ``subject`` holding ``schema`` (by canonical form), newest first.

        Raises:
            SubjectNotFound: the subject has no (live, unless ``deleted``) version.
            SchemaNotFound: none of its versions holds this schema.
        """
        subject = check_subject(subject)
        wanted = as_schema(schema, schema_type, references)
        with self._store.transaction() as conn:
            parsed = _Loader(conn).parse(wanted)
            refs = tuple(r.reference for r in parsed.references)
            digest = _store.fingerprint(parsed.schema_type, parsed.canonical, refs)
            rows = _visible(conn, subject, deleted)
            for row in reversed(rows):
                if row.fingerprint == digest:
                    return _registered(conn, subject, row)
            raise SchemaNotFound(f"schema not found under subject {subject!r}")

    def parse(
        self,
        schema: SchemaInput,
        *,
        schema_type: SchemaType | str | None = None,
        references: Iterable[SchemaReference] = (),
    ) -> ParsedSchema:
        """Parse a schema, resolving its references through the registry. Raises InvalidSchema."""
        wanted = as_schema(schema, schema_type, references)
        with self._store.transaction() as conn:
            return _Loader(conn).parse(wanted)

    def parsed(self, schema_id: int) -> ParsedSchema:
        """The registered schema ``schema_id``, parsed with its references. SchemaNotFound."""
        with self._store.transaction() as conn:
            _schema_used(conn, schema_id)
            return _Loader(conn).load(schema_id)

    # Reading -----------------------------------------------------------------------------

    def subjects(self, *, deleted: bool = False, prefix: str = "") -> list[str]:
        """Subjects with a live version (or any version, with ``deleted``), sorted."""
        with self._store.transaction() as conn:
            return [s for s in _store.subjects(conn, deleted=deleted) if s.startswith(prefix)]

    def versions(self, subject: str, *, deleted: bool = False) -> list[int]:
        """The subject's live version numbers (all, with ``deleted``). Raises SubjectNotFound."""
        subject = check_subject(subject)
        with self._store.transaction() as conn:
            return [row.version for row in _visible(conn, subject, deleted)]

    def get_version(
        self, subject: str, version: int | str = LATEST, *, deleted: bool = False
    ) -> RegisteredSchema:
        """One version of a subject; ``latest`` / -1 is the newest live one.

        Raises:
            InvalidVersion: not a number from 1 to 2**31-1, ``latest`` or -1.
            SubjectNotFound / VersionNotFound: as their names say; a soft-deleted version
                is found only with ``deleted=True``.
        """
        subject = check_subject(subject)
        number = parse_version(version)
        with self._store.transaction() as conn:
            return _registered(conn, subject, _version_row(conn, subject, number, deleted))

    def schema(self, schema_id: int) -> Schema:
        """The schema with global id ``schema_id``. Raises SchemaNotFound."""
        with self._store.transaction() as conn:
            row = _schema_used(conn, schema_id)
            refs = _store.references_of(conn, schema_id)
            return Schema(row.schema_text, SchemaType(row.schema_type), refs)

    def schema_versions(self, schema_id: int, *, deleted: bool = False) -> list[SubjectVersion]:
        """Where schema ``schema_id`` is registered. Raises SchemaNotFound."""
        with self._store.transaction() as conn:
            _schema_used(conn, schema_id)
            pairs = _store.usages(conn, schema_id, deleted=deleted)
            return [SubjectVersion(subject, version) for subject, version in pairs]

    def referenced_by(self, subject: str, version: int | str = LATEST) -> list[SchemaId]:
        """Ids of the schemas of live versions that reference this version."""
        subject = check_subject(subject)
        number = parse_version(version)
        with self._store.transaction() as conn:
            row = _version_row(conn, subject, number, deleted=True)
            found = _store.referrers(conn, subject, row.version, deleted=False)
            return sorted({SchemaId(schema_id) for schema_id, _, _ in found})

    # Deleting ----------------------------------------------------------------------------

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Soft-delete every live version, or (``permanent``) remove a soft-deleted subject.

        Returns the versions deleted. A permanent delete also drops the subject's config.

        Raises:
            SubjectNotFound: the subject has no version at all.
            SubjectSoftDeleted: a soft delete of a subject soft-deleted already.
            SubjectNotSoftDeleted: a permanent delete while live versions remain.
            ReferenceExists: another schema references one of the versions.
        """
        subject = check_subject(subject)
        with self._store.transaction(write=True) as conn:
            _store.lock_subject(conn, subject)
            rows = _store.version_rows(conn, subject)
            if not rows:
                raise SubjectNotFound(_subject_missing(conn, subject))
            live = [row.version for row in rows if not row.deleted]
            if not permanent:
                if not live:
                    raise SubjectSoftDeleted(
                        f"subject {subject!r} was soft-deleted already; delete it with "
                        "permanent=true to remove it for good"
                    )
                _refuse_referenced(conn, subject, live, deleted=False)
                _store.mark_deleted(conn, subject, live)
                return live
            if live:
                raise SubjectNotSoftDeleted(
                    f"subject {subject!r} still has live versions "
                    f"{', '.join(map(str, live))}: soft-delete it first (without permanent), "
                    "then delete it permanently"
                )
            every = [row.version for row in rows]
            _refuse_referenced(conn, subject, every, deleted=True)
            _store.remove_versions(conn, subject, every)
            _store.delete_config(conn, subject)
            return every

    def delete_version(self, subject: str, version: int | str, *, permanent: bool = False) -> int:
        """Soft-delete one version, or (``permanent``) remove a soft-deleted one.

        ``latest`` means the newest live version for a soft delete and the newest version
        for a permanent one. Returns the version number.

        Raises:
            SubjectNotFound / VersionNotFound: nothing to delete.
            VersionSoftDeleted / VersionNotSoftDeleted: as for :meth:`delete_subject`.
            ReferenceExists: another schema references the version.
        """
        subject = check_subject(subject)
        number = parse_version(version)
        with self._store.transaction(write=True) as conn:
            _store.lock_subject(conn, subject)
            # "latest" of a soft delete is the newest live version; a number may name a
            # soft-deleted one, which earns its own error.
            row = _version_row(conn, subject, number, deleted=permanent or number != LATEST)
            if not permanent:
                if row.deleted:
                    raise VersionSoftDeleted(
                        f"subject {subject!r} version {row.version} was soft-deleted already; "
                        "delete it with permanent=true to remove it for good"
                    )
                _refuse_referenced(conn, subject, [row.version], deleted=False)
                _store.mark_deleted(conn, subject, [row.version])
                return int(row.version)
            if not row.deleted:
                raise VersionNotSoftDeleted(
                    f"subject {subject!r} version {row.version} is live: soft-delete it "
                    "first (without permanent), then delete it permanently"
                )
            _refuse_referenced(conn, subject, [row.version], deleted=True)
            _store.remove_versions(conn, subject, [row.version])
            return int(row.version)

    # Compatibility -----------------------------------------------------------------------

    def check(
        self,
        subject: str,
        schema: SchemaInput,
        *,
        schema_type: SchemaType | str | None = None,
        references: Iterable[SchemaReference] = (),
        version: int | str | None = None,
    ) -> CompatibilityReport:
        """Would ``schema`` be accepted under ``subject``? Nothing is written.

        Args:
            version: None compares as registration would (the latest live version, or
                every live version for transitive levels); a version number or ``latest``
                compares with that version alone, in the level's direction(s).

        Raises:
            InvalidSchema: the schema does not parse.
            SubjectNotFound / VersionNotFound: only when a version number is given.
        """
        subject = check_subject(subject)
        wanted = as_schema(schema, schema_type, references)
        number = None if version is None else parse_version(version)
        with self._store.transaction() as conn:
            loader = _Loader(conn)
            parsed = loader.parse(wanted)
            level, policy = _effective(conn, subject)
            rows = _store.version_rows(conn, subject)
            if number is None:
                previous = [(r.version, loader.load(r.schema_id)) for r in rows if not r.deleted]
            elif number == LATEST and not any(not r.deleted for r in rows):
                previous = []  # nothing registered yet: anything goes, as Confluent answers
            else:
                row = _version_row(conn, subject, number, deleted=False)
                previous = [(row.version, loader.load(row.schema_id))]
                level = Compatibility(level.value.removesuffix("_TRANSITIVE"))
            messages = check_compatibility(parsed, previous, level, policy)
            return CompatibilityReport(not messages, level, tuple(messages))

    # Configs -----------------------------------------------------------------------------

    def get_config(self, subject: str | None = None, *, fallback: bool = False) -> RegistryConfig:
        """The config set for ``subject`` (None: the global one, defaults filled in).

        Raises:
            ConfigNotFound: the subject has no config of its own and ``fallback`` is false
                (with ``fallback`` the global config is returned instead).
        """
        if subject is not None:
            subject = check_subject(subject)
        with self._store.transaction() as conn:
            row = _store.config_row(conn, subject) if subject is not None else None
            if row is not None:
                return _to_config(row, subject)
            if subject is not None and not fallback:
                raise ConfigNotFound(
                    f"subject {subject!r} has no compatibility level of its own; it follows "
                    "the global one (ask with defaultToGlobal=true to see it)"
                )
            return _global_config(conn)

    def effective(self, subject: str) -> tuple[Compatibility, JsonPolicy]:
        """The compatibility level and JSON policy that apply to ``subject`` now."""
        subject = check_subject(subject)
        with self._store.transaction() as conn:
            return _effective(conn, subject)

    def set_config(
        self,
        subject: str | None = None,
        *,
        compatibility: Compatibility | str | None = None,
        json_policy: JsonPolicy | str | None = None,
    ) -> RegistryConfig:
        """Set the compatibility level and/or JSON policy of ``subject`` (None: global).

        The subject need not have versions yet. Raises InvalidCompatibility.
        """
        if subject is not None:
            subject = check_subject(subject)
        values: dict[str, Any] = {}
        if compatibility is not None:
            values["compatibility"] = Compatibility.parse(compatibility).value
        if json_policy is not None:
            values["json_policy"] = JsonPolicy.parse(json_policy).value
        if not values:
            raise InvalidCompatibility(
                "nothing to set: give a compatibility level (and/or a JSON policy)"
            )
        with self._store.transaction(write=True) as conn:
            _store.put_config(conn, subject, values)
            row = _store.config_row(conn, subject)
            assert row is not None
            return _to_config(row, subject)

    def delete_config(self, subject: str | None = None) -> RegistryConfig:
        """Drop ``subject``'s own config (None: reset the global one); returns what it was.

        Raises:
            ConfigNotFound: the subject had no config of its own.
        """
        if subject is not None:
            subject = check_subject(subject)
        with self._store.transaction(write=True) as conn:
            if subject is None:
                before = _global_config(conn)
            else:
                row = _store.config_row(conn, subject)
                if row is None:
                    raise ConfigNotFound(f"subject {subject!r} has no config of its own")
                before = _to_config(row, subject)
            _store.delete_config(conn, subject)
            return before


# Input checks ------------------------------------------------------------------------------


def check_subject(subject: str) -> str:
    """A valid subject name, or InvalidSubject."""
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidSubject(f"invalid subject {subject!r}: expected a non-empty name")
    if len(subject) > SUBJECT_LENGTH:
        raise InvalidSubject(
            f"invalid subject: {len(subject)} characters, at most {SUBJECT_LENGTH} allowed"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in subject):
        raise InvalidSubject(f"invalid subject {subject!r}: control characters are not allowed")
    return subject


def parse_version(version: int | str) -> int:
    """A version number, or :data:`LATEST` for ``latest`` / -1. Raises InvalidVersion (42202)."""
    value: int | None = None
    if isinstance(version, bool):
        value = None
    elif isinstance(version, int):
        value = version
    elif isinstance(version, str):
        text = version.strip()
        if text.lower() == "latest":
            return LATEST
        if text.lstrip("-").isdigit() and len(text) <= 11:
            value = int(text)
    if value == LATEST:
        return LATEST
    if value is None or not 1 <= value <= _MAX_VERSION:
        raise InvalidVersion(
            f"invalid version {version!r}: expected a version number from 1 to {_MAX_VERSION}, "
            "'latest' or -1"
        )
    return value


def as_schema(
    schema: SchemaInput,
    schema_type: SchemaType | str | None = None,
    references: Iterable[SchemaReference] = (),
) -> Schema:
    """A :class:`Schema` from a Schema, a schema text or a decoded schema."""
    if isinstance(schema, Schema):
        return schema
    if not isinstance(schema, str):
        schema = json.dumps(schema)
    refs = tuple(references)
    for ref in refs:
        if not isinstance(ref, SchemaReference):
            raise InvalidSchema(f"expected SchemaReference objects, found {ref!r}")
    return Schema(schema, SchemaType.parse(schema_type), refs)


# Inside a transaction ----------------------------------------------------------------------


class _Loader:
    """Parses schemas with their references inside one transaction, each stored one once."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.cache: dict[int, ParsedSchema] = {}

    def parse(self, schema: Schema, depth: int = 0) -> ParsedSchema:
        resolved = [self._resolve(ref, depth) for ref in schema.references]
        return FORMATS[schema.schema_type].parse(schema.text, resolved)

    def load(self, schema_id: int, depth: int = 0) -> ParsedSchema:
        cached = self.cache.get(schema_id)
        if cached is not None:
            return cached
        row = _store.schema_row(self.conn, schema_id)
        if row is None:
            raise SchemaNotFound(f"schema id {schema_id} not found")
        refs = _store.references_of(self.conn, schema_id)
        stored = Schema(row.schema_text, SchemaType(row.schema_type), refs)
        parsed = self.parse(stored, depth)
        self.cache[schema_id] = parsed
        return parsed

    def _resolve(self, ref: SchemaReference, depth: int) -> ResolvedReference:
        if depth >= _MAX_REFERENCE_DEPTH:
            raise InvalidSchema(f"references nest deeper than {_MAX_REFERENCE_DEPTH} levels")
        if not ref.name:
            raise InvalidSchema(f"reference to {ref.subject!r} has an empty name")
        rows = [r for r in _store.version_rows(self.conn, ref.subject) if not r.deleted]
        if ref.version == LATEST:
            row = rows[-1] if rows else None
        else:
            row = next((r for r in rows if r.version == ref.version), None)
        if row is None:
            shown = "latest" if ref.version == LATEST else str(ref.version)
            raise InvalidSchema(
                f"reference {ref.name!r} names subject {ref.subject!r} version {shown}, "
                "which is not registered (or is deleted)"
            )
        concrete = SchemaReference(ref.name, ref.subject, int(row.version))
        return ResolvedReference(concrete, self.load(row.schema_id, depth + 1))


def _registered(conn: sa.Connection, subject: str, row: sa.Row[Any]) -> RegisteredSchema:
    refs = _store.references_of(conn, row.schema_id)
    return RegisteredSchema(
        subject,
        int(row.version),
        SchemaId(int(row.schema_id)),
        Schema(row.schema_text, SchemaType(row.schema_type), refs),
        deleted=bool(row.deleted),
    )


def _visible(conn: sa.Connection, subject: str, deleted: bool) -> list[sa.Row[Any]]:
    rows = [r for r in _store.version_rows(conn, subject) if deleted or not r.deleted]
    if not rows:
        raise SubjectNotFound(_subject_missing(conn, subject))
    return rows


def _version_row(conn: sa.Connection, subject: str, number: int, deleted: bool) -> sa.Row[Any]:
    rows = _visible(conn, subject, deleted)
    if number == LATEST:
        return rows[-1]
    for row in rows:
        if row.version == number:
            return row
    hidden = any(r.version == number for r in _store.version_rows(conn, subject))
    hint = " (it was soft-deleted; ask with deleted=true to see it)" if hidden else ""
    known = ", ".join(str(r.version) for r in rows)
    raise VersionNotFound(
        f"subject {subject!r} has no version {number}{hint}; its versions: {known}"
    )


def _subject_missing(conn: sa.Connection, subject: str) -> str:
    known = _store.subjects(conn, deleted=False)
    close = difflib.get_close_matches(subject, known, n=3, cutoff=0.6)
    hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
    return f"subject {subject!r} not found{hint}"


def _schema_used(conn: sa.Connection, schema_id: int) -> sa.Row[Any]:
    row = _store.schema_row(conn, schema_id)
    if row is None or not _store.usages(conn, schema_id, deleted=True):
        raise SchemaNotFound(f"schema id {schema_id} not found")
    return row


def _refuse_referenced(
    conn: sa.Connection, subject: str, versions: Sequence[int], *, deleted: bool
) -> None:
    for version in versions:
        users = [
            (s, v)
            for _, s, v in _store.referrers(conn, subject, version, deleted=deleted)
            if s != subject or v not in versions
        ]
        if users:
            shown = ", ".join(f"{s!r} version {v}" for s, v in users)
            raise ReferenceExists(
                f"subject {subject!r} version {version} is referenced by {shown}; delete "
                "those first"
            )


def _to_config(row: sa.Row[Any], subject: str | None) -> RegistryConfig:
    return RegistryConfig(
        subject=subject,
        compatibility=None if row.compatibility is None else Compatibility(row.compatibility),
        json_policy=None if row.json_policy is None else JsonPolicy(row.json_policy),
    )


def _global_config(conn: sa.Connection) -> RegistryConfig:
    row = _store.config_row(conn, None)
    stored = _to_config(row, None) if row is not None else RegistryConfig()
    return RegistryConfig(
        subject=None,
        compatibility=stored.compatibility or DEFAULT_COMPATIBILITY,
        json_policy=stored.json_policy or DEFAULT_JSON_POLICY,
    )


def _effective(conn: sa.Connection, subject: str) -> tuple[Compatibility, JsonPolicy]:
    glob = _global_config(conn)
    row = _store.config_row(conn, subject)
    own = _to_config(row, subject) if row is not None else RegistryConfig(subject)
    level = own.compatibility or glob.compatibility or DEFAULT_COMPATIBILITY
    policy = own.json_policy or glob.json_policy or DEFAULT_JSON_POLICY
    return level, policy
