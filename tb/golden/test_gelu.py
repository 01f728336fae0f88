"""Accuracy of the integer GELU against float."""

import dataclasses
import math

import numpy as np
import pytest

from intformer.sw.golden.gelu import gelu, gelu_params, i_gelu, i_gelu_scale

#: i-GELU against GELU on [-4, 4] in real units (I-BERT: 0.0082 RMS, 0.018 max).
RMS_BOUND, MAX_BOUND = 0.0085, 0.02


def gelu_float(x):
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


IN_SCALE = 2.0 ** -12
GRID = np.arange(-4 << 12, (4 << 12) + 1)
GRID_REF = gelu_float(GRID * IN_SCALE)


def i_gelu_error(p):
    err = i_gelu(GRID, p) * i_gelu_scale() - GRID_REF
    return math.sqrt(np.mean(err ** 2)), np.abs(err).max()


def test_i_gelu_within_bound():
    rms, worst = i_gelu_error(gelu_params(IN_SCALE, 0.05))
    assert rms <= RMS_BOUND and worst <= MAX_BOUND


@pytest.mark.parametrize("name,factor", [("clip", 1.02), ("clip", 0.99), ("poly_c", 1.003),
                                         ("poly_c", 0.99), ("in_mult", 1.01),
                                         ("in_mult", 0.99)])
def test_i_gelu_bound_trips_on_wrong_constant(name, factor):
    p = gelu_params(IN_SCALE, 0.05)
    p = dataclasses.replace(p, **{name: round(getattr(p, name) * factor)})
    rms, worst = i_gelu_error(p)
    assert rms > RMS_BOUND or worst > MAX_BOUND


def requant_error(p, x, in_scale, out_scale):
    """Largest |y - gelu / out_scale| in LSBs over the unsaturated outputs, and
    whether the saturated ones are at the rails."""
    ref = gelu_float(x * in_scale) / out_scale
    y = gelu(x, p)
    inside = (ref > -128) & (ref < 127)
    rails = np.all(y[ref >= 127.5 + MAX_BOUND / out_scale] == 127) and \
        np.all(y[ref <= -128.5 - MAX_BOUND / out_scale] == -128)
    return np.abs(y - ref)[inside].max(initial=0), rails


@pytest.mark.parametrize("in_scale,out_scale,width", [
    (0.05, 0.03, 8), (0.02, 0.01, 8), (0.1, 0.05, 8), (1e-4, 0.02, 32), (3e-6, 0.05, 32),
    (1e-3, 1e-3, 16), (0.5, 1.0, 8)])
def test_gelu_requantized_within_bound(in_scale, out_scale, width):
    """Bound: half an LSB of rounding plus the i-GELU maximum error in LSBs."""
    rng = np.random.default_rng(5)
    lo = -(1 << (width - 1))
    x = np.concatenate([rng.integers(lo, -lo, 20000), [lo, -lo - 1, 0, 1, -1]])
    p = gelu_params(in_scale, out_scale)
    worst, rails = requant_error(p, x, in_scale, out_scale)
    assert worst <= 0.5 + MAX_BOUND / out_scale + 2 * in_scale / out_scale * 2 ** -10
    assert rails


def test_gelu_requant_bound_trips_on_wrong_constant():
    x = np.arange(-128, 128)
    p = gelu_params(0.05, 0.03)
    bound = 0.5 + MAX_BOUND / 0.03
    assert requant_error(p, x, 0.05, 0.03)[0] <= bound
    for factor in (1.02, 0.98):
        q = dataclasses.replace(p, out_mult=round(p.out_mult * factor))
        assert requant_error(q, x, 0.05, 0.03)[0] > bound


def test_gelu_saturation_both_ways():
    # Large positive inputs saturate at 127; large negative ones give 0.
    p = gelu_params(0.1, 0.05)
    np.testing.assert_array_equal(gelu(np.array([127, 100, -100, -128]), p), [127, 127, 0, 0])
    # With a fine output scale the GELU minimum (-0.17) saturates at -128.
    p = gelu_params(0.01, 0.001)
    assert gelu(np.array([-75]), p)[0] == -128
    # Inputs beyond the +-128 fixed-point range still saturate the right way.
    p = gelu_params(1e-3, 1.0)
    np.testing.assert_array_equal(gelu(np.array([(1 << 31) - 1, -(1 << 31)]), p), [127, 0])


def test_gelu_errors():
    with pytest.raises(ValueError, match="GELU output scale must be positive and at most 1.0, "
                                         "not 2.0"):
        gelu_params(0.1, 2.0)
    with pytest.raises(ValueError, match="GELU input scale must be positive and below 64, not 0"):
        gelu_params(0, 0.1)
    with pytest.raises(ValueError, match="GELU inputs must fit 32 signed bits"):
        gelu(np.array([1 << 31]), gelu_params(0.1, 0.1))
