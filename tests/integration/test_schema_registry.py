"""SchemaRegistry behaviour, written once and run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

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
from trunkline.schemas import (
    Compatibility,
    JsonPolicy,
    Schema,
    SchemaReference,
    SchemaRegistry,
    SchemaType,
    SubjectVersion,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def meta_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('meta')}/meta.db"
    dsn: str = request.getfixturevalue("postgres_db")
    return dsn


@pytest.fixture
def registry(meta_url: str) -> Iterator[SchemaRegistry]:
    with MetaStore.open(meta_url) as store:
        yield SchemaRegistry(store)


def record(*fields: tuple[str, Any] | dict[str, Any], name: str = "Order") -> dict[str, Any]:
    built = [f if isinstance(f, dict) else {"name": f[0], "type": f[1]} for f in fields]
    return {"type": "record", "name": name, "fields": built}


V1 = record(("id", "long"))
V2 = record(("id", "long"), {"name": "note", "type": "string", "default": ""})
V2_BAD = record(("id", "long"), ("note", "string"))


def test_ids_are_global_and_versions_count_per_subject(registry: SchemaRegistry) -> None:
    first = registry.register("orders-value", V1)
    assert (first.version, first.id, first.schema_type) == (1, 1, SchemaType.AVRO)
    second = registry.register("orders-value", V2)
    assert (second.version, second.id) == (2, 2)
    elsewhere = registry.register("archive-value", json.dumps(V1, indent=4))
    assert (elsewhere.version, elsewhere.id) == (1, 1), "same schema, same global id"
    assert registry.subjects() == ["archive-value", "orders-value"]
    assert registry.versions("orders-value") == [1, 2]
    assert registry.schema(1).text == json.dumps(V1)
    assert registry.schema_versions(1) == [
        SubjectVersion("archive-value", 1),
        SubjectVersion("orders-value", 1),
    ]


def test_registering_an_existing_schema_returns_its_version(registry: SchemaRegistry) -> None:
    registry.register("orders-value", V1)
    registry.register("orders-value", V2)
    # Same canonical form (doc and formatting differ): no new version, no compatibility check.
    again = registry.register("orders-value", {**V1, "doc": "orders"})
    assert (again.version, again.id) == (1, 1)
    assert registry.versions("orders-value") == [1, 2]
    found = registry.lookup("orders-value", V2)
    assert (found.version, found.id) == (2, 2)
    with pytest.raises(SchemaNotFound):
        registry.lookup("orders-value", V2_BAD)
    with pytest.raises(SubjectNotFound):
        registry.lookup("nope", V1)


def test_incompatible_schema_leaves_nothing_behind(registry: SchemaRegistry) -> None:
    registry.register("orders-value", V1)
    with pytest.raises(IncompatibleSchema) as info:
        registry.register("orders-value", V2_BAD)
    (message,) = info.value.messages
    assert message.startswith("READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1")
    assert "version 1" in message
    assert registry.versions("orders-value") == [1]
    # The refused schema took no id: the next new schema gets 2.
    assert registry.register("orders-value", V2).id == 2


def test_soft_delete_keeps_numbering_and_hard_delete_resets_it(registry: SchemaRegistry) -> None:
    registry.register("orders-value", V1)
    registry.register("orders-value", V2)
    assert registry.delete_version("orders-value", 2) == 2
    assert registry.versions("orders-value") == [1]
    assert registry.versions("orders-value", deleted=True) == [1, 2]
    assert registry.get_version("orders-value", 2, deleted=True).deleted
    with pytest.raises(VersionNotFound, match="soft-deleted"):
        registry.get_version("orders-value", 2)
    with pytest.raises(VersionSoftDeleted):
        registry.delete_version("orders-value", 2)
    # Re-registering the soft-deleted schema makes a new version with the same id.
    again = registry.register("orders-value", V2)
    assert (again.version, again.id) == (3, 2)
    with pytest.raises(VersionNotSoftDeleted):
        registry.delete_version("orders-value", 3, permanent=True)
    assert registry.delete_version("orders-value", 2, permanent=True) == 2
    assert registry.versions("orders-value", deleted=True) == [1, 3]

    with pytest.raises(SubjectNotSoftDeleted):
        registry.delete_subject("orders-value", permanent=True)
    assert registry.delete_subject("orders-value") == [1, 3]
    assert registry.subjects() == []
    assert registry.subjects(deleted=True) == ["orders-value"]
    with pytest.raises(SubjectNotFound):
        registry.get_version("orders-value", "latest")
    with pytest.raises(SubjectSoftDeleted):
        registry.delete_subject("orders-value")
    # The schemas of soft-deleted versions still resolve by id (old data must stay readable).
    assert registry.schema(2).text == json.dumps(V2)
    assert registry.delete_subject("orders-value", permanent=True) == [1, 3]
    with pytest.raises(SchemaNotFound):
        registry.schema(2)
    with pytest.raises(SubjectNotFound):
        registry.delete_subject("orders-value")
    fresh = registry.register("orders-value", V2_BAD)
    assert (fresh.version, fresh.id) == (1, 3), "numbering restarts; ids never do"


def test_only_live_versions_count(registry: SchemaRegistry) -> None:
    registry.set_config("orders-value", compatibility="NONE")
    registry.register("orders-value", record(("id", "int")))
    registry.register("orders-value", record(("id", "string")))
    registry.set_config("orders-value", compatibility="BACKWARD_TRANSITIVE")
    wider = record(("id", "string"), {"name": "note", "type": "string", "default": ""})
    with pytest.raises(IncompatibleSchema, match="TYPE_MISMATCH at /fields/0/type"):
        registry.register("orders-value", wider)
    registry.delete_version("orders-value", 1)
    assert registry.register("orders-value", wider).version == 3


def test_check_compares_without_writing(registry: SchemaRegistry) -> None:
    assert registry.check("orders-value", V2_BAD).compatible, "no versions: anything goes"
    registry.register("orders-value", V1)
    report = registry.check("orders-value", V2_BAD)
    assert not report.compatible and report.compatibility is Compatibility.BACKWARD
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in report.messages[0]
    assert registry.check("orders-value", V2, version=1).compatible
    with pytest.raises(VersionNotFound):
        registry.check("orders-value", V2, version=7)
    assert registry.versions("orders-value") == [1]


def test_configs(registry: SchemaRegistry) -> None:
    assert registry.get_config().compatibility is Compatibility.BACKWARD
    assert registry.effective("orders-value") == (Compatibility.BACKWARD, JsonPolicy.STRICT)
    with pytest.raises(ConfigNotFound):
        registry.get_config("orders-value")
    assert registry.get_config("orders-value", fallback=True).compatibility is (
        Compatibility.BACKWARD
    )
    registry.set_config(compatibility="FULL")
    assert registry.effective("orders-value")[0] is Compatibility.FULL
    own = registry.set_config("orders-value", compatibility="none", json_policy="LENIENT")
    assert (own.compatibility, own.json_policy) == (Compatibility.NONE, JsonPolicy.LENIENT)
    assert registry.effective("orders-value") == (Compatibility.NONE, JsonPolicy.LENIENT)
    assert registry.delete_config("orders-value").compatibility is Compatibility.NONE
    assert registry.effective("orders-value")[0] is Compatibility.FULL
    assert registry.delete_config().compatibility is Compatibility.FULL
    assert registry.get_config().compatibility is Compatibility.BACKWARD
    with pytest.raises(InvalidCompatibility):
        registry.set_config("orders-value", compatibility="SIDEWAYS")
    with pytest.raises(ConfigNotFound):
        registry.delete_config("orders-value")


def test_json_schema_policy_per_subject(registry: SchemaRegistry) -> None:
    v1 = {"type": "object", "properties": {"id": {"type": "integer"}}}
    v2 = {"type": "object", "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}}
    registry.register("events-value", v1, schema_type="json")
    with pytest.raises(IncompatibleSchema, match="PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"):
        registry.register("events-value", v2, schema_type="JSON")
    registry.set_config("events-value", json_policy="LENIENT")
    added = registry.register("events-value", v2, schema_type="JSON")
    assert (added.version, added.schema_type) == (2, SchemaType.JSON)


def test_references(registry: SchemaRegistry) -> None:
    money = {"type": "record", "name": "Money", "namespace": "shop",
             "fields": [{"name": "cents", "type": "long"}]}  # fmt: skip
    registry.register("money-value", money)
    ref = SchemaReference("shop.Money", "money-value", -1)
    order = registry.register("orders-value", record(("total", "shop.Money")), references=[ref])
    assert order.references == (SchemaReference("shop.Money", "money-value", 1),)
    assert registry.get_version("orders-value").references == order.references
    assert registry.referenced_by("money-value", 1) == [order.id]
    assert registry.parsed(order.id).named["shop.Money"]["name"] == "shop.Money"
    with pytest.raises(ReferenceExists, match="'orders-value' version 1"):
        registry.delete_version("money-value", 1)
    with pytest.raises(ReferenceExists):
        registry.delete_subject("money-value")
    with pytest.raises(InvalidSchema, match="names subject 'money-value' version 9"):
        registry.register(
            "other-value",
            record(("total", "shop.Money")),
            references=[SchemaReference("shop.Money", "money-value", 9)],
        )
    with pytest.raises(InvalidSchema, match=r"unknown type 'shop\.Money'"):
        registry.register("other-value", record(("total", "shop.Money")))
    assert registry.subjects() == ["money-value", "orders-value"]
    # Once the referrer is soft-deleted the referenced version may be soft-deleted, but not
    # removed for good while the referrer's row exists.
    registry.delete_subject("orders-value")
    registry.delete_version("money-value", 1)
    with pytest.raises(ReferenceExists):
        registry.delete_version("money-value", 1, permanent=True)
    registry.delete_subject("orders-value", permanent=True)
    registry.delete_version("money-value", 1, permanent=True)


def test_same_text_with_other_references_is_another_schema(registry: SchemaRegistry) -> None:
    registry.set_config(compatibility="NONE")
    money = {"type": "record", "name": "Money", "fields": [{"name": "cents", "type": "long"}]}
    registry.register("money-value", money)
    registry.register("money-value", {**money, "fields": [{"name": "cents", "type": "int"}]})
    text = json.dumps(record(("total", "Money")))
    one = registry.register(
        "a-value", Schema(text, references=(SchemaReference("Money", "money-value", 1),))
    )
    two = registry.register(
        "b-value", Schema(text, references=(SchemaReference("Money", "money-value", 2),))
    )
    assert one.id != two.id


@pytest.mark.parametrize("bad", [0, "0", "abc", "2147483648", "1.5", True])
def test_invalid_versions(registry: SchemaRegistry, bad: Any) -> None:
    registry.register("orders-value", V1)
    with pytest.raises(InvalidVersion, match="expected a version number"):
        registry.get_version("orders-value", bad)


def test_invalid_input_is_refused(registry: SchemaRegistry) -> None:
    with pytest.raises(InvalidSubject):
        registry.register("", V1)
    with pytest.raises(InvalidSubject):
        registry.register("x" * 256, V1)
    with pytest.raises(InvalidSchema):
        registry.register("orders-value", "{not json")
    with pytest.raises(InvalidSchema, match="unknown schema type"):
        registry.register("orders-value", V1, schema_type="PROTOBUF")
    assert registry.subjects(deleted=True) == []


def _register_many(url: str, worker: int, count: int) -> list[tuple[int, int]]:
    with MetaStore.open(url) as store:
        registry = SchemaRegistry(store)
        done = []
        for i in range(count):
            schema = record((f"f{worker}_{i}", "int"), name=f"R{worker}_{i}")
            found = registry.register("shared-value", schema)
            done.append((found.version, found.id))
        return done


def test_concurrent_registrations_get_distinct_versions(meta_url: str) -> None:
    with MetaStore.open(meta_url) as store:
        SchemaRegistry(store).set_config("shared-value", compatibility="NONE")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = [pool.submit(_register_many, meta_url, worker, 6) for worker in range(2)]
        results = [pair for future in futures for pair in future.result(timeout=120)]
    versions = sorted(version for version, _ in results)
    assert versions == list(range(1, 13))
    assert len({schema_id for _, schema_id in results}) == 12
    with MetaStore.open(meta_url) as store:
        assert SchemaRegistry(store).versions("shared-value") == list(range(1, 13))
