"""How batches of JSON lines are split into blocks for Arrow's reader."""

from __future__ import annotations

import pytest

from trunkline._json_blocks import block_size

KIB, MIB = 1 << 10, 1 << 20


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (2 * MIB, 512 * KIB),  # a few MB: four blocks, parsed on every core
        (100 * KIB, 256 * KIB),  # small: one block of at least 256 KiB
        (8 * MIB, 2 * MIB),
        (27 * MIB, 4 * MIB),  # large: blocks of 4 MiB, not fewer, larger ones
        (1 << 30, 4 * MIB),
    ],
)
def test_a_quarter_of_the_batch_between_256_kib_and_4_mib(size: int, expected: int) -> None:
    assert block_size(size, 200) == expected


@pytest.mark.parametrize("longest", [300 * KIB, 3 * MIB, 10 * MIB])
def test_long_values_fit_twice_into_a_block(longest: int) -> None:
    size = 12 * MIB
    assert block_size(size, longest) >= 2 * longest or block_size(size, longest) == size


def test_long_values_read_the_batch_in_few_blocks_of_at_most_16_mib() -> None:
    assert block_size(2 * MIB, 600 * KIB) == 2 * MIB
    assert block_size(300 * KIB, 200 * KIB) == MIB
    assert block_size(100 * MIB, 9 * MIB) == 16 * MIB
