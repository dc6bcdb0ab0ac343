"""``contract diff`` names what a breaking change hurts: the datasets and jobs downstream of
the contract's topics in the lineage, or says plainly why it cannot."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from _contract_text import FIXTURE

from trunkline.cli import main
from trunkline.contracts._diff import Consumer, Job, downstream_of
from trunkline.meta import MetaStore
from trunkline.project import Project


def _lineage(meta: MetaStore) -> None:
    """orders -> (sink warehouse) wh.main.orders -> (flow daily) wh.main.daily, and
    orders -> (flow by_country) hub.orders.de -> (sink lake) lake.orders.de; the source
    that feeds orders and another topic's sink are not downstream."""
    meta.upsert_system("hub", "hub", "hub")
    for topic in ("orders", "orders.de", "clicks"):
        meta.upsert_dataset("hub", topic, "topic")
    meta.upsert_system("pg", "postgres", "postgresql://db/shop")
    meta.upsert_dataset("pg", "public.orders", "table")
    meta.upsert_system("wh", "duckdb", "wh.duckdb")
    for table in ("main.orders", "main.daily", "main.clicks"):
        meta.upsert_dataset("wh", table, "table")
    meta.upsert_system("lake", "parquet", "lake")
    meta.upsert_dataset("lake", "orders.de", "fileset")
    edges = [
        ("pg.public.orders", "hub.orders", "shop", "source"),
        ("hub.orders", "wh.main.orders", "warehouse", "sink"),
        ("wh.main.orders", "wh.main.daily", "daily", "flow"),
        ("hub.orders", "hub.orders.de", "by_country", "flow"),
        ("hub.orders.de", "lake.orders.de", "lake", "sink"),
        ("hub.clicks", "wh.main.clicks", "warehouse", "sink"),
    ]
    for source, target, job, kind in edges:
        meta.record_lineage(source, target, job=job, job_kind=kind, run_id="r1")


def test_downstream_follows_the_lineage_from_the_topic_transitively() -> None:
    with MetaStore.open("sqlite://") as meta:
        _lineage(meta)
        found = downstream_of(meta, ["orders"])
        assert found.note is None
        assert found.consumers == (
            Consumer("hub.orders.de", 1, (Job("flow", "by_country"),)),
            Consumer("wh.main.orders", 1, (Job("sink", "warehouse"),)),
            Consumer("lake.orders.de", 2, (Job("sink", "lake"),)),
            Consumer("wh.main.daily", 2, (Job("flow", "daily"),)),
        )
        assert [str(j) for j in found.jobs] == [
            "flow by_country",
            "sink warehouse",
            "sink lake",
            "flow daily",
        ]
        # Two topics: each dataset once, at its shortest distance from either.
        both = downstream_of(meta, ["orders", "orders.de"])
        assert [(c.dataset, c.hops) for c in both.consumers] == [
            ("hub.orders.de", 1),
            ("lake.orders.de", 1),
            ("wh.main.orders", 1),
            ("wh.main.daily", 2),
        ]


def test_no_lineage_is_said_not_left_empty() -> None:
    with MetaStore.open("sqlite://") as meta:
        _lineage(meta)
        quiet = downstream_of(meta, ["wh_only"])  # not in the catalog at all
        assert quiet.consumers == () and quiet.jobs == ()
        assert quiet.note is not None
        assert "no lineage is recorded downstream of hub.wh_only" in quiet.note
        assert "not in the catalog: wh_only" in quiet.note
        meta.upsert_dataset("hub", "fresh", "topic")
        note = downstream_of(meta, ["fresh"]).note
        assert note is not None and "hub.fresh" in note and "catalog" not in note


