"""Iceberg tables for the ``iceberg`` sink: schemas that fit the records, offsets kept in
snapshot summaries, and the maintenance that keeps a streaming table's metadata small.

Why maintenance: every commit writes a new metadata file (holding every snapshot so far), a
manifest list (naming every manifest so far) and a manifest. With pyiceberg's defaults
nothing is ever removed, and the metadata grows with the square of the commit count (400
one-row appends: about 0.5 MB of data and 59 MB of metadata). So tables get
:data:`MAINTAINED` properties (old metadata files deleted after each commit, manifests
merged), and :func:`expire_snapshots` drops old snapshots *and deletes the files only they
referenced* (manifest lists, manifests, data files replaced by later commits), which
pyiceberg's own expiry leaves behind.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.io import FileIO
from pyiceberg.manifest import ManifestEntryStatus, ManifestFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from trunkline.errors import IncompatibleChange
from trunkline.hub import TopicPartition

__all__ = [
    "MAINTAINED",
    "Fitted",
    "expire_snapshots",
    "fit",
    "offsets_key",
    "stored_offsets",
]

#: Table properties the sink sets (the user's ``properties`` may override them).
MAINTAINED = {
    "write.metadata.delete-after-commit.enabled": "true",
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "10",
}


def offsets_key(sink: str) -> str:
    """The snapshot-summary property holding what ``sink`` has committed to a table."""
    return f"trunkline.offsets.{sink}"


def offsets_text(offsets: Mapping[TopicPartition, int]) -> str:
    ordered = sorted(offsets.items(), key=lambda item: (item[0].topic, item[0].partition))
    return json.dumps({f"{tp.topic}/{tp.partition}": o for tp, o in ordered})


def stored_offsets(table: Table, sink: str) -> dict[TopicPartition, int]:
    """The offsets ``sink`` stored with its last commit to ``table`` (walking back the
    snapshots of the current branch, past commits of other writers)."""
    key = offsets_key(sink)
    snapshot = table.current_snapshot()
    while snapshot is not None:
        text = snapshot.summary.additional_properties.get(key) if snapshot.summary else None
        if text is not None:
            found = {}
            for name, offset in json.loads(text).items():
                topic, _, partition = name.rpartition("/")
                found[TopicPartition(topic, int(partition))] = int(offset)
            return found
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return {}


# Schemas -------------------------------------------------------------------------------


@dataclass
class Fitted:
    """Rows in a table's schema: ``rows`` keeps those that fit, ``bad`` (positions in the
    input, with why) those that do not."""

    rows: pa.Table
    bad: list[tuple[int, str]]
    evolved: bool = False


def fit(rows: pa.Table, table: Table, where: str) -> Fitted:
    """Give ``rows`` the types of ``table``'s columns, adding its new columns to it first.

    Columns the table lacks are added (schema evolution, also inside nested structs);
    columns whose values do not convert to the table's type are refused row by row; when
    none of a column's values converts, the data has changed type and
    :class:`~trunkline.errors.IncompatibleChange` stops the sink.
    """
    current = table.schema().as_arrow()
    added = [f for f in rows.schema if f.name not in current.names]
    if added:
        with table.update_schema() as update:
            update.union_by_name(pa.schema(added))
        current = table.schema().as_arrow()
    bad: dict[int, str] = {}
    columns = {}
    for f in rows.schema:
        target = current.field(f.name).type
        column, failed = _cast(rows.column(f.name), target)
        if failed:
            if len(failed) == len(rows.column(f.name).drop_null()):
                raise IncompatibleChange(
                    f"column {f.name!r} of Iceberg table {where} is {target}, but the records "
                    f"now hold {f.type} values that do not convert; declare its type in "
                    "'schema' or change the table, then restart the sink"
                )
            for row in failed:
                bad.setdefault(row, f"field {f.name!r} does not convert to {target}")
        columns[f.name] = column
    fitted = pa.table(columns) if columns else rows
    if bad:
        keep = pa.array([i not in bad for i in range(rows.num_rows)])
        fitted = fitted.filter(keep)
    return Fitted(fitted, sorted(bad.items()), evolved=bool(added))


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.Array, list[int]]:
    """``column`` as ``target``; positions of values that do not convert become null."""
    try:
        return column.cast(target).combine_chunks(), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    # The slow path, only for batches with values that do not fit: one value at a time.
    values = []
    failed = []
    for i, value in enumerate(column.to_pylist()):
        try:
            values.append(pa.array([value]).cast(target)[0].as_py() if value is not None else None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            values.append(None)
            failed.append(i)
    return pa.array(values, target), failed


def ensure_properties(table: Table, wanted: Mapping[str, str]) -> None:
    """Set the table properties in ``wanted`` that differ (one commit, or none)."""
    changed = {k: v for k, v in wanted.items() if table.properties.get(k) != v}
    if changed:
        table.transaction().set_properties(changed).commit_transaction()


# Maintenance ---------------------------------------------------------------------------


def expire_snapshots(table: Table, *, keep: int, max_age_ms: int) -> tuple[int, int]:
    """Expire snapshots older than ``max_age_ms`` beyond the newest ``keep``; delete the
    files only they referenced. Returns (snapshots expired, files deleted).

    Files are found from the metadata (never by listing folders), and only files that no
    remaining snapshot references are deleted, so a concurrent reader of a live snapshot
    is never affected.
    """
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    cutoff = int(time.time() * 1000) - max_age_ms
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    expired = [
        s
        for s in snapshots[: max(0, len(snapshots) - keep)]
        if s.timestamp_ms < cutoff and s.snapshot_id not in protected
    ]
    if not expired:
        return 0, 0
    io = table.io
    manifests_cache: dict[str, list[ManifestFile]] = {}
    live = _referenced(io, [s for s in snapshots if s not in expired], manifests_cache)
    gone = _referenced(io, expired, manifests_cache)
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in expired]).commit()
    location = table.location().rstrip("/") + "/"
    deleted = 0
    for path in sorted(gone - live):
        if not path.startswith(location):
            continue  # files of another table (added with add_files...): not ours to delete
        try:
            io.delete(path)
            deleted += 1
        except (FileNotFoundError, OSError):
            continue
    return len(expired), deleted


def _referenced(
    io: FileIO, snapshots: Iterable[Snapshot], cache: dict[str, list[ManifestFile]]
) -> set[str]:
    """Manifest lists, manifests and live data/delete files of ``snapshots``."""
    found: set[str] = set()
    for snapshot in snapshots:
        found.add(snapshot.manifest_list)
        manifests = cache.get(snapshot.manifest_list)
        if manifests is None:
            manifests = cache[snapshot.manifest_list] = snapshot.manifests(io)
        for manifest in manifests:
            if manifest.manifest_path in found:
                continue
            found.add(manifest.manifest_path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                entries = manifest.fetch_manifest_entry(io, discard_deleted=False)
            found.update(
                e.data_file.file_path for e in entries if e.status != ManifestEntryStatus.DELETED
            )
    return found


def metadata_size(table: Table) -> dict[str, Any]:
    """Bytes and files under the table's metadata folder (local tables only), for figures."""
    from pathlib import Path
    from urllib.parse import urlparse

    parsed = urlparse(table.location())
    if parsed.scheme not in ("", "file"):
        return {}
    folder = Path(parsed.path) / "metadata"
    files = [f for f in folder.iterdir() if f.is_file()] if folder.is_dir() else []
    return {"metadata_bytes": sum(f.stat().st_size for f in files), "metadata_files": len(files)}
