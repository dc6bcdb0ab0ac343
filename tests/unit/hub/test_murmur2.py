"""The partitioner must match Kafka's Java client bit for bit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.hub._murmur2 import murmur2, partition_for_key, partitions_for_keys

# Kafka's UtilsTest.testMurmur2 vectors (signed Java ints); the empty array included.
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS.items())
def test_scalar_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_uses_positive_hash() -> None:
    # toPositive(-790332482) % 50 == 16 (Kafka: Utils.toPositive masks the sign bit).
    assert partition_for_key(b"foobar", 50) == 16


def test_vectorised_matches_kafka_vectors() -> None:
    keys = pa.array(list(KAFKA_VECTORS), pa.binary())
    got = partitions_for_keys(keys, 1_000_003)
    want = [(v & 0x7FFFFFFF) % 1_000_003 for v in KAFKA_VECTORS.values()]
    assert got.tolist() == want


def test_vectorised_handles_nulls_strings_and_slices() -> None:
    keys = pa.array(["a", None, "foobar", "", "xyzzy"])
    assert partitions_for_keys(keys, 7).tolist() == [
        partition_for_key(b"a", 7),
        -1,
        partition_for_key(b"foobar", 7),
        partition_for_key(b"", 7),
        partition_for_key(b"xyzzy", 7),
    ]
    sliced = keys.slice(2, 2)
    assert partitions_for_keys(sliced, 7).tolist() == [
        partition_for_key(b"foobar", 7),
        partition_for_key(b"", 7),
    ]


def test_vectorised_dictionary_keys() -> None:
    keys = pa.array([b"k1", b"k2", b"k1"]).dictionary_encode()
    assert partitions_for_keys(keys, 5).tolist() == [
        partition_for_key(b"k1", 5),
        partition_for_key(b"k2", 5),
        partition_for_key(b"k1", 5),
    ]


@given(st.lists(st.one_of(st.none(), st.binary(max_size=40)), max_size=60), st.integers(1, 97))
def test_vectorised_equals_scalar(keys: list[bytes | None], partitions: int) -> None:
    got = partitions_for_keys(pa.array(keys, pa.binary()), partitions)
    want = [-1 if k is None else partition_for_key(k, partitions) for k in keys]
    assert got.dtype == np.int32
    assert got.tolist() == want