PROJECT = """\
meta: sqlite:///meta.db
topics:
  orders: {partitions: 1, contract: contracts/orders.yaml}
  clicks: {partitions: 1}
"""


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
        code = main(list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project whose topic ``orders`` has the fixture's contract, with lineage recorded."""
    root = tmp_path / "p"
    (root / "contracts").mkdir(parents=True)
    shutil.copy(FIXTURE, root / "contracts" / "orders.yaml")
    (root / "trunkline.yaml").write_text(PROJECT)
    with Project.open(root) as project:
        _lineage(project.meta)
    return root


def _breaking(tmp_path: Path) -> Path:
    """Version 1.1.0 of the contract without ``quantity``: breaking, and too small a bump."""
    new = tmp_path / "v2.yaml"
    text = FIXTURE.read_text().replace("      - name: quantity\n        logicalType: integer\n", "")
    new.write_text(text.replace("version: 1.0.0", "version: 1.1.0"))
    return new


def test_cli_diff_names_affected_datasets_and_jobs(root: Path, tmp_path: Path, cli: Cli) -> None:
    old, new = str(root / "contracts" / "orders.yaml"), str(_breaking(tmp_path))
    code, out, err = cli("-p", str(root), "contract", "diff", old, new, "--json")
    assert code == 1, err  # a breaking change with a minor bump
    data = json.loads(out)
    assert data["breaking"] and data["topics"] == ["orders"]
    assert data["affected"] == {
        "datasets": ["hub.orders.de", "wh.main.orders", "lake.orders.de", "wh.main.daily"],
        "jobs": ["flow by_country", "sink warehouse", "sink lake", "flow daily"],
    }
    datasets = data["downstream"]["datasets"]
    assert {"name": "wh.main.daily", "hops": 2, "jobs": ["flow daily"]} in datasets
    assert {"kind": "sink", "name": "warehouse"} in data["downstream"]["jobs"]
    assert data["downstream"]["note"] is None

    code, out, _ = cli("-p", str(root), "contract", "diff", old, new)
    assert code == 1
    assert "affected downstream of orders (breaking changes):" in out
    assert "  wh.main.orders  (written by sink warehouse)\n" in out
    assert "  wh.main.daily  (written by flow daily, 2 hops away)\n" in out
    assert "  jobs: flow by_country, sink warehouse, sink lake, flow daily\n" in out


def test_cli_diff_without_breaking_changes_lists_but_affects_nothing(
    root: Path, tmp_path: Path, cli: Cli
) -> None:
    new = tmp_path / "v1.1.yaml"
    text = FIXTURE.read_text().replace("version: 1.0.0", "version: 1.1.0")
    new.write_text(text.replace("purpose: Orders placed", "purpose: All orders placed"))
    old = str(root / "contracts" / "orders.yaml")
    code, out, _ = cli("-p", str(root), "contract", "diff", old, str(new), "--json")
    assert code == 0
    data = json.loads(out)
    assert not data["breaking"]
    assert data["affected"] == {"datasets": [], "jobs": []}
    assert len(data["downstream"]["datasets"]) == 4
    code, out, _ = cli("-p", str(root), "contract", "diff", old, str(new))
    assert "downstream of orders (not affected: no breaking change):" in out


def test_cli_diff_outside_a_project_says_the_consumers_are_unknown(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no trunkline.yaml here
    new = str(_breaking(tmp_path))
    code, out, _ = cli("contract", "diff", str(FIXTURE), new, "--json")
    assert code == 1
    data = json.loads(out)
    assert data["topics"] == [] and data["affected"] == {"datasets": [], "jobs": []}
    assert data["downstream"]["datasets"] == []
    note = data["downstream"]["note"]
    assert f"not in a project ({tmp_path.resolve() / 'trunkline.yaml'} does not exist)" in note
    code, out, _ = cli("contract", "diff", str(FIXTURE), new)
    assert "downstream consumers unknown: not in a project" in out
    assert "pass -p PROJECT" in out


def test_cli_diff_says_when_no_lineage_or_no_topic_is_known(
    root: Path, tmp_path: Path, cli: Cli
) -> None:
    old, new = str(root / "contracts" / "orders.yaml"), str(_breaking(tmp_path))
    p = ("-p", str(root))
    # The contract of no topic of the project: it says so, and --topic names one.
    code, out, _ = cli(*p, "contract", "diff", str(FIXTURE), new)
    assert "downstream consumers unknown: no topic in" in out and "--topic" in out
    code, out, _ = cli(*p, "contract", "diff", str(FIXTURE), new, "--topic", "clicks", "--json")
    assert json.loads(out)["affected"]["datasets"] == ["wh.main.clicks"]
    # A topic nothing has read yet.
    with Project.open(root) as project:
        project.meta.upsert_dataset("hub", "quiet", "topic")
    code, out, _ = cli(*p, "contract", "diff", old, new, "--topic", "quiet")
    assert "downstream consumers unknown: no lineage is recorded downstream of hub.quiet" in out
    # A topic that does not exist is bad input.
    code, _, err = cli(*p, "contract", "diff", old, new, "--topic", "order")
    assert code == 2
    assert "--topic 'order': no such topic in" in err and "did you mean 'orders'?" in err
