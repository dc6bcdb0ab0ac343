"""The planner on the embedded default: results equal DuckDB's on the same data; placement,
EXPLAIN and bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from _planner_data import reference

from trunkline.engines import Step
from trunkline.engines.duckdb import DuckDBEngine
from trunkline.engines.hub import HubEngine
from trunkline.errors import PlanningError
from trunkline.federation import open_planner
from trunkline.federation.catalog import add_view, analyze_all
from trunkline.planner import Planner, explain
from trunkline.project import Project

QUERIES = [
    "select count(*) as n from events",
    "select kind, count(*) as n, sum(amount) as total from events group by kind order by kind",
    "select e.id, u.name from events e join users u on e.user_id = u.user_id "
    "where e.kind = 'a' and e.day between date '2024-01-03' and date '2024-01-05' "
    "and u.region in (1, 2) order by e.id",
    "select r.rname, count(*) as n, sum(e.amount) as s from events e "
    "join users u on e.user_id = u.user_id join wh.main.regions r on r.region = u.region "
    "where e.amount > 100.5 group by r.rname order by r.rname",
    "select u.region, max(e.day) as last_day from users u left join events e "
    "on e.user_id = u.user_id and e.kind = 'b' group by u.region order by u.region",
    "select name from users where user_id in (select user_id from events where amount < 3) "
    "order by name",
    "select kind, amount from events where kind like 'c%' and not (amount >= 10) "
    "order by amount limit 5",
    "with big as (select user_id, sum(amount) as s from events group by user_id) "
    "select u.name, b.s from big b join users u using (user_id) order by b.s desc, u.name "
    "limit 3",
    "select date_trunc('week', day) as week, count(distinct user_id) as users "
    "from events group by 1 order by 1",
]


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    def value(v: Any) -> Any:
        return round(float(v), 6) if isinstance(v, Decimal | float) else v

    return [tuple(value(v) for v in row.values()) for row in table.to_pylist()]


@pytest.mark.parametrize("sql", QUERIES)
def test_results_equal_duckdb_on_the_same_data(
    project: Project, planner: Planner, sql: str
) -> None:
    expected = reference(project.root).execute(sql).to_arrow_table()
    assert rows(planner.query(sql)) == rows(expected)


def test_analyze_then_results_still_equal(project: Project) -> None:
    analyzed = {d.qualified_name: d for d in analyze_all(project)}
    assert analyzed["hub.events"].rows == 3000
    assert project.meta.column_stats("hub", "events")["kind"].distinct == 3
    planner = open_planner(project)
    try:
        sql = QUERIES[3]
        expected = reference(project.root).execute(sql).to_arrow_table()
        assert rows(planner.query(sql)) == rows(expected)
    finally:
        planner.close()


def test_topic_scan_applies_filters_and_projections_while_reading(planner: Planner) -> None:
    plan = planner.plan("select id from events where kind = 'a' and amount < 10")
    scan = next(s for s in plan.steps if s.engine == "hub")
    assert "where" in scan.text and "\"kind\" = 'a'" in scan.text
    planner.run(plan)
    assert scan.actual is not None and scan.actual.rows == 10
    assert plan.result.actual is not None and plan.result.actual.rows == 10


def test_typed_topic_columns(planner: Planner) -> None:
    table = planner.query("select id, amount, kind, day from events order by id limit 1")
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("day").type == pa.date32()


def test_explain_names_engines_reasons_sql_statistics_and_a_stable_hash(
    planner: Planner,
) -> None:
    sql = QUERIES[3]
    first = planner.plan(sql)
    text = explain(first)
    for expected in (
        "scan on hub",
        "final on duckdb",
        "why:",
        "sent:",
        "candidates:",
        "statistics:",
        "hub.events: 3,000 rows from hub offsets",
        "lake.users: 200 rows from parquet metadata",
    ):
        assert expected in text, expected
    assert first.hash == planner.plan(sql).hash
    planner.run(first)
    data = first.to_dict()
    assert data["hash"] == first.hash
    assert all(step["actual"] is not None for step in data["steps"])
    json.dumps(data)


def test_capabilities_are_data() -> None:
    duck = DuckDBEngine()
    try:
        assert duck.can_run(Step(frozenset({"join", "aggregate", "window"}), arrow_inputs=2))
    finally:
        duck.close()
    hub = HubEngine.capabilities
    verdict = HubEngine.__new__(HubEngine).can_run(Step(frozenset({"scan", "join"})))
    assert not verdict and "join" in verdict.reason
    assert "LIKE" in (hub.functions or ())
    refused = HubEngine.__new__(HubEngine).can_run(
        Step(frozenset({"scan", "filter"}), frozenset({"ANONYMOUS:regexp_matches"}))
    )
    assert not refused and "regexp_matches" in refused.reason.lower()


def test_a_filter_the_hub_cannot_run_is_not_pushed_and_says_why(planner: Planner) -> None:
    plan = planner.plan("select id from events where regexp_matches(kind, '^a') order by id")
    assert any("regexp_matches" in item.lower() for item in plan.not_pushed)
    assert planner.run(plan).num_rows == 1000


def test_unknown_names_say_did_you_mean(planner: Planner) -> None:
    with pytest.raises(PlanningError, match=r"unknown column 'amout'.*did you mean 'amount'"):
        planner.plan("select amout from events")
    with pytest.raises(PlanningError, match=r"unknown table 'evnts'.*did you mean 'hub.events'"):
        planner.plan("select * from evnts")


def test_ambiguous_names_list_the_candidates(project: Project, planner: Planner) -> None:
    project.meta.upsert_system("lake2", "parquet", str(project.root / "lake"))
    project.meta.upsert_dataset("lake2", "users", "fileset", columns=())
    with pytest.raises(PlanningError, match=r"ambiguous.*lake\.users.*lake2\.users") as info:
        planner.plan("select * from users")
    assert set(info.value.candidates) == {"lake.users", "lake2.users"}


def test_sql_no_engine_can_run_names_the_construct(planner: Planner) -> None:
    with pytest.raises(PlanningError, match=r"only queries.*INSERT"):
        planner.plan("insert into users values (1)")
    with pytest.raises(PlanningError, match="invalid SQL"):
        planner.plan("select from where")


def test_tiered_view_and_type_mismatch_across_sources(project: Project) -> None:
    with pytest.raises(PlanningError, match=r"column 'user_id' is BIGINT in .* but VARCHAR"):
        # users.user_id is a number; wh regions' rname is text: a view cannot mix them.
        project.meta.upsert_system("txt", "parquet", str(project.root / "lake"))
        project.meta.upsert_dataset(
            "txt",
            "users",
            "fileset",
            columns=[
                __import__("trunkline.meta", fromlist=["Column"]).Column("user_id", "VARCHAR"),
                __import__("trunkline.meta", fromlist=["Column"]).Column("name", "VARCHAR"),
                __import__("trunkline.meta", fromlist=["Column"]).Column("region", "BIGINT"),
            ],
        )
        add_view(project, "all_users", "select * from lake.users union all select * from txt.users")
    dataset = add_view(
        project,
        "recent_and_old",
        "select * from lake.users union all select * from lake.users",
    )
    assert dataset.kind.value == "view"
    planner = open_planner(project)
    try:
        plan = planner.plan("select count(*) as n from recent_and_old where region = 1")
        assert planner.run(plan).column("n").to_pylist() == [80]
    finally:
        planner.close()


def test_debezium_topic_reads_as_current_state(project: Project) -> None:
    project.registry  # noqa: B018  (the registry lives in the metadata store)
    topic = "shop.public.customers"
    project.create_topic(topic)
    schema = {
        "type": "object",
        "properties": {
            "before": {"type": ["object", "null"]},
            "after": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
            },
            "op": {"type": "string"},
            "source": {"type": "object"},
        },
    }
    from trunkline.schemas import Schema, SchemaType

    project.registry.register(f"{topic}-value", Schema(json.dumps(schema), SchemaType.JSON))

    def change(op: str, id_: int, name: str | None) -> tuple[bytes, bytes | None]:
        after = None if op == "d" else {"id": id_, "name": name}
        value = {"before": None, "after": after, "op": op, "source": {"lsn": 1}}
        return str(id_).encode(), json.dumps(value).encode()

    events = [
        change("c", 1, "ann"),
        change("c", 2, "bob"),
        change("u", 1, "anna"),
        change("c", 3, "cy"),
        change("d", 2, None),
    ]
    keys, values = zip(*events, strict=True)
    project.hub.produce(
        topic, pa.table({"key": pa.array(keys), "value": pa.array(values, pa.binary())})
    )
    project.hub.produce(topic, pa.table({"key": [b"3"], "value": pa.array([None], pa.binary())}))
    planner = open_planner(project)
    try:
        table = planner.query("select id, name from state(shop.public.customers) order by id")
    finally:
        planner.close()
    assert table.to_pylist() == [{"id": 1, "name": "anna"}]


def test_semi_join_keys_too_many_at_run_time_are_dropped() -> None:
    import sqlglot

    from trunkline.planner.execute import _run_step
    from trunkline.planner.plan import PlanStep

    engine = DuckDBEngine()
    try:
        query = sqlglot.parse_one("select x from t where x in (select key from _k1)", "duckdb")
        step = PlanStep(
            "s2",
            "scan",
            "duckdb",
            "",
            query,
            {},
            {"s0": "t", "s1": "_k1"},
            "_f2",
            [],
            0,
            0,
            0,
            key_inputs={"s1": "_k1"},
        )
        results = {"s0": pa.table({"x": [1, 2, 3]}), "s1": pa.table({"key": [2]})}
        assert _run_step(engine, step, results).column("x").to_pylist() == [2]
        import sys

        monkey = pytest.MonkeyPatch()
        monkey.setattr(sys.modules["trunkline.planner.execute"], "MAX_KEYS", 0)
        try:
            assert sorted(_run_step(engine, step, results).column("x").to_pylist()) == [1, 2, 3]
        finally:
            monkey.undo()
    finally:
        engine.close()
