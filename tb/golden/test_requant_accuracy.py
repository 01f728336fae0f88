"""Accuracy of the dyadic requantization (INT32 -> INT8) against float."""

import numpy as np
import pytest

from intformer.sw.golden import quantize_multiplier, requantize

#: Requantization against float, in output LSBs: half an LSB of rounding plus the
#: multiplier's relative error (below 2**-16) on values up to 128.
BOUND = 0.5 + 128 * 2.0 ** -16


def error(acc, scale, m, s):
    ref = acc * scale
    y = requantize(acc, m, s)
    if not (np.all(y[ref >= 127.5] == 127) and np.all(y[ref <= -128.5] == -128)):
        return np.inf
    inside = (ref > -128.5) & (ref < 127.5)
    return np.abs(y - ref)[inside].max()


@pytest.mark.parametrize("scale", [1e-6, 3.3e-5, 1e-3, 0.0421, 0.5, 0.999, 1.0, 7.3])
def test_requantize_within_bound(scale):
    rng = np.random.default_rng(9)
    acc = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 20000),
                          rng.integers(-(1 << 10), 1 << 10, 5000),
                          np.round(rng.integers(-128, 128, 5000) / scale).astype(np.int64)])
    acc = np.clip(acc, -2 ** 31, 2 ** 31 - 1)
    m, s = quantize_multiplier(scale)
    assert error(acc, scale, m, s) <= BOUND


@pytest.mark.parametrize("change", [1, -1])
def test_requantize_bound_trips_on_wrong_multiplier(change):
    scale = 0.0421
    # Values landing just off the rounding ties expose a multiplier one off.
    acc = np.arange(-3100, 3100)
    m, s = quantize_multiplier(scale)
    assert error(acc, scale, m, s) <= BOUND
    assert error(acc, scale, m + 40 * change, s) > BOUND
