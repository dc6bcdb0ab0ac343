"""Kafka's key partitioner: ``toPositive(murmur2(key)) % partitions``, bit-for-bit.

Kafka's Java client (and librdkafka's ``murmur2_random``) place a keyed record by the 32-bit
MurmurHash2 of its key bytes with seed 0x9747b28c. Using the same function means a key lands
on the same partition number on the embedded hub and on a Kafka cluster, so a project can
move between the two without reshuffling keys.

:func:`partitions_for_keys` hashes a whole Arrow column at once: keys are grouped by length,
and each group is hashed with numpy over a (rows x length) byte matrix, so the work per batch
is a handful of vector operations per distinct key length rather than Python per record.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: the signed 32-bit hash of ``data``.

    Example:
        >>> murmur2(b"21")
        -973932308
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java client picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _hash_matrix(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """murmur2 of each row of a (n, length) byte matrix, as unsigned 32-bit values."""
    n, length = rows.shape
    m = np.uint32(_M)
    h = np.full(n, (_SEED ^ length) & _MASK, dtype=np.uint32)
    whole = length - length % 4
    if whole:
        words = np.ascontiguousarray(rows[:, :whole]).view("<u4")
        for j in range(words.shape[1]):
            k = words[:, j] * m
            k ^= k >> np.uint32(24)
            k *= m
            h *= m
            h ^= k
    tail = length % 4
    if tail == 3:
        h ^= rows[:, whole + 2].astype(np.uint32) << np.uint32(16)
    if tail >= 2:
        h ^= rows[:, whole + 1].astype(np.uint32) << np.uint32(8)
    if tail >= 1:
        h ^= rows[:, whole].astype(np.uint32)
        h *= m
    h ^= h >> np.uint32(13)
    h *= m
    h ^= h >> np.uint32(15)
    return h


def partitions_for_keys(keys: pa.Array, partitions: int) -> npt.NDArray[np.int32]:
    """Partition of every key in a binary/string Arrow array; -1 where the key is null.

    Example:
        >>> partitions_for_keys(pa.array([b"21", None, b"foobar"]), 3).tolist()
        [1, -1, 1]
    """
    if pa.types.is_dictionary(keys.type):
        keys = keys.dictionary_decode()
    if not pa.types.is_large_binary(keys.type):
        keys = keys.cast(pa.large_binary())
    n = len(keys)
    out = np.full(n, -1, dtype=np.int32)
    if n == 0:
        return out
    valid = np.ones(n, dtype=bool) if keys.null_count == 0 else ~np.asarray(pc.is_null(keys))
    buffers = keys.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=keys.offset * 8)
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.empty(0, dtype=np.uint8)
    )
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    for length in np.unique(lengths[valid]):
        idx = np.flatnonzero(valid & (lengths == length))
        if length:
            rows = data[starts[idx, None] + np.arange(length)]
        else:
            rows = np.empty((len(idx), 0), dtype=np.uint8)
        hashed = _hash_matrix(rows)
        out[idx] = ((hashed & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)).astype(np.int32)
    return out
