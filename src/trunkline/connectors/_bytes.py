"""Arrow binary arrays cut out of a buffer of bytes, without a Python object per value."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["byte_ranges", "needs_json_escape"]

#: Values up to this long sit inside their view (Arrow's binary view layout).
_INLINE = 12


def byte_ranges(
    buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, valid: np.ndarray | None = None
) -> pa.Array:
    """A binary array of ``buf[start:start + length]`` per row (null where not ``valid``).

    The ranges become an Arrow *binary view* array over ``buf`` (16 bytes per row, the data
    not copied), which Arrow then copies into a plain binary array in one pass.

    Example:
        >>> buf = np.frombuffer(b"hello world, longer than twelve", dtype=np.uint8)
        >>> byte_ranges(buf, np.array([0, 6]), np.array([5, 25])).to_pylist()
        [b'hello', b'world, longer than twelve']
    """
    n = len(starts)
    if valid is None:
        valid = np.ones(n, dtype=bool)
    lengths = np.where(valid, lengths, 0).astype(np.int64)
    starts = np.where(valid, starts, 0).astype(np.int64)
    if n and ((starts + lengths).max() > len(buf) or starts.min() < 0 or lengths.min() < 0):
        raise ValueError("a value runs past the end of its buffer")
    views = np.zeros((n, 16), dtype=np.uint8)
    words = views.view(np.int32)  # (n, 4): length, prefix or inline bytes, buffer, offset
    words[:, 0] = lengths
    short = lengths <= _INLINE
    if short.any() and len(buf):
        rows = np.flatnonzero(short)
        # Bytes past a short value (or past the buffer) are read, then zeroed.
        at = np.minimum(starts[rows, None] + np.arange(_INLINE), len(buf) - 1)
        inline = buf[at]
        inline[np.arange(_INLINE) >= lengths[rows, None]] = 0
        views[rows, 4:16] = inline
    long = ~short
    if long.any():
        rows = np.flatnonzero(long)
        views[rows, 4:8] = buf[starts[rows, None] + np.arange(4)]
        words[rows, 3] = starts[rows]
    bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    data = pa.py_buffer(buf)
    viewed = pa.Array.from_buffers(pa.binary_view(), n, [bitmap, pa.py_buffer(views), data])
    return viewed.cast(pa.binary())


def needs_json_escape(texts: pa.Array) -> bool:
    """Whether any value of a string array holds what JSON escapes inside a string: a
    quote, a backslash or a control character (one scan of the array's bytes)."""
    if not len(texts):
        return False
    _, offsets, data = texts.buffers()
    if data is None:
        return False
    bounds = np.frombuffer(offsets, dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1]
    raw = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]
    if not len(raw):
        return False
    return bool(raw.min() < 0x20 or (raw == 0x22).any() or (raw == 0x5C).any())
