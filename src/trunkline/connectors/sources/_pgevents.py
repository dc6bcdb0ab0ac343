"""Debezium change events for one table, built a batch at a time from values in text.

An event's value is the envelope ``{"before", "after", "source", "op", "ts_ms"}`` (the
shape of Debezium's JSON converter with schemas off); its key is ``{"<key column>": ...}``,
the row's primary key. Values are assembled by joining the columns' JSON with the constant
text between them in one Arrow string kernel per batch, so no Python runs per row (except
for array columns, see :mod:`._pgvalues`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline import __version__
from trunkline.connectors.sources._pgcatalog import Table
from trunkline.connectors.sources._pgtuples import Image
from trunkline.connectors.sources._pgvalues import Part, json_part
from trunkline.hub._template import template

__all__ = ["ChangeSet", "EventBuilder", "empty_image"]

_NULL = pa.scalar("null", pa.string())


def _lit(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.string())


def _join(parts: Sequence[pa.Array | pa.Scalar]) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _template(pieces: Sequence[pa.Array | pa.Scalar], length: int) -> pa.StructArray:
    """The value column that renders as ``_join(pieces)`` (texts and columns alternate)."""
    texts = [p.as_py() for p in pieces[::2]]
    fragments = [p for p in pieces[1::2] if isinstance(p, pa.Array)]
    return template(texts, fragments, length=length)


def _object(
    names: Sequence[str], parts: Sequence[Part], head: str = "", tail: str = ""
) -> list[pa.Array | pa.Scalar]:
    """The pieces of ``head{"a":...,"b":...}tail`` to join; ``names`` are JSON already.
    Constant text between columns is merged into one literal."""
    pieces: list[pa.Array | pa.Scalar] = []
    text = head + "{"
    for i, (name, part) in enumerate(zip(names, parts, strict=True)):
        text += ("," if i else "") + name + ":" + part.left
        pieces += [_lit(text), part.values]
        text = part.right
    pieces.append(_lit(text + "}" + tail))
    return pieces


def empty_image(width: int, length: int) -> Image:
    return Image(
        np.zeros(length, dtype=bool),
        [pa.nulls(length, pa.binary()) for _ in range(width)],
        [None] * width,
    )


@dataclass
class ChangeSet:
    """Changes of one table from the stream, in order, column by column.

    ``op`` is ``c``, ``u``, ``d`` or ``t``; ``lsn`` is each change's own WAL position and
    ``position`` its place among changes that share it (one WAL record can insert many
    rows): together a record id that stays the same when the stream is read again.
    ``commit_lsn``, ``xid`` and ``ts_ms`` describe the change's transaction.
    """

    op: np.ndarray
    before: Image
    after: Image
    lsn: np.ndarray
    position: np.ndarray
    commit_lsn: np.ndarray
    xid: np.ndarray
    ts_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.op)

    def take(self, rows: np.ndarray) -> ChangeSet:
        return ChangeSet(
            self.op[rows],
            self.before.take(rows),
            self.after.take(rows),
            self.lsn[rows],
            self.position[rows],
            self.commit_lsn[rows],
            self.xid[rows],
            self.ts_ms[rows],
        )

    def key_values(self, positions: Sequence[int]) -> list[pa.Array]:
        """Per key column, each change's key as UTF-8 text (from ``before`` for deletes)."""
        deletes = pa.array(self.op == "d")
        return [pc.if_else(deletes, self.before.values[i], self.after.values[i]) for i in positions]

    def key_texts(self, positions: Sequence[int]) -> list[list[str | None]]:
        """:meth:`key_values` as Python strings (to pass to a query)."""
        return [
            [None if v is None else v.decode() for v in column.to_pylist()]
            for column in self.key_values(positions)
        ]


