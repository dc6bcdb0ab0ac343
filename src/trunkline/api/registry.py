"""The schema registry's HTTP routes: Confluent Schema Registry's REST API, at its paths.

Paths, JSON bodies, status codes and ``{"error_code": ..., "message": ...}`` errors follow
Confluent's, so its clients (``SchemaRegistryClient``, the Avro and JSON Schema serdes, the
Java client, kcat, UIs) work unchanged. Differences, all deliberate:

* ``/mode`` answers READWRITE and accepts only READWRITE (42204 otherwise): there is no
  import mode nor read-only replica.
* ``metadata`` and ``ruleSet`` (Confluent's data-contract fields) are refused with 42201
  rather than silently dropped; trunkline's contracts live in ``trunkline.contracts``.
* ``/config`` also takes ``jsonCompatibilityPolicy`` (STRICT or LENIENT), a trunkline
  extension that other clients ignore.
* Contexts (``:.ctx:subject``), ``/schemas?...`` listing, exporters and tags are absent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from trunkline.errors import InvalidMode, InvalidSchema, SchemaNotFound
from trunkline.schemas import (
    Compatibility,
    JsonPolicy,
    RegisteredSchema,
    RegistryConfig,
    Schema,
    SchemaReference,
    SchemaRegistry,
    SchemaType,
)
from trunkline.schemas.registry import parse_version

#: Media types request bodies may have (Confluent's list) and the one responses default to.
REGISTRY_MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_MEDIA_TYPES = frozenset(
    {
        REGISTRY_MEDIA_TYPE,
        "application/vnd.schemaregistry+json",
        "application/json",
        "application/octet-stream",
    }
)
#: Largest request body accepted unless configured otherwise (Confluent has no such limit;
#: a schema is rarely more than a few KiB).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class HttpProblem(Exception):
    """An HTTP-level refusal (oversized or invalid body, unsupported media type).

    Internal to the HTTP layer (never raised by the library), hence not in ``errors.py``.
    """

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


def respond(request: Request, data: Any, status: int = 200) -> Response:
    """JSON in the registry's media type, or plain application/json if that is all asked for."""
    accept = request.headers.get("accept", "")
    wants_plain = "application/json" in accept and "schemaregistry" not in accept
    media = "application/json" if wants_plain else REGISTRY_MEDIA_TYPE
    return JSONResponse(data, status_code=status, media_type=media)


def _flag(value: str | None) -> bool:
    # Confluent's Python client sends Python's str(bool): "True" / "False".
    return value is not None and value.strip().lower() in {"true", "1", "yes"}


