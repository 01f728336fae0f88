"""Exactness of the integer square root, division and bit length."""

import math

import numpy as np
import pytest

from intformer.sw.golden.intmath import MAX_BITS, bit_length, floor_div, isqrt


@pytest.mark.parametrize("bits", [1, 2, 3, 7, 8, 15, 16])
def test_isqrt_exhaustive_small_widths(bits):
    n = np.arange(1 << bits, dtype=np.int64)
    expected = np.array([math.isqrt(int(v)) for v in n])
    np.testing.assert_array_equal(isqrt(n, bits=bits), expected)


def test_isqrt_random_full_width():
    rng = np.random.default_rng(1)
    n = rng.integers(0, 1 << MAX_BITS, 20000, dtype=np.int64) >> rng.integers(0, 62, 20000)
    squares = rng.integers(0, 1 << 31, 2000, dtype=np.int64) ** 2
    edges = np.array([0, 1, 2, 3, 4, (1 << 62) - 1, (1 << 31) ** 2 - 1, ((1 << 31) - 1) ** 2])
    n = np.concatenate([n, squares, squares[squares > 0] - 1, edges])
    expected = np.array([math.isqrt(int(v)) for v in n])
    np.testing.assert_array_equal(isqrt(n), expected)


def test_floor_div_exhaustive_small_widths():
    num, den = np.meshgrid(np.arange(1 << 9), np.arange(1, 1 << 8), indexing="ij")
    np.testing.assert_array_equal(floor_div(num, den, bits=9), num // den)


def test_floor_div_random_full_width():
    rng = np.random.default_rng(2)
    num = rng.integers(0, 1 << MAX_BITS, 20000, dtype=np.int64) >> rng.integers(0, 62, 20000)
    den = np.maximum(rng.integers(1, 1 << MAX_BITS, 20000, dtype=np.int64)
                     >> rng.integers(0, 62, 20000), 1)
    num = np.concatenate([num, [(1 << 62) - 1, (1 << 62) - 1, 0, 12345]])
    den = np.concatenate([den, [1, (1 << 62) - 1, 7, 12345]])
    expected = np.array([int(a) // int(b) for a, b in zip(num, den, strict=True)])
    np.testing.assert_array_equal(floor_div(num, den), expected)
    # The exact floor: q * d <= n < (q + 1) * d, checked in Python integers.
    for a, b, q in zip(num[:500], den[:500], floor_div(num[:500], den[:500]),
                       strict=True):
        assert int(q) * int(b) <= int(a) < (int(q) + 1) * int(b)


def test_bit_length():
    values = [0, 1, 2, 3, 4, 255, 256, (1 << 62), (1 << 63) - 1]
    np.testing.assert_array_equal(bit_length(np.array(values, dtype=np.int64)),
                                  [v.bit_length() for v in values])


def test_errors():
    with pytest.raises(ValueError, match=r"isqrt operand must be between 0 and 2\*\*8 - 1"):
        isqrt([256], bits=8)
    with pytest.raises(ValueError, match="isqrt operand must be between"):
        isqrt([-1])
    with pytest.raises(ValueError, match="Divisor must be between 1 and"):
        floor_div([5], [0])
    with pytest.raises(ValueError, match=r"Dividend must be between 0 and 2\*\*4 - 1"):
        floor_div([16], [1], bits=4)
    with pytest.raises(ValueError, match="Operand width must be between 1 and 62, not 63"):
        isqrt([1], bits=63)
    with pytest.raises(TypeError, match="Operand width must be an integer, not 2.0"):
        floor_div([1], [1], bits=2.0)
    with pytest.raises(ValueError, match="bit_length operand must be non-negative"):
        bit_length([-1])