class EventBuilder:
    """Builds the records (key, value, timestamp) and ids of one table's events.

    Args:
        table: The table, with the columns the values have (in order).
        server: The logical server name, Debezium's ``source.name`` (the topic prefix).
        database: The database name, ``source.db``.
    """

    def __init__(self, table: Table, server: str, database: str) -> None:
        self.table = table
        self.names = [json.dumps(c.name) for c in table.columns]
        self.types = [c.type for c in table.columns]
        positions = {c.name: i for i, c in enumerate(table.columns)}
        self.key_positions = [positions[k] for k in table.key if k in positions]
        source = {"version": f"trunkline-{__version__}", "connector": "postgresql", "name": server}
        place = {"db": database, "schema": table.schema, "table": table.name}
        self._source_head = ',"source":' + json.dumps(source, separators=(",", ":"))[:-1]
        self._place = "," + json.dumps(place, separators=(",", ":"))[1:-1]
        self._id_prefix = f"r:{table.qualified}:"

    def _parts(
        self, values: Sequence[pa.Array], unchanged: Sequence[np.ndarray | None]
    ) -> list[Part]:
        return [
            json_part(v, kind, u) for v, kind, u in zip(values, self.types, unchanged, strict=True)
        ]

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(
        self, texts: Sequence[pa.Array], *, lsn: int, ts_ms: int, first_row: int = 0
    ) -> tuple[pa.Table, pa.Array]:
        """Read events (``op: r``) of snapshot rows; ``texts`` has one array per column.

        A row's id is its table and key, the same each time it is read; rows of a table
        without a key are numbered within the snapshot (``first_row`` is the number of the
        first), which a restart does not repeat.
        """
        length = len(texts[0]) if texts else 0
        parts = self._parts(texts, [None] * len(texts))
        now = int(time.time() * 1000)
        tail = (
            f'{self._source_head},"ts_ms":{ts_ms},"snapshot":"true"{self._place},'
            f'"txId":null,"lsn":{lsn}}},"op":"r","ts_ms":{now}}}'
        )
        columns: dict[str, pa.Array] = {}
        if not length:
            value = ids = pa.array([], pa.string())
        else:
            # Held by the hub as a template (the pieces, joined only if someone reads bytes).
            value = _template(_object(self.names, parts, '{"before":null,"after":', tail), length)
            if self.key_positions:
                key = _join(
                    _object(
                        [self.names[i] for i in self.key_positions],
                        [parts[i] for i in self.key_positions],
                    )
                )
                columns["key"] = key.cast(pa.binary())
                ids = _join([_lit(self._id_prefix), key])
            else:
                numbers = pa.array(np.arange(first_row, first_row + length)).cast(pa.string())
                ids = _join([_lit(f"{self._id_prefix}{lsn}:"), numbers])
        columns["value"] = value if isinstance(value, pa.StructArray) else value.cast(pa.binary())
        columns["timestamp"] = pa.repeat(pa.scalar(ts_ms, pa.int64()), length)
        return pa.table(columns), ids.cast(pa.binary())

    # -- stream ---------------------------------------------------------------------------

    def _image_json(self, image: Image, length: int) -> pa.Array | pa.Scalar:
        if not image.present.any() or not self.names:
            return _NULL if not image.present.any() else _lit("{}")
        parts = self._parts(image.values, image.unchanged)
        whole = _join(_object(self.names, parts))
        if image.present.all():
            return whole
        return pc.if_else(pa.array(image.present), whole, _NULL)

    def changes(self, changes: ChangeSet, *, tombstones: bool) -> tuple[pa.Table, pa.Array]:
        """Events of streamed changes (``c``, ``u``, ``d``, ``t``); a delete is followed by
        a tombstone (a null value with the same key) when ``tombstones``."""
        length = len(changes)
        ops = pa.array(changes.op.astype(str), pa.string())
        deletes = pc.equal(ops, "d")
        key = None
        if self.key_positions:
            key_parts = []
            for i in self.key_positions:
                chosen = pc.if_else(deletes, changes.before.values[i], changes.after.values[i])
                key_parts.append(json_part(chosen, self.types[i]))
            key = _join(_object([self.names[i] for i in self.key_positions], key_parts))
            truncates = pc.equal(ops, "t")
            if pc.any(truncates).as_py():
                key = pc.if_else(truncates, pa.scalar(None, pa.string()), key)
        now = int(time.time() * 1000)
        value = _join(
            [
                _lit('{"before":'),
                self._image_json(changes.before, length),
                _lit(',"after":'),
                self._image_json(changes.after, length),
                _lit(self._source_head + ',"ts_ms":'),
                pa.array(changes.ts_ms, pa.int64()).cast(pa.string()),
                _lit(f',"snapshot":"false"{self._place},"txId":'),
                pa.array(changes.xid, pa.int64()).cast(pa.string()),
                _lit(',"lsn":'),
                pa.array(changes.lsn, pa.uint64()).cast(pa.string()),
                _lit('},"op":"'),
                ops,
                _lit(f'","ts_ms":{now}}}'),
            ]
        )
        ids = _join(
            [
                pa.array(changes.lsn, pa.uint64()).cast(pa.string()),
                _lit(":"),
                pa.array(changes.position, pa.int64()).cast(pa.string()),
            ]
        )
        records = pa.table(
            {
                "key": key.cast(pa.binary()) if key is not None else pa.nulls(length, pa.binary()),
                "value": value.cast(pa.binary()),
                "timestamp": pa.array(changes.ts_ms, pa.int64()),
            }
        )
        ids = ids.cast(pa.binary())
        if tombstones and key is not None and pc.any(deletes).as_py():
            records, ids = _with_tombstones(records, ids, deletes)
        return records, ids


def _with_tombstones(
    records: pa.Table, ids: pa.Array, deletes: pa.Array
) -> tuple[pa.Table, pa.Array]:
    """Each delete followed by a tombstone record (same key, null value, id ``<id>:t``)."""
    n = records.num_rows
    positions = np.flatnonzero(np.asarray(deletes.to_numpy(zero_copy_only=False)))
    # Record i sorts at 2i, the tombstone of delete i at 2i + 1: right after it.
    placed = np.argsort(np.concatenate([np.arange(n) * 2, positions * 2 + 1]), kind="stable")
    order = pa.array(np.concatenate([np.arange(n), positions])[placed])
    tombstone = pa.array(np.concatenate([np.zeros(n, bool), np.ones(len(positions), bool)])[placed])
    taken = records.take(order)
    value = pc.if_else(tombstone, pa.scalar(None, pa.binary()), taken.column("value"))
    taken = taken.set_column(taken.column_names.index("value"), "value", value)
    moved = ids.take(order)
    marked = _join([moved.cast(pa.string()), _lit(":t")]).cast(pa.binary())
    return taken, pc.if_else(tombstone, marked, moved)
