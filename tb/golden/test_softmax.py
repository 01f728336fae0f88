"""Accuracy of the integer Softmax and its i-exp against float."""

import dataclasses
import math

import numpy as np
import pytest

from intformer.sw.golden.softmax import EXP_FRAC, T_MAX, exp_scale, i_exp, softmax, softmax_params

#: i-exp against exp, absolute, on the reduced range (-ln2, 0] (I-BERT: 1.9e-3).
IEXP_BOUND = 2e-3
#: Softmax against float, in output LSBs (1/128), where the float is below 127/128.
SOFTMAX_BOUND = 0.6


def iexp_error(p, t):
    return np.abs(i_exp(t, p) * exp_scale() - np.exp(-t / 2 ** EXP_FRAC * math.log(2))).max()


def softmax_error(p, x, in_scale):
    """Largest |y - min(128 softmax, 127)| in LSBs."""
    real = x * in_scale
    f = np.exp(real - real.max(axis=-1, keepdims=True))
    f /= f.sum(axis=-1, keepdims=True)
    return np.abs(softmax(x, p) - np.minimum(128 * f, 127)).max()


def perturbed(p, name, factor):
    return dataclasses.replace(p, **{name: round(getattr(p, name) * factor)})


def test_iexp_on_reduced_range():
    p = softmax_params(0.01)
    t = np.arange(1 << EXP_FRAC)
    assert iexp_error(p, t) <= IEXP_BOUND
    # Over the whole range the error shrinks with 2**-z, so the bound holds too.
    assert iexp_error(p, np.arange(T_MAX + 1)) <= IEXP_BOUND


@pytest.mark.parametrize("name,factor", [("poly_b", 1.003), ("poly_b", 0.997),
                                         ("poly_c", 1.005), ("poly_c", 0.995)])
def test_iexp_bound_trips_on_wrong_constant(name, factor):
    t = np.arange(1 << EXP_FRAC)
    assert iexp_error(perturbed(softmax_params(0.01), name, factor), t) > IEXP_BOUND


def random_rows(rng):
    """(x, in_scale) pairs: INT8 scores and INT32 accumulators of several scales."""
    cases = []
    for length in (1, 2, 3, 7, 8, 9, 64, 300):
        for in_scale in (0.005, 0.03, 0.1, 0.5):
            cases.append((rng.integers(-128, 128, (100, length)), in_scale))
        for in_scale in (1e-5, 1e-4, 1e-3):
            x = rng.integers(-(1 << 31), 1 << 31, (100, length)) >> rng.integers(0, 31, (100, 1))
            cases.append((x, in_scale))
    return cases


def test_softmax_rows_within_bound():
    rng = np.random.default_rng(3)
    for x, in_scale in random_rows(rng):
        p = softmax_params(in_scale)
        assert softmax_error(p, x, in_scale) <= SOFTMAX_BOUND, (x.shape, in_scale)


def test_softmax_extremes():
    p = softmax_params(0.05)
    for n in (1, 2, 5, 64, 4096):
        y = softmax(np.full((1, n), 17), p)
        assert np.all(y == min(round(128 / n), 127))
    # One huge element takes everything; the rest underflow to 0.
    x = np.full((1, 100), -(1 << 31))
    x[0, 42] = (1 << 31) - 1
    y = softmax(x, softmax_params(0.01))
    assert y[0, 42] == 127 and np.count_nonzero(y) == 1
    # Largest dynamic range of INT8 scores.
    x = np.array([[-128, 127] * 32])
    assert softmax_error(p, x, 0.05) <= SOFTMAX_BOUND


@pytest.mark.parametrize("name,factor", [("in_mult", 1.01), ("in_mult", 0.99),
                                         ("poly_c", 1.05), ("poly_c", 0.95)])
def test_softmax_bound_trips_on_wrong_constant(name, factor):
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (2000, 16)) * 8
    p = softmax_params(0.02)
    assert softmax_error(p, x, 0.02) <= SOFTMAX_BOUND
    assert softmax_error(perturbed(p, name, factor), x, 0.02) > SOFTMAX_BOUND


def test_softmax_errors():
    p = softmax_params(0.1)
    with pytest.raises(ValueError, match=r"Softmax rows must have 1 to 4096 elements, not shape"):
        softmax(np.zeros((2, 0)), p)
    with pytest.raises(ValueError, match="Softmax inputs must fit 32 signed bits"):
        softmax(np.array([1 << 31]), p)
    with pytest.raises(ValueError,
                       match="Softmax input scale must be positive and finite, not -1.0"):
        softmax_params(-1.0)
    with pytest.raises(ValueError, match="Requantization scale 24785312074.* is too large"):
        softmax_params(1.0 * (1 << 20))
