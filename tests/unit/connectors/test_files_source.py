"""The files source beyond the conformance suite."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from trunkline.config import ProjectFileError, load_project
from trunkline.connectors.base import ConnectorContext, SourceBatch
from trunkline.connectors.sources.files import FilesConfig, FilesSource, arrow_type
from trunkline.testing.connectors import make_context


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    return tmp_path / "in"


@pytest.fixture
def context(tmp_path: Path) -> ConnectorContext:
    return make_context(tmp_path, "files", kind="source")


def source(**settings: Any) -> FilesSource:
    base = {"path": "in", "topic": "t", "settle": "0s", "poll_interval": "0s"}
    return FilesSource("files", FilesConfig.model_validate({**base, **settings}))


def drain(src: FilesSource) -> list[SourceBatch]:
    out = []
    while (batch := src.poll(0.01)) is not None:
        out.append(batch)
    return out


def values(batches: list[SourceBatch]) -> list[dict[str, Any]]:
    return [json.loads(v) for b in batches for v in b.records.column("value").to_pylist()]


def aged(path: Path, seconds: float = 60) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def test_files_still_changing_wait_for_settle(folder: Path, context: ConnectorContext) -> None:
    src = source(settle="30s", glob="*.csv")
    (folder / "fresh.csv").write_text("id\n1\n")
    aged_write(folder / "old.csv", "id\n2\n")
    src.open(context, None)
    assert [r["id"] for r in values(drain(src))] == [2]
    src.close()


def test_a_changed_file_is_read_again(folder: Path, context: ConnectorContext) -> None:
    path = aged_write(folder / "a.csv", "id\n1\n")
    src = source()
    src.open(context, None)
    assert [r["id"] for r in values(drain(src))] == [1]
    state = src.snapshot()
    src.close()
    aged_write(path, "id\n1\n2\n", seconds=30)
    again = source()
    again.open(context, state)
    assert [r["id"] for r in values(drain(again))] == [1, 2]
    again.close()


def aged_write(path: Path, text: str, seconds: float = 60) -> Path:
    path.write_text(text)
    return aged(path, seconds)


def test_large_file_in_chunks_resumes_mid_file(folder: Path, context: ConnectorContext) -> None:
    lines = "".join(f"{i},name {i}\n" for i in range(2000))
    aged_write(folder / "big.csv", "id,name\n" + lines)
    src = source(chunk_size="4KiB", key="id")
    src.open(context, None)
    first = [src.poll(0.01) for _ in range(3)]
    state = json.loads(json.dumps(src.snapshot()))
    assert state["current"]["path"] == "big.csv" and state["current"]["offset"] > 0
    src.close()
    again = source(chunk_size="4KiB", key="id")
    again.open(context, state)
    rest = drain(again)
    again.close()
    ids = [r["id"] for r in values([b for b in first if b] + rest)]
    assert ids == list(range(2000))
    # Keys are the id column's text; positions say where a batch ended.
    assert rest[-1].records.column("key")[-1].as_py() == b"1999"
    assert rest[-1].position == {"file": "big.csv", "line": 2001}


def test_missing_key_column_sends_the_file_to_dead_letters(
    folder: Path, context: ConnectorContext
) -> None:
    aged_write(folder / "a.csv", "name\nx\n")
    src = source(key="id")
    src.open(context, None)
    batches = drain(src)
    src.close()
    letters = [letter for b in batches for letter in b.dead_letters]
    assert len(letters) == 1
    assert letters[0].value == b"name\nx\n"
    assert "'id'" in letters[0].error and letters[0].origin == "a.csv"


def test_declared_types_and_headerless_csv(folder: Path, context: ConnectorContext) -> None:
    aged_write(folder / "a.txt", "1;2.50\n2;x\n")
    src = source(
        glob="*.txt",
        format="csv",
        csv={"delimiter": ";", "header": False, "columns": ["id", "price"]},
        schema={"price": "decimal(10,2)"},
    )
    src.open(context, None)
    batches = drain(src)
    src.close()
    assert values(batches) == [{"id": 1, "price": 2.5}]
    assert [letter.origin for b in batches for letter in b.dead_letters] == ["a.txt:2"]


def test_type_names() -> None:
    assert str(arrow_type("TimestampTZ")) == "timestamp[us, tz=UTC]"
    with pytest.raises(KeyError):
        arrow_type("strng")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ("format: jsonl, csv: {delimiter: ';'}", "'csv' options do not apply to format 'jsonl'"),
        ("schema: {id: strng}", "unknown type 'strng' for column 'id'"),
        ("glob: ../*.csv", "expected a pattern inside the folder"),
        ("csv: {header: false}", "files without a header line need their column names"),
        ("topics: t2", "unknown key 'topics'"),
    ],
)
def test_impossible_settings_are_placed(tmp_path: Path, settings: str, problem: str) -> None:
    (tmp_path / "trunkline.yaml").write_text(
        f"sources:\n  f:\n    {{type: files, path: in, topic: t, {settings}}}\n"
    )
    with pytest.raises(ProjectFileError) as caught:
        load_project(tmp_path, env={})
    assert problem in str(caught.value)
    assert "trunkline.yaml:3:" in str(caught.value)
    if "strng" in settings:
        assert "did you mean 'string'?" in str(caught.value)
