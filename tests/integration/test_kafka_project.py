"""A project on Apache Kafka: the one-line switch in trunkline.yaml, and migrating to it."""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafka_fixtures import deleting_new_topics
from trunkline.cli import main
from trunkline.hub import Record, TopicConfig, TopicPartition
from trunkline.hub.embedded import EmbeddedHub
from trunkline.hub.kafka import KafkaHub
from trunkline.project import Project

pytestmark = pytest.mark.kafka


def _run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
    stdin: bytes = b"",
) -> tuple[int, str, str]:  # fmt: skip
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def kafka(kafka_bootstrap: str) -> Iterator[KafkaHub]:
    with KafkaHub(kafka_bootstrap) as hub, deleting_new_topics(hub):
        yield hub


def test_project_switches_to_kafka_with_one_line(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka: KafkaHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    (tmp_path / "trunkline.yaml").write_text(
        f'hub: {{backend: kafka, bootstrap: "{kafka_bootstrap}"}}\n'
        f"topics:\n  {topic}: {{partitions: 3, retention: 2d}}\n"
    )
    p = str(tmp_path)
    assert _run(capsys, monkeypatch, "-p", p, "validate")[0] == 0
    assert _run(capsys, monkeypatch, "-p", p, "topic", "apply")[0] == 0
    described = kafka.describe_topic(topic)
    assert len(described.partitions) == 3
    assert described.config.retention_ms == 2 * 24 * 3600 * 1000
    lines = b"".join(b'{"id": %d}\n' % i for i in range(30))
    code, _, _ = _run(capsys, monkeypatch, "-p", p, "produce", topic, "--key-field", "id",
                      stdin=lines)  # fmt: skip
    assert code == 0
    code, out, _ = _run(capsys, monkeypatch, "-p", p, "consume", topic, "--group", "g",
                        "--from-beginning", "--format", "raw")  # fmt: skip
    assert code == 0
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == list(range(30))
    code, out, _ = _run(capsys, monkeypatch, "-p", p, "group", "describe", "g", "--json")
    assert json.loads(out)["lag"] == 0
    with Project.open(tmp_path) as project:
        assert project.hub.backend == "kafka"
    code, _, err = _run(capsys, monkeypatch, "-p", p, "hub", "maintain")
    assert code == 1
    assert "kafka hub runs retention and compaction itself" in err


def test_cli_migrates_an_embedded_project(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka: KafkaHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = f"events-{uuid.uuid4().hex[:8]}"
    (tmp_path / "trunkline.yaml").write_text(f"topics:\n  {topic}: {{partitions: 2}}\n")
    with Project.open(tmp_path) as project:
        project.apply_topics()
        project.hub.produce(
            topic, [Record(f"v{i}".encode(), key=f"k{i}".encode()) for i in range(100)]
        )
        project.hub.commit_offsets("readers", {TopicPartition(topic, 0): 5})
    p = str(tmp_path)
    code, out, _ = _run(capsys, monkeypatch, "-p", p, "hub", "migrate", "--to",
                        f"kafka://{kafka_bootstrap}", "--json")  # fmt: skip
    assert code == 0, out
    report = json.loads(out)
    assert report["verified"] is True
    assert report["records"] == 100
    with EmbeddedHub(tmp_path / ".trunkline" / "hub") as source:
        assert sum(kafka.end_offsets(topic).values()) == sum(source.end_offsets(topic).values())
    assert kafka.committed("readers", topic) == {0: 5}
    # Resumable: a second run copies nothing again.
    code, out, _ = _run(capsys, monkeypatch, "-p", p, "hub", "migrate", "--to",
                        f"kafka://{kafka_bootstrap}", "--json")  # fmt: skip
    assert code == 0
    assert json.loads(out)["copied"] == 0


@pytest.mark.parametrize("url", ["http://x:1", "kafka://nohost", "kafka://"])
def test_migrate_bad_target(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "trunkline.yaml").write_text("topics: {}\n")
    code, _, err = _run(capsys, monkeypatch, "-p", str(tmp_path), "hub", "migrate", "--to", url)
    assert code == 2
    assert "expected kafka://host:port" in err


def test_perf_hub_on_kafka(
    tmp_path: Path,
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _ = _run(capsys, monkeypatch, "perf", "hub", "--compare", "--quick", "--json",
                        "--bootstrap", kafka_bootstrap, "--directory", str(tmp_path))  # fmt: skip
    assert code == 0
    figures = json.loads(out)
    assert figures["kafka"]["backend"] == "kafka"
    assert figures["ratio_produce"] > 0
    assert figures["ratio_consume"] > 0


def test_perf_contracts_on_kafka(
    tmp_path: Path,
    kafka: KafkaHub,
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = set(kafka.list_topics())
    code, out, _ = _run(capsys, monkeypatch, "perf", "contracts", "--quick", "--json",
                        "--bootstrap", kafka_bootstrap, "--directory", str(tmp_path))  # fmt: skip
    assert code == 0
    on_kafka = json.loads(out)["kafka"]
    # 20,000 orders, one in 1,000 bad: the warm-up and one repeat dead-letter 20 each.
    assert on_kafka["dead_lettered"] == 40
    assert on_kafka["dead_lettered_typed"] == 40
    for key in ("contract_overhead", "contract_overhead_parse_floor", "contract_overhead_typed"):
        assert on_kafka[key] > 0, key
    assert not [t for t in set(kafka.list_topics()) - before if t.startswith("perf-contracts-")]


def test_perf_kafka_needs_a_bootstrap(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRUNKLINE_KAFKA_BOOTSTRAP", raising=False)
    code, _, err = _run(capsys, monkeypatch, "perf", "hub", "--backend", "kafka")
    assert code == 2
    assert "--bootstrap" in err


def test_embedded_topic_config_has_kafka_equivalent(kafka: KafkaHub) -> None:
    name = f"cfg-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(name, TopicConfig(partitions=2, retention_ms=None, segment_bytes=2 << 20))
    assert kafka.describe_topic(name).config.retention_ms is None
