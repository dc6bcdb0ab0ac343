"""Which streamed changes a later snapshot holds already, when a delete says a row is gone.

The rule (``trunkline.connectors.sources._pgsegments``): of the changes a newer snapshot
covers, a key's changes are still replayed from its first delete on, and a table's from its
first truncate on, so that a row the snapshot no longer has is deleted in the sinks too.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from trunkline.connectors.sources._pgcatalog import Column, Table
from trunkline.connectors.sources._pgevents import ChangeSet
from trunkline.connectors.sources._pgsegments import Replayed, _replay
from trunkline.connectors.sources._pgtuples import Image
from trunkline.connectors.sources._pgvalues import Kind, PgType
from trunkline.errors import ConnectorError

INT8 = PgType(20, "bigint", Kind.NUMBER)
TEXT = PgType(25, "text", Kind.STRING)


def _table(key: tuple[str, ...] = ("id",)) -> Table:
    columns = (Column("id", INT8), Column("region", TEXT), Column("v", TEXT))
    return Table("public", "orders", 1, columns, key, "d")


def _image(rows: list[tuple[str | None, str | None, str | None] | None]) -> Image:
    present = np.array([r is not None for r in rows], dtype=bool)
    values = [
        pa.array([None if r is None or r[i] is None else r[i].encode() for r in rows], pa.binary())
        for i in range(3)
    ]
    return Image(present, values, [None, None, None])


def _changes(ops: str, keys: list[str | None], regions: list[str] | None = None) -> ChangeSet:
    """Changes with these ops (one letter each) and ids; deletes carry the key in before."""
    n = len(ops)
    region = regions or ["eu"] * n
    rows = list(zip(ops, keys, region, strict=True))
    after = [None if op in "dt" else (k, r, f"v{i}") for i, (op, k, r) in enumerate(rows)]
    before = [(k, r, None) if op == "d" else None for op, k, r in rows]
    lsn = np.arange(100, 100 + n, dtype=np.uint64)
    return ChangeSet(
        np.array(list(ops)),
        _image(before),
        _image(after),
        lsn,
        np.zeros(n, dtype=np.int64),
        lsn,
        np.ones(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
    )


def _kept(ops: str, keys: list[str | None], covered: list[bool], replayed: Replayed) -> list[bool]:
    mask = _replay(_table(), _changes(ops, keys), np.array(covered, dtype=bool), replayed)
    return [bool(v) for v in mask]


def test_covered_changes_are_dropped_while_no_delete_says_a_row_is_gone() -> None:
    replayed = Replayed()
    assert _kept("uuc", ["1", "2", "3"], [True, True, True], replayed) == [False] * 3
    assert not replayed


def test_a_key_is_replayed_from_its_first_delete_on() -> None:
    replayed = Replayed()
    kept = _kept("uudcuu", ["1", "2", "1", "1", "2", "1"], [True] * 6, replayed)
    # key 1: the update before its delete is dropped, the delete and what follows are kept
    assert kept == [False, False, True, True, False, True]
    assert replayed.keys == {"1"}


def test_the_keys_replayed_carry_over_to_the_next_batch_and_a_restart() -> None:
    replayed = Replayed()
    _kept("d", ["7"], [True], replayed)
    restored = Replayed.from_json(replayed.to_json())
    assert _kept("cu", ["7", "8"], [True, True], restored) == [True, False]


def test_changes_not_covered_are_never_marked_kept() -> None:
    replayed = Replayed()
    assert _kept("dc", ["1", "1"], [False, True], replayed) == [False, False]
    assert not replayed


def test_a_truncate_replays_every_key_from_there_on() -> None:
    replayed = Replayed()
    kept = _kept("utcu", ["1", None, "2", "3"], [True] * 4, replayed)
    assert kept == [False, True, True, True]
    assert replayed.everything
    assert _kept("u", ["9"], [True], replayed) == [True]
    assert Replayed.from_json(replayed.to_json()).everything


def test_composite_keys_are_told_apart_by_every_column() -> None:
    table = _table(("id", "region"))
    changes = _changes("duu", ["1", "1", "1"], ["eu", "eu", "us"])
    mask = _replay(table, changes, np.array([True, True, True]), Replayed())
    # (1, eu) was deleted: its update is replayed; (1, us) is another row.
    assert [bool(v) for v in mask] == [True, True, False]


def test_a_malformed_saved_state_is_a_clear_error() -> None:
    for saved in ({"keys": "1"}, {"keys": [1]}, ["1"]):
        with pytest.raises(ConnectorError, match=r"source 's', replayed\['t'\]: expected") as e:
            Replayed.from_json(saved, "checkpoint of source 's', replayed['t']")
        assert "found" in str(e.value)
        assert e.value.retryable is False
