"""Where the files of a Parquet dataset are: ``<folder>/<name>/`` or ``<folder>/<name>.parquet``."""

from __future__ import annotations

from pathlib import Path

from trunkline.errors import EngineError


def parquet_files(folder: str, name: str) -> list[str]:
    """The Parquet files of dataset ``name`` in ``folder``, sorted.

    Raises:
        EngineError: the dataset has no files (any more).
    """
    root = Path(folder)
    relative = Path(*name.split("/"))
    directory = root / relative
    if directory.is_dir():
        files = sorted(str(p) for p in directory.rglob("*.parquet") if p.is_file())
    else:
        single = directory.with_name(directory.name + ".parquet")
        files = [str(single)] if single.is_file() else []
    if not files:
        raise EngineError(
            f"parquet dataset {name!r}: no .parquet files at {directory} or {directory}.parquet",
            engine="parquet",
        )
    return files


def discover_parquet(folder: str) -> list[tuple[str, list[str]]]:
    """Datasets of a Parquet folder: each ``*.parquet`` file at the top, and each sub-folder
    holding ``*.parquet`` files (a partitioned dataset), with their files."""
    root = Path(folder)
    if not root.is_dir():
        raise EngineError(f"parquet folder {folder} does not exist", engine="parquet")
    found: list[tuple[str, list[str]]] = []
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix == ".parquet":
            found.append((entry.stem, [str(entry)]))
        elif entry.is_dir():
            files = sorted(str(p) for p in entry.rglob("*.parquet") if p.is_file())
            if files:
                found.append((entry.name, files))
    return found