def body_reader(limit: int) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that reads and decodes a JSON body of at most ``limit`` bytes."""

    async def read_json(request: Request) -> Any:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media and media not in ACCEPTED_MEDIA_TYPES:
            raise HttpProblem(
                415,
                415,
                f"unsupported content type {media!r}: send {REGISTRY_MEDIA_TYPE} or "
                "application/json",
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HttpProblem(
                413, 413, f"request body of {int(declared)} bytes exceeds the {limit}-byte limit"
            )
        size = 0
        chunks = []
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpProblem(
                    413, 413, f"request body exceeds the {limit}-byte limit (read {size} bytes)"
                )
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            raise HttpProblem(422, 422, "the request body is empty: expected a JSON object")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HttpProblem(
                422,
                422,
                f"invalid JSON in the request body: {exc.msg} at line {exc.lineno} column "
                f"{exc.colno}",
            ) from None
        except UnicodeDecodeError:
            raise HttpProblem(422, 422, "the request body is not UTF-8 encoded JSON") from None

    return read_json


def schema_from_body(data: Any) -> Schema:
    """The schema of a register / lookup / compatibility request body."""
    if not isinstance(data, dict):
        raise HttpProblem(
            422, 422, f"expected a JSON object with a 'schema' field, found {type(data).__name__}"
        )
    text = data.get("schema")
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchema("the request has no schema: expected 'schema' holding the schema text")
    for field in ("metadata", "ruleSet"):
        if data.get(field):
            raise InvalidSchema(
                f"{field!r} is not supported by trunkline's registry; send the schema without it"
            )
    raw_refs = data.get("references") or []
    if not isinstance(raw_refs, list):
        raise InvalidSchema("'references' must be a list of {name, subject, version}")
    refs = []
    for i, ref in enumerate(raw_refs):
        ok = isinstance(ref, dict) and isinstance(ref.get("name"), str)
        ok = ok and isinstance(ref.get("subject"), str)
        version = ref.get("version") if isinstance(ref, dict) else None
        if not ok or not isinstance(version, int) or isinstance(version, bool):
            raise InvalidSchema(
                f"reference {i}: expected {{'name': str, 'subject': str, 'version': int}}, "
                f"found {ref!r}"
            )
        refs.append(SchemaReference(ref["name"], ref["subject"], version))
    return Schema(text, SchemaType.parse(data.get("schemaType")), tuple(refs))


def _schema_fields(schema: Schema) -> dict[str, Any]:
    # Confluent leaves schemaType out for Avro, and references out when there are none.
    fields: dict[str, Any] = {}
    if schema.schema_type is not SchemaType.AVRO:
        fields["schemaType"] = schema.schema_type.value
    if schema.references:
        fields["references"] = [ref.to_dict() for ref in schema.references]
    return fields


def _version_body(found: RegisteredSchema) -> dict[str, Any]:
    return {
        "subject": found.subject,
        "version": found.version,
        "id": found.id,
        **_schema_fields(found.schema),
        "schema": found.text,
    }


def _config_body(config: RegistryConfig, key: str = "compatibilityLevel") -> dict[str, Any]:
    body: dict[str, Any] = {}
    if config.compatibility is not None:
        body[key] = config.compatibility.value
    if config.json_policy is not None:
        body["jsonCompatibilityPolicy"] = config.json_policy.value
    return body


def _config_change(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise HttpProblem(422, 422, 'expected a JSON object such as {"compatibility": "FULL"}')
    level = data.get("compatibility", data.get("compatibilityLevel"))
    policy = data.get("jsonCompatibilityPolicy")
    return {
        "compatibility": None if level is None else Compatibility.parse(str(level)),
        "json_policy": None if policy is None else JsonPolicy.parse(str(policy)),
    }


def _schema_id(value: str) -> int:
    if not value.isdigit() or len(value) > 10:
        raise SchemaNotFound(f"schema id {value!r} not found")
    return int(value)


def _raw_schema(schema: Schema) -> Response:
    # The schema text itself is the body; it is JSON for both Avro and JSON Schema.
    return Response(schema.text, media_type=REGISTRY_MEDIA_TYPE)


def registry_router(
    registry: SchemaRegistry, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> APIRouter:
    """The registry's routes at Confluent's root paths (``/subjects``, ``/schemas``...)."""
    router = APIRouter(tags=["schema registry"])
    body = Depends(body_reader(max_body_bytes))

    @router.get("/")
    def root(request: Request) -> Response:
        return respond(request, {})

    @router.get("/schemas/types")
    def schema_types(request: Request) -> Response:
        return respond(request, [t.value for t in SchemaType])

    # Subjects ---------------------------------------------------------------------------

    @router.get("/subjects")
    def list_subjects(
        request: Request,
        deleted: str | None = None,
        deleted_only: str | None = None,
        subjectPrefix: str = "",  # Confluent's parameter name
    ) -> Response:
        found = registry.subjects(
            deleted=_flag(deleted) or _flag(deleted_only), prefix=subjectPrefix
        )
        if _flag(deleted_only):
            live = set(registry.subjects(prefix=subjectPrefix))
            found = [s for s in found if s not in live]
        return respond(request, found)

    @router.get("/subjects/{subject}/versions")
    def list_versions(request: Request, subject: str, deleted: str | None = None) -> Response:
        return respond(request, registry.versions(subject, deleted=_flag(deleted)))

    @router.post("/subjects/{subject}/versions")
    def register(
        request: Request, subject: str, normalize: str | None = None, data: Any = body
    ) -> Response:
        schema = schema_from_body(data)
        found = registry.register(subject, schema, normalize=_flag(normalize))
        return respond(request, {"id": found.id})

    @router.post("/subjects/{subject}")
    def lookup(
        request: Request,
        subject: str,
        deleted: str | None = None,
        normalize: str | None = None,
        data: Any = body,
    ) -> Response:
        schema = schema_from_body(data)
        found = registry.lookup(subject, schema, deleted=_flag(deleted))
        return respond(request, _version_body(found))

    @router.delete("/subjects/{subject}")
    def delete_subject(request: Request, subject: str, permanent: str | None = None) -> Response:
        return respond(request, registry.delete_subject(subject, permanent=_flag(permanent)))

    @router.get("/subjects/{subject}/versions/{version}")
    def get_version(
        request: Request, subject: str, version: str, deleted: str | None = None
    ) -> Response:
        found = registry.get_version(subject, version, deleted=_flag(deleted))
        return respond(request, _version_body(found))

    @router.get("/subjects/{subject}/versions/{version}/schema")
    def get_version_schema(subject: str, version: str, deleted: str | None = None) -> Response:
        return _raw_schema(registry.get_version(subject, version, deleted=_flag(deleted)).schema)

    @router.get("/subjects/{subject}/versions/{version}/referencedby")
    def referenced_by(request: Request, subject: str, version: str) -> Response:
        return respond(request, registry.referenced_by(subject, version))

    @router.delete("/subjects/{subject}/versions/{version}")
    def delete_version(
        request: Request, subject: str, version: str, permanent: str | None = None
    ) -> Response:
        number = registry.delete_version(subject, version, permanent=_flag(permanent))
        return respond(request, number)

    # Schemas by id ----------------------------------------------------------------------

    @router.get("/schemas/ids/{schema_id}")
    def get_schema(request: Request, schema_id: str) -> Response:
        schema = registry.schema(_schema_id(schema_id))
        return respond(request, {**_schema_fields(schema), "schema": schema.text})

    @router.get("/schemas/ids/{schema_id}/schema")
    def get_schema_text(schema_id: str) -> Response:
        return _raw_schema(registry.schema(_schema_id(schema_id)))

    @router.get("/schemas/ids/{schema_id}/versions")
    def get_schema_versions(
        request: Request, schema_id: str, deleted: str | None = None
    ) -> Response:
        pairs = registry.schema_versions(_schema_id(schema_id), deleted=_flag(deleted))
        return respond(request, [{"subject": p.subject, "version": p.version} for p in pairs])

    @router.get("/schemas/ids/{schema_id}/subjects")
    def get_schema_subjects(
        request: Request, schema_id: str, deleted: str | None = None
    ) -> Response:
        pairs = registry.schema_versions(_schema_id(schema_id), deleted=_flag(deleted))
        return respond(request, sorted({p.subject for p in pairs}))

    # Compatibility ----------------------------------------------------------------------

    def compatibility(
        request: Request, subject: str, version: str | None, verbose: str | None, data: Any
    ) -> Response:
        schema = schema_from_body(data)
        report = registry.check(subject, schema, version=version)
        result: dict[str, Any] = {"is_compatible": report.compatible}
        if _flag(verbose):
            result["messages"] = list(report.messages)
        return respond(request, result)

    @router.post("/compatibility/subjects/{subject}/versions/{version}")
    def compatibility_with_version(
        request: Request,
        subject: str,
        version: str,
        verbose: str | None = None,
        normalize: str | None = None,
        data: Any = body,
    ) -> Response:
        parse_version(version)  # 42202 before anything else
        return compatibility(request, subject, version, verbose, data)

    @router.post("/compatibility/subjects/{subject}/versions")
    def compatibility_with_all(
        request: Request,
        subject: str,
        verbose: str | None = None,
        normalize: str | None = None,
        data: Any = body,
    ) -> Response:
        return compatibility(request, subject, None, verbose, data)

    # Config and mode --------------------------------------------------------------------

    @router.get("/config")
    def get_global_config(request: Request) -> Response:
        return respond(request, _config_body(registry.get_config()))

    @router.put("/config")
    def put_global_config(request: Request, data: Any = body) -> Response:
        config = registry.set_config(None, **_config_change(data))
        return respond(request, _config_body(config, "compatibility"))

    @router.delete("/config")
    def delete_global_config(request: Request) -> Response:
        return respond(request, _config_body(registry.delete_config()))

    @router.get("/config/{subject}")
    def get_subject_config(
        request: Request,
        subject: str,
        defaultToGlobal: str | None = None,  # Confluent's parameter name
    ) -> Response:
        config = registry.get_config(subject, fallback=_flag(defaultToGlobal))
        return respond(request, _config_body(config))

    @router.put("/config/{subject}")
    def put_subject_config(request: Request, subject: str, data: Any = body) -> Response:
        config = registry.set_config(subject, **_config_change(data))
        return respond(request, _config_body(config, "compatibility"))

    @router.delete("/config/{subject}")
    def delete_subject_config(request: Request, subject: str) -> Response:
        return respond(request, _config_body(registry.delete_config(subject)))

    def mode(data: Any) -> Mapping[str, str]:
        wanted = data.get("mode") if isinstance(data, dict) else None
        if not isinstance(wanted, str) or wanted.strip().upper() != "READWRITE":
            raise InvalidMode(
                f"invalid mode {wanted!r}: trunkline's registry supports READWRITE only"
            )
        return {"mode": "READWRITE"}

    @router.get("/mode")
    def get_mode(request: Request) -> Response:
        return respond(request, {"mode": "READWRITE"})

    @router.put("/mode")
    def put_mode(request: Request, data: Any = body) -> Response:
        return respond(request, mode(data))

    @router.get("/mode/{subject}")
    def get_subject_mode(request: Request, subject: str) -> Response:
        return respond(request, {"mode": "READWRITE"})

    @router.put("/mode/{subject}")
    def put_subject_mode(request: Request, subject: str, data: Any = body) -> Response:
        return respond(request, mode(data))

    @router.delete("/mode/{subject}")
    def delete_subject_mode(request: Request, subject: str) -> Response:
        return respond(request, {"mode": "READWRITE"})

    return router
