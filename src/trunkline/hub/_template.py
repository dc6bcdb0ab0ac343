"""Template values: record values kept as columns of text and rendered to bytes on demand.

A producer that builds its values by joining columns with constant text between them (the
Postgres CDC source builds every Debezium event of a snapshot chunk that way) can hand the
hub those pieces instead of the joined bytes: a struct column whose children are the
*fragments* (text columns), each named by the constant text that comes before it, and a
last child of type null named by the text that ends every value. A row's value is::

    name(child 0) + child 0 + name(child 1) + child 1 + ... + name(last child)

and a null row (of the struct) is a null value (a tombstone). The embedded hub stores such
a column as it is (a fraction of the joined bytes, and no join at all) and renders the bytes
only when a reader asks for them; a consumer that understands the fragments (a table sink
reading Debezium events) reads them without parsing JSON. Apache Kafka stores bytes, so
its backend renders a template before producing. Either way every reader of bytes sees
exactly the value the producer described.

Example:
    >>> import pyarrow as pa
    >>> values = template(['{"id":', ',"name":"', '"}'], [pa.array(["1", "2"]),
    ...                   pa.array(["Ada", "Grace"])])
    >>> render(values).to_pylist()
    [b'{"id":1,"name":"Ada"}', b'{"id":2,"name":"Grace"}']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trunkline.errors import InvalidRecord

__all__ = [
    "fragments",
    "is_template",
    "literals",
    "render",
    "rendered_lengths",
    "rendered_table",
    "template",
]


def template(
    texts: Sequence[str],
    fragments: Sequence[pa.Array],
    valid: pa.Array | None = None,
    *,
    length: int | None = None,
) -> pa.StructArray:
    """The template column whose row ``i`` renders as ``texts[0] + fragments[0][i] +
    texts[1] + ... + texts[-1]``; ``valid`` (booleans) marks rows that have a value (the
    others are tombstones). ``texts`` has one more entry than ``fragments``; ``length``
    is needed only when there are no fragments (every value is the same text)."""
    if len(texts) != len(fragments) + 1:
        raise ValueError(
            f"a template needs one more text than fragments: {len(texts)} texts, "
            f"{len(fragments)} fragments"
        )
    if fragments:
        length = len(fragments[0])
    elif length is None:
        length = len(valid) if valid is not None else 0
    arrays = [f if f.type == pa.string() else f.cast(pa.string()) for f in fragments]
    arrays.append(pa.nulls(length, pa.null()))
    names = list(texts)
    mask = None if valid is None else pc.invert(valid)
    return pa.StructArray.from_arrays(arrays, names=names, mask=mask)


def is_template(kind: pa.DataType) -> bool:
    """Whether ``kind`` is the type of a template column."""
    if not pa.types.is_struct(kind) or kind.num_fields == 0:
        return False
    last = kind.num_fields - 1
    return pa.types.is_null(kind.field(last).type) and all(
        kind.field(i).type == pa.string() for i in range(last)
    )


def literals(kind: pa.DataType) -> list[str]:
    """The constant texts of a template type: before each fragment, and the end."""
    return [kind.field(i).name for i in range(kind.num_fields)]


def fragments(values: pa.Array) -> list[pa.Array]:
    """The fragment columns of a template array (the rows of ``values``; for null rows
    their content is unspecified)."""
    assert isinstance(values, pa.StructArray)
    return [values.field(i) for i in range(values.type.num_fields - 1)]


def check(values: pa.Array | pa.ChunkedArray, where: str = "column 'value'") -> None:
    """Raise InvalidRecord unless ``values`` is a template whose present rows have every
    fragment (a null fragment would render a value as nothing at all)."""
    kind = values.type
    if not is_template(kind):
        raise InvalidRecord(
            f"{where}: expected binary, string or a template (a struct of string fragments "
            f"ending in a null-typed child named by the closing text), found {kind}"
        )
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    first = 0  # the record number of the chunk's first row
    for chunk in chunks:
        present = chunk.is_valid()
        for i, fragment in enumerate(fragments(chunk)):
            if not fragment.null_count:
                continue
            missing = np.flatnonzero(np.asarray(pc.and_(present, fragment.is_null())))
            if len(missing):
                row = first + int(missing[0])
                raise InvalidRecord(
                    f"{where}: template fragment {i} is null in record {row}, which has a "
                    "value; every fragment of a present value must be text"
                )
        first += len(chunk)


def render(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The bytes of a template column (one binary array; null where a row is null)."""
    if isinstance(values, pa.ChunkedArray):
        chunks = [render(chunk) for chunk in values.chunks]
        if not chunks:
            return pa.array([], pa.binary())
        return chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks)
    texts = literals(values.type)
    pieces: list[pa.Array | pa.Scalar] = []
    for text, fragment in zip(texts, fragments(values), strict=False):
        pieces += [pa.scalar(text, pa.string()), fragment]
    pieces.append(pa.scalar(texts[-1], pa.string()))
    if len(values) == 0:
        return pa.array([], pa.binary())
    if len(pieces) == 1:
        joined = pa.repeat(pieces[0], len(values))
    else:
        joined = pc.binary_join_element_wise(*pieces, "")
    if values.null_count:
        joined = pc.if_else(values.is_valid(), joined, pa.scalar(None, pa.string()))
    return joined.cast(pa.binary())


def rendered_lengths(values: pa.Array) -> np.ndarray:
    """Each row's rendered byte length (0 for null rows), without rendering."""
    texts = literals(values.type)
    total = np.full(len(values), sum(len(t.encode()) for t in texts), dtype=np.int64)
    for fragment in fragments(values):
        total += pc.fill_null(pc.binary_length(fragment), 0).to_numpy(zero_copy_only=False)
    if values.null_count:
        total[~np.asarray(values.is_valid())] = 0
    return total


def rendered_table(table: pa.Table) -> pa.Table:
    """``table`` with its ``value`` column rendered to bytes if it is a template."""
    column = table.column("value")
    if not is_template(column.type):
        return table
    index = table.column_names.index("value")
    return table.set_column(index, "value", render(column))
