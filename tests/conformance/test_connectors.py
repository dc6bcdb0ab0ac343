"""Every built-in connector through the shared conformance suites."""

from __future__ import annotations

import itertools
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trunkline.connectors import SINKS, SOURCES
from trunkline.connectors.base import ConnectorContext
from trunkline.testing.connectors import SinkConformance, SourceConformance

PAST = time.time() - 60


def _settle(path: Path) -> None:
    os.utime(path, (PAST, PAST))


def test_builtins_are_registered() -> None:
    assert {"files", "http"} <= set(SOURCES.names())
    assert {"duckdb", "parquet", "iceberg"} <= set(SINKS.names())


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Poster:
    """Posts bodies one after the other from a thread, retrying until each is answered 200
    (what a client of the http source does when the source is down or restarting)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bodies: queue.Queue[bytes | None] = queue.Queue()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while (body := self.bodies.get()) is not None:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        response = client.post(self.url, content=body)
                        if response.status_code == 200:
                            break
                        if response.status_code != 503:
                            self.failures.append(f"{response.status_code} {response.text}")
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        self.failures.append("no 200 within 30s")
                        break
                    time.sleep(0.02)

    def close(self) -> None:
        self.bodies.put(None)
        self.thread.join(60)
        assert not self.failures, self.failures


class TestHttpSource(SourceConformance):
    source_type = "http"
    poll_timeout = 1.0  # requests arrive after open; the source is drained once quiet this long

    @pytest.fixture
    def port(self) -> int:
        return free_port()

    @pytest.fixture
    def settings(self, port: int) -> dict[str, Any]:
        return {"topics": ["t"], "port": port, "key": "id"}

    @pytest.fixture
    def poster(self, port: int) -> Iterator[Poster]:
        poster = Poster(f"http://127.0.0.1:{port}/topics/t")
        yield poster
        poster.close()

    @pytest.fixture
    def add_input(self, poster: Poster) -> Callable[[int], list[bytes]]:
        start = itertools.count(step=100_000)

        def add(n: int) -> list[bytes]:
            first = next(start)
            rows = [{"id": first + i, "name": f"row {first + i}"} for i in range(n)]
            for i in range(0, n, 25):
                part = rows[i : i + 25]
                if (i // 25) % 2:
                    poster.bodies.put(json.dumps(part).encode())  # a JSON array
                else:
                    poster.bodies.put("".join(json.dumps(r) + "\n" for r in part).encode())
            return [json.dumps(r, separators=(",", ":")).encode() for r in rows]

        return add

    def test_bad_input_goes_to_dead_letters(  # type: ignore[override]
        self, settings: dict[str, Any], context: ConnectorContext, port: int
    ) -> None:
        """A push source refuses bad input to its client (400) instead of dead-lettering it."""
        source = self.make(settings)
        source.open(context, None)
        try:
            url = f"http://127.0.0.1:{port}/topics/t"
            for body in (b"{oops", b"[1, 2]", b'{"name": "no id"}'):
                response = httpx.post(url, content=body, timeout=10)
                assert response.status_code == 400, response.text
            assert source.poll(0.1) is None
        finally:
            source.close()


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


class TestIcebergSink(SinkConformance):
    sink_type = "iceberg"

    @pytest.fixture
    def settings(self, tmp_path: Path) -> dict[str, Any]:
        pytest.importorskip("pyiceberg")
        return {"topics": ["t"], "warehouse": str(tmp_path / "lake"), "commit_interval": "0s"}

    @pytest.fixture
    def upsert_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "mode": "upsert", "key": ["id"]}

    @pytest.fixture
    def read_target(self, settings: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
        def read() -> list[dict[str, Any]]:
            from pyiceberg.catalog.sql import SqlCatalog

            lake = Path(settings["warehouse"])
            catalog = SqlCatalog(
                "trunkline", uri=f"sqlite:///{lake / 'catalog.db'}", warehouse=lake.as_uri()
            )
            try:
                rows: list[dict[str, Any]] = (
                    catalog.load_table("trunkline.t").scan().to_arrow().to_pylist()
                )
                return rows
            finally:
                catalog.engine.dispose()

        return read
