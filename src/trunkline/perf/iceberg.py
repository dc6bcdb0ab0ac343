"""Iceberg figures for ``trunkline perf sink``: the direct-append baseline, and how metadata
grows with many small commits, with pyiceberg's defaults and with the sink's maintenance.

The metadata measurement reproduces the problem the iceberg sink is built around: ``commits``
one-row appends to a table (each its own commit, as a naive streaming writer makes them),

* ``defaults``: pyiceberg's table properties, nothing expired;
* ``maintained``: the properties the sink sets (old metadata files deleted after each
  commit, keeping ``metadata_versions``; manifests merged) and, every 10 commits, the
  sink's expiry (keep the last 10 snapshots, delete the files only expired ones used).

Each reports the bytes and files of data and of metadata, and the seconds it took. The
sink itself also batches commits by time (one per ``commit_interval``), which is the
bigger saving: at the default 10 s, 400 commits are 67 minutes of streaming.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from trunkline.connectors.sinks._iceberg_tables import MAINTAINED, expire_snapshots

__all__ = ["direct_append_seconds", "metadata_growth"]


def _catalog(folder: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    folder.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(
        "bench", uri=f"sqlite:///{folder / 'catalog.db'}", warehouse=folder.resolve().as_uri()
    )
    catalog.create_namespace_if_not_exists("bench")
    return catalog


def _size(folder: Path) -> tuple[int, int]:
    files = [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []
    return sum(f.stat().st_size for f in files), len(files)


def direct_append_seconds(folder: Path, typed: pa.Table) -> float:
    """pyiceberg appending the typed table in one commit (the ceiling for the sink)."""
    catalog = _catalog(folder)
    try:
        table = catalog.create_table("bench.direct", schema=typed.schema)
        started = time.perf_counter()
        table.append(typed)
        return time.perf_counter() - started
    finally:
        catalog.engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def metadata_growth(
    folder: Path, commits: int = 400, metadata_versions: int = 10
) -> dict[str, Any]:
    """Data and metadata sizes after ``commits`` one-row appends, both ways (see above)."""
    figures: dict[str, Any] = {"commits": commits}
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("amount", pa.float64())])
    for label, maintained in (("defaults", False), ("maintained", True)):
        catalog = _catalog(folder / label)
        try:
            properties = (
                {**MAINTAINED, "write.metadata.previous-versions-max": str(metadata_versions)}
                if maintained
                else {}
            )
            table = catalog.create_table("bench.tiny", schema=schema, properties=properties)
            started = time.perf_counter()
            for i in range(commits):
                row = pa.table({"id": [i], "name": [f"n{i}"], "amount": [i * 1.5]}, schema=schema)
                table.append(row)
                if maintained and i % 10 == 9:
                    expire_snapshots(table, keep=10, max_age_ms=0)
            seconds = time.perf_counter() - started
            location = folder / label / "bench" / "tiny"
            data_bytes, data_files = _size(location / "data")
            meta_bytes, meta_files = _size(location / "metadata")
            figures[label] = {
                "data_mb": round(data_bytes / 1e6, 3),
                "data_files": data_files,
                "metadata_mb": round(meta_bytes / 1e6, 3),
                "metadata_files": meta_files,
                "snapshots": len(table.snapshots()),
                "seconds": round(seconds, 1),
            }
        finally:
            catalog.engine.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    return figures
