"""Every built-in connector through the shared conformance suites."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trunkline.connectors import SINKS, SOURCES
from trunkline.testing.connectors import SinkConformance, SourceConformance

PAST = time.time() - 60


def _settle(path: Path) -> None:
    os.utime(path, (PAST, PAST))


def test_builtins_are_registered() -> None:
    assert {"files"} <= set(SOURCES.names())
    assert {"duckdb", "parquet"} <= set(SINKS.names())


class _FilesBase(SourceConformance):
    source_type = "files"
    extension = ""

    @pytest.fixture
    def folder(self, tmp_path: Path) -> Path:
        folder = tmp_path / "in"
        folder.mkdir()
        return folder

    @pytest.fixture
    def settings(self, folder: Path) -> dict[str, Any]:
        return {
            "path": str(folder),
            "glob": f"*{self.extension}",
            "topic": "t",
            "key": "id",
            "settle": "0s",
            "poll_interval": "0s",
            "chunk_size": "1KiB",
        }

    @pytest.fixture
    def add_input(self, folder: Path) -> Callable[[int], list[bytes]]:
        counter = itertools.count()
        start = itertools.count(step=1)

        def add(n: int) -> list[bytes]:
            first = next(start) * 100_000
            rows = [{"id": first + i, "name": f"row {first + i}"} for i in range(n)]
            path = folder / f"in-{next(counter):04d}{self.extension}"
            self.write(path, rows)
            _settle(path)
            return [json.dumps(r, separators=(",", ":")).encode() for r in rows]

        return add

    def write(self, path: Path, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError


class TestFilesCsv(_FilesBase):
    extension = ".csv"

    def write(self, path: Path, rows: list[dict[str, Any]]) -> None:
        lines = ["id,name"] + [f"{r['id']},{r['name']}" for r in rows]
        path.write_text("\n".join(lines) + "\n")

    @pytest.fixture
    def add_bad_input(self, folder: Path) -> Callable[[], tuple[list[bytes], int]]:
        def add() -> tuple[list[bytes], int]:
            path = folder / "bad.csv"
            path.write_text("id,name\n1,a\n2,b,extra\n3,c\n4\n5,e\n")
            _settle(path)
            good = [{"id": 1, "name": "a"}, {"id": 3, "name": "c"}, {"id": 5, "name": "e"}]
            return [json.dumps(r, separators=(",", ":")).encode() for r in good], 2

        return add


class TestFilesJsonLines(_FilesBase):
    extension = ".jsonl"

    def write(self, path: Path, rows: list[dict[str, Any]]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    @pytest.fixture
    def add_bad_input(self, folder: Path) -> Callable[[], tuple[list[bytes], int]]:
        def add() -> tuple[list[bytes], int]:
            path = folder / "bad.jsonl"
            path.write_text('{"id": 1, "name": "a"}\n{"id": 2,\n\n{"id": 3, "name": "c"}\n[]\n')
            _settle(path)
            good = [{"id": 1, "name": "a"}, {"id": 3, "name": "c"}]
            return [json.dumps(r, separators=(",", ":")).encode() for r in good], 2

        return add


class TestFilesParquet(_FilesBase):
    extension = ".parquet"

    def write(self, path: Path, rows: list[dict[str, Any]]) -> None:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=30)

    @pytest.fixture
    def add_bad_input(self, folder: Path) -> Callable[[], tuple[list[bytes], int]]:
        def add() -> tuple[list[bytes], int]:
            good = folder / "a.parquet"
            pq.write_table(pa.Table.from_pylist([{"id": 1, "name": "a"}]), good)
            truncated = folder / "b.parquet"
            data = good.read_bytes()
            truncated.write_bytes(data[: len(data) // 2])
            _settle(good)
            _settle(truncated)
            return [b'{"id":1,"name":"a"}'], 1

        return add


class TestDuckDBSink(SinkConformance):
    sink_type = "duckdb"

    @pytest.fixture
    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"topics": ["t"], "path": str(tmp_path / "warehouse.duckdb")}

    @pytest.fixture
    def upsert_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "mode": "upsert", "key": ["id"]}

    @pytest.fixture
    def read_target(self, settings: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
        def read() -> list[dict[str, Any]]:
            with duckdb.connect(settings["path"], read_only=True) as con:
                return con.sql("SELECT * FROM main.t").to_arrow_table().to_pylist()

        return read


class TestParquetSink(SinkConformance):
    sink_type = "parquet"

    @pytest.fixture
    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"topics": ["t"], "path": str(tmp_path / "lake"), "roll_interval": "0s"}

    @pytest.fixture
    def read_target(self, settings: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
        def read() -> list[dict[str, Any]]:
            files = sorted(Path(settings["path"], "t").rglob("*.parquet"))
            if not files:
                return []
            names = ", ".join(f"'{f}'" for f in files)
            query = f"SELECT * FROM read_parquet([{names}], union_by_name = true)"
            return duckdb.sql(query).to_arrow_table().to_pylist()

        return read
